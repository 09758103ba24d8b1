"""The loop graph `metadsl graph` draws: a view of the loop program (middle.program).

Nodes carry pydantic models (one class per node kind); every edge names the data that
flows along it (θ, θ′, τ, τ′, h, η, φ, z, M). Loops nest by `parent`: an outer loop holds
the inner loop it runs, and each statement node belongs to the loop it sits in. It is
made from the same program the back end lowers, after the same passes, so the drawing
and the generated code cannot disagree.
"""

from __future__ import annotations

import json
from typing import Literal

import networkx as nx
from pydantic import BaseModel

from .. import registry as R
from . import program as P


class Node(BaseModel):
    id: str
    kind: str
    label: str
    loop: str | None = None  # id of the enclosing loop node, if any
    line: int = 0


class TaskNode(Node):
    kind: Literal["tasks"] = "tasks"
    source: str
    args: dict[str, str]


class ModelNode(Node):
    kind: Literal["model"] = "model"
    constructor: str
    core: str | None
    heads: dict[str, str]
    inputs: list[str]
    stateful: bool
    args: dict[str, str]


class MemoryNode(Node):
    kind: Literal["memory"] = "memory"
    target: str
    scope: str
    written: bool  # False: a stateful model's default scope (per task)
    constructor: str | None
    args: dict[str, str]


class MetaNode(Node):
    kind: Literal["meta"] = "meta"
    constructor: str
    learner: str
    args: dict[str, str]


class LoopNode(Node):
    kind: Literal["loop"] = "loop"
    loop_kind: Literal["inner", "outer"]
    parent: str | None
    tasks: str | None
    settings: dict[str, str]


class DataNode(Node):
    kind: Literal["data"] = "data"
    data_kind: Literal["trajectories", "samples", "params"]


class CollectNode(Node):
    kind: Literal["collect"] = "collect"
    count: str
    unit: str
    source: Literal["with", "from"]
    policy: str
    output: str


class StoreNode(Node):
    kind: Literal["store"] = "store"
    data: str
    buffer: str


class UpdateNode(Node):
    kind: Literal["update"] = "update"
    mode: Literal["adapt", "update"]
    targets: list[str]
    rule: str
    rule_args: dict[str, str]
    rule_traits: list[str]
    objective: Literal["minimize", "maximize", "toward"]
    expression: str
    data: str | None
    through: str | None = None
    through_args: dict[str, str] = {}
    second_order: bool | None = None  # an inner `adapt` an outer update differentiates


IR = nx.MultiDiGraph

_GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "eta": "η",
          "theta": "θ", "lam": "λ", "lambda": "λ", "mu": "μ", "sigma": "σ", "log_sigma": "log σ",
          "tau": "τ", "phi": "φ", "psi": "ψ", "omega": "ω"}


def greek(name: str) -> str:
    """tau' → τ′, L_phi → φ, gamma → γ; other names unchanged."""
    base = name.rstrip("'")
    primes = "′" * (len(name) - len(base))
    if base in _GREEK:
        return _GREEK[base] + primes
    tail = base.rsplit("_", 1)[-1]
    if "_" in base and tail in _GREEK:
        return _GREEK[tail] + primes
    return base + primes


def _show(value, program: P.Program) -> str:
    """A program value as the spec would write it."""
    if isinstance(value, P.Setting):
        value = next(a.default for a in program.args if a.path == value.path)
    elif isinstance(value, P.Const):
        value = value.value
    elif isinstance(value, (P.Meta, P.Population)):
        return value.name
    elif isinstance(value, P.Params):
        return value.model
    elif isinstance(value, P.Memory):
        return value.key
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) and len(v) == 2
                                                  for v in value):
        return "{" + ", ".join(f"{k}: {_show(v, program)}" for k, v in value) + "}"
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v, program) for v in value) + "]"
    return str(value)


def _args(args: tuple, program: P.Program) -> dict[str, str]:
    return {name: _show(value, program) for name, value in args}


def _param_symbol(model: str, models: list[str]) -> str:
    if greek(model) != model:
        return greek(model)
    return "θ" if len(models) == 1 else f"θ[{model}]"


