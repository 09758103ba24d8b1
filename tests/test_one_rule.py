"""One rule per fact: what the checker decides (the evaluated loop, memory scopes, what
is built) is read by every later phase, so a spec that checks runs what it says."""

from __future__ import annotations

import json

from metadsl.driver import front_end

from .conftest import ROOT, metadsl

TWO_PHASES = (ROOT / "tests" / "specs" / "pretrain_then_maml.mrl").read_text()
PRETRAIN = TWO_PHASES[TWO_PHASES.index("inner mixture"):TWO_PHASES.index("inner adapt")]


def _swapped(evaluate_loop: bool) -> str:
    """The MAML phase declared first, multi-task pretraining last."""
    text = TWO_PHASES.replace(PRETRAIN, "")
    text = text.replace("evaluate {", PRETRAIN + "evaluate {")
    return text.replace("evaluate {", "evaluate {\n    loop = adapt") if evaluate_loop else text


def _rows(out) -> set:
    return {(r["method"], r["adapt_steps"])
            for r in json.loads((out / "eval.json").read_text())["results"]}


EXPECTED = {(m, k) for m in ("pretrain_then_maml", "pretrained", "random_init")
            for k in (0, 1, 2)}


def test_the_evaluation_measures_the_adapting_phase_in_either_order(tmp_path):
    swapped = tmp_path / "swapped.mrl"
    swapped.write_text(_swapped(evaluate_loop=True))
    for spec, out in (("tests/specs/pretrain_then_maml.mrl", tmp_path / "a"),
                      (str(swapped), tmp_path / "b")):
        r = metadsl("run", spec, "--out", str(out))
        assert r.returncode == 0, r.stderr[-3000:]
        assert _rows(out) == EXPECTED


def test_the_evaluated_loop_is_the_checker_s_and_the_program_reads_it(tmp_path):
    program = front_end("two.mrl", "program", data=TWO_PHASES.encode()).program
    assert (program.evaluate.kind, program.evaluate.loop, program.evaluate.outer) == \
        ("after_adaptation", "adapt", "meta")
    assert program.evaluate.adapt_steps == (0, 1, 2)


def test_adaptation_settings_for_a_loop_that_does_not_adapt_are_an_error(tmp_path):
    path = tmp_path / "swapped.mrl"
    path.write_text(_swapped(evaluate_loop=False))
    r = metadsl("check", str(path))
    assert r.returncode == 1
    assert "error[E0213]: `adapt_steps` has no effect: the evaluated loop 'mixture'" in r.stderr
    assert "`loop = adapt`" in r.stderr


def _unread_settings(source: str) -> set[str]:
    """Args fields the generated module never reads (`args.NAME`)."""
    import ast

    tree = ast.parse(source)
    fields = {n.target.id for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "Args"
              for n in c.body if isinstance(n, ast.AnnAssign)}
    read = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and
            isinstance(n.value, ast.Name) and n.value.id == "args"}
    return fields - read


def test_every_setting_of_every_compiled_spec_is_read_by_its_module():
    """Each setting the loop program carries reaches the code that runs (a setting the
    lowering dropped would be a silent no-op)."""
    from metadsl.driver import compile_module

    from .conftest import SPECS
    from metadsl.diagnostics import NotBuilt

    specs = list(SPECS) + sorted((ROOT / "tests" / "specs").glob("*.mrl"))
    compiled = 0
    for path in specs:
        try:
            source = compile_module(str(path), path.read_bytes())
        except NotBuilt:
            continue
        compiled += 1
        assert not _unread_settings(source), (path.name, _unread_settings(source))
    assert compiled >= 25
