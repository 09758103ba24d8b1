"""The middle end's passes are pure, and the loop program and its graph are deterministic."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from metadsl.driver import front_end
from metadsl.middle import build, passes
from metadsl.middle import graph as ir
from metadsl.middle import program as P


def built(spec: str) -> P.Program:
    return build.build(front_end(spec, "check").checked)


def test_passes_do_not_mutate_their_input():
    program = built("specs/maml_nav2d.mrl")
    before = P.dumps(program)
    snapshot = copy.deepcopy(program)
    for p in passes.PASSES:
        program_after = p(program)
        assert P.dumps(program) == before == P.dumps(snapshot)
        program = program_after
        before, snapshot = P.dumps(program), copy.deepcopy(program)


def test_resolve_defaults_fills_registry_defaults():
    program = passes.resolve_defaults(built("specs/rl2_bandits.mrl"))
    step = next(s for s in program.loop("meta").body if isinstance(s, P.Step))
    assert step.rule.arg("lr") == P.Const(2e-3, "float")  # given
    assert step.rule.arg("l2") == P.Const(0.0, "float")  # default filled in
    assert program.model("agent").core_args == (("hidden", P.Const(64, "int")),)


def test_through_order_reaches_the_graph():
    def adapt_flag(spec):
        g = front_end(spec, "ir").ir
        return next(d["node"].second_order for _, d in g.nodes(data=True)
                    if getattr(d["node"], "mode", None) == "adapt")

    assert adapt_flag("specs/maml_nav2d.mrl") is True
    assert adapt_flag("specs/fomaml_nav2d.mrl") is False


def test_dumps_are_deterministic():
    assert ir.dumps(front_end("specs/epg.mrl", "ir").ir) == \
        ir.dumps(front_end("specs/epg.mrl", "ir").ir)
    assert P.dumps(front_end("specs/epg.mrl", "program").program) == \
        P.dumps(front_end("specs/epg.mrl", "program").program)


_SPEC_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}'{0,2}", fullmatch=True) | \
    st.sampled_from(["gen", "state", "args", "run", "batch", "heads", "torch", "main", "build",
                     "evaluate", "State", "class", "lambda", "None", "list", "__init__",
                     "tau", "tau'", "tau_prime", "x__y", "x", "_"])


@settings(max_examples=200, deadline=None)
@given(st.lists(_SPEC_NAMES, min_size=1, max_size=12))
def test_the_symbol_table_gives_distinct_safe_python_names(names):
    import builtins
    import keyword

    symbols = passes.Symbols()
    given_names = {n: symbols.add("scope", n, passes.LOCAL_NAMES) for n in names}
    python = list(given_names.values())
    assert len(set(python)) == len(given_names)  # injective
    for name in python:
        assert name.isidentifier() and not keyword.iskeyword(name)
        assert not keyword.issoftkeyword(name)
        assert name.startswith("_") or name not in dir(builtins)
        assert name not in passes.LOCAL_NAMES and not name.startswith("__")