def build(program: P.Program) -> IR:
    g = nx.MultiDiGraph(spec=program.spec, title=program.title)
    models = [m.name for m in program.models]
    symbol = {m: _param_symbol(m, models) for m in models}
    g.graph["param_symbol"] = symbol

    def add(node: Node) -> str:
        g.add_node(node.id, node=node)
        return node.id

    def edge(src: str, dst: str, name: str, label: str, style: str = "data") -> None:
        if src in g and dst in g:
            g.add_edge(src, dst, key=f"{name}:{style}", name=name, label=label, style=style)

    for t in program.tasks:
        add(TaskNode(id=f"tasks:{t.name}", label=t.name, line=t.loc.line, source=t.source,
                     args=_args(t.args, program)))
    for m in program.models:
        add(ModelNode(id=f"model:{m.name}", label=m.name, line=m.loc.line,
                      constructor=m.constructor, core=m.core, heads=dict(m.heads),
                      inputs=list(m.inputs), stateful=m.stateful,
                      args=_args(m.core_args, program)))
    for m in program.metas:
        add(MetaNode(id=f"meta:{m.name}", label=greek(m.name), line=m.loc.line,
                     constructor=m.constructor, learner=m.learner, args=_args(m.args, program)))
    for m in program.memories:
        add(MemoryNode(id=f"memory:{m.key}", label=m.key, line=m.loc.line, target=m.key,
                       scope=m.scope, written=m.written, constructor=m.constructor, args=_args(m.args, program)))

    parent = {l.over: l.name for l in program.loops if l.over is not None}
    adapted_in = {m: l.name for l in program.loops for m in P.adapted_models(l)}
    for loop in program.loops:
        owner = f"loop:{parent[loop.name]}" if loop.name in parent else None
        add(LoopNode(id=f"loop:{loop.name}", label=loop.name, line=loop.loc.line,
                     loop_kind=loop.kind, parent=owner, loop=owner,
                     tasks=loop.tasks if loop.kind == "inner" else None,
                     settings=_args(loop.settings + tuple(
                         (name, getattr(r, name)) for r in loop.body if isinstance(r, P.Repeat)
                         for name in R.REPEAT_SETTINGS), program)))
        if loop.kind == "inner" and loop.tasks:
            edge(f"tasks:{loop.tasks}", f"loop:{loop.name}", "task", "task")

    def params_node(model: str) -> str:
        """θ′ of a model: one node, made by the loop that adapts it."""
        nid = f"params:{model}'"
        if nid not in g:
            owner = f"loop:{adapted_in[model]}" if model in adapted_in else None
            add(DataNode(id=nid, label=symbol.get(model, greek(model)) + "′", loop=owner,
                         data_kind="params"))
        return nid

    def data_node(data: P.Data) -> str:
        return f"data:{data.loop}.{data.name}"

    # statements: inner loops first, so that outer statements find the data they read
    second = {s.through.loop: s.through.order for l in program.loops for s in l.statements
              if isinstance(s, P.Step) and s.through is not None}
    for loop in sorted(program.loops, key=lambda l: l.kind != "inner"):
        drawn = [s for s in loop.statements
                 if isinstance(s, (P.Rollout, P.SampleBuffer, P.Store, P.Step))]
        for i, stmt in enumerate(drawn):
            sid, lid = f"{loop.name}.{i}", f"loop:{loop.name}"
            if isinstance(stmt, (P.Rollout, P.SampleBuffer)):
                _collect(g, add, edge, program, stmt, sid, lid, params_node, symbol)
            elif isinstance(stmt, P.Store):
                add(StoreNode(id=sid, label=f"store in {stmt.buffer.key}", loop=lid,
                              line=stmt.loc.line, data=stmt.data.name, buffer=stmt.buffer.key))
                edge(data_node(stmt.data), sid, stmt.data.name, greek(stmt.data.name))
                edge(sid, f"memory:{stmt.buffer.key}", stmt.buffer.key, "M")
            else:
                order = second.get(loop.name)
                _step(g, add, edge, program, stmt, sid, lid, params_node, symbol,
                      None if stmt.mode != "adapt" or order is None else
                      _show(order, program) == "2")
    _memory_edges(program, edge, params_node)
    return g


def _collect(g, add, edge, program, stmt, sid, lid, params_node, symbol) -> None:
    policy = stmt.policy if isinstance(stmt, P.Rollout) else None
    if isinstance(stmt, P.SampleBuffer):
        text, source = stmt.buffer.key, "from"
    elif isinstance(policy, P.PolicyCall):
        text, source = f"{policy.name}({', '.join(_show(v, program) for _, v in policy.args)})", \
            "with"
    else:
        text, source = policy.model + ("'" if isinstance(policy, P.Adapted) else ""), "with"
    count = _show(stmt.count, program)
    add(CollectNode(id=sid, label=f"collect {count} {stmt.unit}", loop=lid, line=stmt.loc.line,
                    count=count, unit=stmt.unit, source=source, policy=text,
                    output=stmt.output.name))
    out = add(DataNode(id=f"data:{stmt.output.loop}.{stmt.output.name}",
                       label=greek(stmt.output.name), loop=lid,
                       data_kind="samples" if stmt.unit == "samples" else "trajectories"))
    edge(sid, out, stmt.output.name, greek(stmt.output.name))
    if isinstance(stmt, P.SampleBuffer):
        edge(f"memory:{stmt.buffer.key}", sid, stmt.buffer.key, "M")
    elif isinstance(policy, P.Adapted):
        edge(params_node(policy.model), sid, policy.model + "'", symbol[policy.model] + "′")
    elif isinstance(policy, P.Params):
        edge(f"model:{policy.model}", sid, policy.model, symbol.get(policy.model, policy.model))
    else:
        for _, value in policy.args:
            if isinstance(value, P.Memory):
                edge(f"memory:{value.key}", sid, value.key, "M")
            elif isinstance(value, P.Params):
                edge(f"model:{value.model}", sid, value.model, symbol.get(value.model, "θ"))


