"""No input reaches a Python exception: grammar-generated programs, mutated real specs,
and random bytes all end in a result or in diagnostics."""

from __future__ import annotations

import random
import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

from metadsl.front.ast import strip_spans
from metadsl.diagnostics import CompileError
from metadsl.driver import NotBuilt, compile_module, front_end
from metadsl.front.formatter import format_module
from lark import Lark

from metadsl.front.parser import parse
from metadsl.resources import grammar_path

from .conftest import SPECS

SOURCES = [p.read_text(encoding="utf-8") for p in SPECS]
# hypothesis reads the grammar's rules, which a Lark loaded from its cache does not keep.
GRAMMAR = Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr", start="start")
KEYWORDS = {t.pattern.value for t in GRAMMAR.terminals if t.pattern.type == "str"}


def _terminal(t) -> st.SearchStrategy[str]:
    """Each terminal followed by a space (hypothesis would glue `metadsl1specx` together);
    names that are not keywords; comments that end their line."""
    if t.name == "COMMENT":
        return st.just("# note\n")
    if t.pattern.type == "str":
        return st.just(t.pattern.value + " ")
    strategy = st.from_regex(t.pattern.to_regexp(), fullmatch=True)
    if t.name == "NAME":
        strategy = st.from_regex(r"[a-z][a-z0-9_]{0,5}'?", fullmatch=True).filter(
            lambda n: n.rstrip("'") not in KEYWORDS)
    return strategy.map(lambda text: text + " ")


TERMINALS = {t.name: _terminal(t) for t in GRAMMAR.terminals}
# with the one supported version, so programs go on to the checker and the IR
GENERATED = from_lark(GRAMMAR, explicit=TERMINALS).map(
    lambda text: re.sub(r"^metadsl \d+", "metadsl 1", text))
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def survives(text: str | bytes) -> None:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    try:
        front_end("fuzz.mrl", "ir", data=data)
    except CompileError as e:
        assert e.diagnostics
        assert all(d.code != "E0901" for d in e.diagnostics), e.diagnostics


@FUZZ
@given(GENERATED)
def test_grammar_generated_programs(text):
    survives(text)


@FUZZ
@given(GENERATED)
@example("metadsl 1 spec a tasks a = 0 . a ")  # a field of a number: `0.a` reads as `0.` a
def test_fmt_round_trips_generated_programs(text):
    try:
        module = parse(text)
    except CompileError:
        return
    out = format_module(module, text)
    assert strip_spans(parse(out)) == strip_spans(module)
    assert format_module(parse(out), out) == out


def mutate(source: str, rnd: random.Random, kind: str) -> str:
    lines = source.split("\n")
    # tokens with the whitespace between them kept, so lines (and comments) stay lines
    pieces = re.split(r"(\s+)", source)
    words = [i for i, p in enumerate(pieces) if p and not p.isspace()]
    if not words:
        return source
    if kind == "delete_line":
        del lines[rnd.randrange(len(lines))]
        return "\n".join(lines)
    if kind == "duplicate_line":
        i = rnd.randrange(len(lines))
        lines.insert(i, lines[i])
        return "\n".join(lines)
    if kind == "swap_tokens":
        i, j = rnd.choice(words), rnd.choice(words)
        pieces[i], pieces[j] = pieces[j], pieces[i]
        return "".join(pieces)
    if kind == "drop_token":
        pieces[rnd.choice(words)] = ""
        return "".join(pieces)
    if kind == "truncate":
        return source[: rnd.randrange(len(source))]
    if kind == "insert_char":
        i = rnd.randrange(len(source))
        return source[:i] + rnd.choice("(){}[]=,.'~#\"+-*/^<>;:@$\\\t\x00é") + source[i:]
    raise AssertionError(kind)


@FUZZ
@given(st.sampled_from(range(len(SOURCES))), st.integers(0, 2**32),
       st.lists(st.sampled_from(["delete_line", "duplicate_line", "swap_tokens", "drop_token",
                                 "truncate", "insert_char"]), min_size=1, max_size=4))
def test_mutated_specs(index, seed, kinds):
    rnd = random.Random(seed)
    text = SOURCES[index]
    for kind in kinds:
        if text:
            text = mutate(text, rnd, kind)
    survives(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SOURCES))), st.integers(0, 2**32),
       st.lists(st.sampled_from(["delete_line", "duplicate_line", "swap_tokens"]),
                min_size=1, max_size=2))
def test_mutated_specs_that_check_compile_or_name_what_is_missing(index, seed, kinds):
    """Whatever the checker accepts, the back end lowers to a module that is valid
    Python, or names each construct it cannot lower where it is written."""
    rnd = random.Random(seed)
    text = SOURCES[index]
    for kind in kinds:
        if text:
            text = mutate(text, rnd, kind)
    try:
        source = compile_module("fuzz.mrl", text.encode("utf-8", "surrogatepass"))
    except CompileError as e:
        assert all(d.code != "E0901" for d in e.diagnostics), e.diagnostics
    except NotBuilt as e:
        assert e.missing and all(loc.line >= 1 for _, loc in e.missing), e.missing
    else:
        compile(source, "fuzz.py", "exec")


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data):
    survives(data)


@FUZZ
@given(st.text(max_size=400))
def test_random_text(text):
    survives(text)
