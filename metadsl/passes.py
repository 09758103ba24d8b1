"""IR → IR passes. Each is pure (returns a new graph) and its result can be dumped."""

from __future__ import annotations

import copy

from . import registry as R
from .checker import _show
from .ir import IR, MemoryNode, MetaNode, ModelNode, TaskNode, UpdateNode


def resolve_defaults(g: IR) -> IR:
    """Write every registry default that a call left out into the node, so later phases
    (and the dump) see the full configuration."""
    out = copy.deepcopy(g)
    for _, attrs in out.nodes(data=True):
        node = attrs["node"]
        if isinstance(node, UpdateNode):
            name, field = node.rule, "rule_args"
        elif isinstance(node, (TaskNode,)):
            name, field = node.source, "args"
        elif isinstance(node, (ModelNode, MetaNode)):
            name, field = node.constructor, "args"
        elif isinstance(node, MemoryNode) and node.constructor:
            name, field = node.constructor, "args"
        else:
            continue
        entry = R.REGISTRY.get(name)
        if entry is None:
            continue
        given = getattr(node, field)
        full = {p.name: given.get(p.name, _show(p.default)) for p in entry.params
                if p.name in given or not p.required}
        attrs["node"] = node.model_copy(update={field: full})
    return out


def mark_differentiation(g: IR) -> IR:
    """Mark each inner `adapt` that an outer update differentiates through, and at which
    order: the lowering builds the graph of exactly those steps (create_graph)."""
    out = copy.deepcopy(g)
    order_of: dict[str, bool] = {}
    for _, attrs in out.nodes(data=True):
        node = attrs["node"]
        if isinstance(node, UpdateNode) and node.through:
            second = node.through_args.get("order", "2") == "2"
            loop = f"loop:{node.through}"
            order_of[loop] = order_of.get(loop, False) or second
    for _, attrs in out.nodes(data=True):
        node = attrs["node"]
        if isinstance(node, UpdateNode) and node.mode == "adapt":
            attrs["node"] = node.model_copy(update={"second_order": order_of.get(node.loop)})
    return out


PASSES = (resolve_defaults, mark_differentiation)


def run_all(g: IR) -> IR:
    for p in PASSES:
        g = p(g)
    return g