def _target(target) -> tuple[str, str]:
    if isinstance(target, P.Params):
        return "model", target.model
    if isinstance(target, P.Meta):
        return "meta", target.name
    if isinstance(target, P.Memory):
        return "memory", target.key
    return "tasks", target.name


def _step(g, add, edge, program, s: P.Step, sid, lid, params_node, symbol, second) -> None:
    kind = {P.Minimize: "minimize", P.Maximize: "maximize", P.Toward: "toward"}[
        type(s.objective)]
    data = s.objective.data if isinstance(s.objective, P.Minimize) else None
    targets = [_target(t) for t in s.targets]
    through = s.through
    add(UpdateNode(id=sid, label=f"{s.mode} by {s.rule.name}", loop=lid, line=s.loc.line,
                   mode=s.mode, targets=[P.target_label(t) for t in s.targets],
                   rule=s.rule.name,
                   rule_args=_args(s.rule.args, program), rule_traits=list(s.rule.traits),
                   objective=kind, expression=s.text, data=data.name if data else None,
                   through=through.loop if through else None,
                   through_args={"order": _show(through.order, program),
                                 "trace": _show(through.trace, program)} if through else {},
                   second_order=second))
    if data is not None:
        edge(f"data:{data.loop}.{data.name}", sid, data.name, greek(data.name))
    if isinstance(s.objective, P.Toward):
        model = s.objective.target.model
        edge(params_node(model), sid, model + "'", symbol.get(model, greek(model)) + "′")
    for (kind_, name), ref in zip(targets, s.targets):
        target = f"{kind_}:{name}"
        label = symbol.get(name, greek(name)) if kind_ == "model" else \
            greek(name) if kind_ == "meta" else name
        if isinstance(ref, P.Params) and ref.part is not None:
            label += "." + ref.part
        if s.mode == "adapt":
            edge(target, sid, name, label)
            edge(sid, params_node(name) if kind_ == "model" else target, name + "'",
                 label + "′")
        else:
            edge(sid, target, name, "Δ" + label, "update")
    # meta-parameters the step's loss or rule reads (γ, λ into the inner step)
    read = {n.name for n in P.walk((s.objective, s.rule)) if isinstance(n, P.Meta)}
    for name in sorted(read - {name for _, name in targets}):
        edge(f"meta:{name}", sid, name, greek(name))
    if through is not None:
        for other, attrs in g.nodes(data=True):
            n = attrs["node"]
            if isinstance(n, UpdateNode) and n.mode == "adapt" and \
                    n.loop == f"loop:{through.loop}":
                edge(other, sid, "through", "∂θ′/∂θ", "through")


def _memory_edges(program: P.Program, edge, params_node) -> None:
    for mem in program.memories:
        entry = R.REGISTRY.get(mem.constructor or "")
        if isinstance(mem.target, P.Params):
            edge(f"memory:{mem.key}", f"model:{mem.target.model}", "h", "h", "state")
        elif isinstance(mem.target, P.Adapted):
            name = mem.target.model + "'"
            edge(f"memory:{mem.key}", params_node(mem.target.model), name, greek(name), "state")
        if entry is not None and "latent" in entry.traits:
            for m in program.models:
                if "z" in m.inputs:
                    edge(f"memory:{mem.key}", f"model:{m.name}", "z", "z", "state")
            for _, value in mem.args:
                if isinstance(value, P.Meta):
                    edge(f"meta:{value.name}", f"memory:{mem.key}", value.name,
                         greek(value.name))
        for name, value in mem.args:
            if name == "key" and isinstance(value, P.Params):
                edge(f"model:{value.model}", f"memory:{mem.key}", "h", "h")


def to_json(g: IR) -> dict:
    return {
        "spec": g.graph["spec"],
        "title": g.graph["title"],
        "nodes": [g.nodes[n]["node"].model_dump() for n in sorted(g.nodes)],
        "edges": [{"from": u, "to": v, "name": d["name"], "label": d["label"], "style": d["style"]}
                  for u, v, d in sorted(g.edges(data=True), key=lambda e: (e[0], e[1], e[2]["name"]))],
    }


def dumps(g: IR) -> str:
    return json.dumps(to_json(g), indent=2, ensure_ascii=False)
