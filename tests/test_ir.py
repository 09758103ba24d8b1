"""IR passes are pure and do what they say."""

from __future__ import annotations

import copy

from metadsl import ir, passes
from metadsl.driver import front_end


def built(spec: str):
    result = front_end(spec, "check")
    return ir.build(result.checked)


def test_passes_do_not_mutate_their_input():
    g = built("specs/rl2_bandits.mrl")
    before = ir.dumps(g)
    snapshot = copy.deepcopy(g)
    for p in passes.PASSES:
        p(g)
    assert ir.dumps(g) == before == ir.dumps(snapshot)


def test_resolve_defaults_fills_registry_defaults():
    g = passes.resolve_defaults(built("specs/rl2_bandits.mrl"))
    update = next(d["node"] for _, d in g.nodes(data=True) if d["node"].kind == "update")
    assert update.rule_args["lr"] == "1e-3"  # given
    assert update.rule_args["polyak"] == "0"  # default filled in
    model = g.nodes["model:agent"]["node"]
    assert model.args["embed"] == "0"


def test_mark_differentiation_follows_order():
    second = passes.mark_differentiation(built("specs/maml_nav2d.mrl"))
    first = passes.mark_differentiation(built("specs/fomaml_nav2d.mrl"))

    def adapt_flag(g):
        return next(d["node"].second_order for _, d in g.nodes(data=True)
                    if getattr(d["node"], "mode", None) == "adapt")

    assert adapt_flag(second) is True
    assert adapt_flag(first) is False


def test_ir_dump_is_deterministic():
    assert ir.dumps(front_end("specs/epg.mrl", "ir").ir) == \
        ir.dumps(front_end("specs/epg.mrl", "ir").ir)
