"""Phase 3: checked AST → IR, a networkx graph of loops, modules, memories, data and rules.

Nodes carry pydantic models (one class per node kind); every edge names the data that
flows along it (θ, θ′, τ, τ′, h, η, φ, z, M). Loops nest by `parent`: an outer loop holds
the inner loop it runs, and each statement node belongs to the loop it sits in.
Passes (metadsl.passes) are pure functions IR → IR.
"""

from __future__ import annotations

import json
from typing import Literal

import networkx as nx
from pydantic import BaseModel

from . import ast as A
from . import registry as R
from .checker import Checked, bind_args
from .formatter import format_expr


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
    second_order: bool | None = None  # set by passes.mark_differentiation


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


def _args(call: A.Expr | None, entry: R.Entry | None = None) -> dict[str, str]:
    """A call's arguments by parameter name, formatted; `entry` defaults to the registry's."""
    if isinstance(call, A.Call) and entry is None:
        entry = R.REGISTRY.get(call.func_name or "")
    if entry is None:
        return {}
    return {name: format_expr(value) for name, value in bind_args(call, entry).items()}


def build(checked: Checked) -> IR:
    g = nx.MultiDiGraph(spec=checked.module.name.id,
                        title=checked.module.title.value if checked.module.title else "")
    param_symbol = {m: _param_symbol(m, list(checked.models)) for m in checked.models}
    g.graph["param_symbol"] = param_symbol

    def add(node: Node) -> str:
        g.add_node(node.id, node=node)
        return node.id

    def edge(src: str, dst: str, name: str, label: str, style: str = "data") -> None:
        if src in g and dst in g:
            g.add_edge(src, dst, key=f"{name}:{style}", name=name, label=label, style=style)

    for name, (decl, entry) in checked.tasks.items():
        add(TaskNode(id=f"tasks:{name}", label=name, line=decl.span.line,
                     source=decl.value.func_name or "", args=_args(decl.value)))
    for name, info in checked.models.items():
        add(ModelNode(id=f"model:{name}", label=name, line=info.decl.span.line,
                      constructor=info.entry.name if info.entry else "",
                      core=info.core.name if info.core else None, heads=info.heads,
                      inputs=info.inputs, stateful=info.stateful, args=_args(info.decl.value)))
    for name, decl in checked.metas.items():
        add(MetaNode(id=f"meta:{name}", label=greek(name), line=decl.span.line,
                     constructor=decl.value.func_name or "", learner=decl.learner.id,
                     args=_args(decl.value)))
    for key, decl in checked.memories.items():
        add(MemoryNode(id=f"memory:{key}", label=key, line=decl.span.line, target=key,
                       scope=decl.scope.id, args=_args(decl.value),
                       constructor=decl.value.func_name if isinstance(decl.value, A.Call)
                       else None))

    # loops: outer loops first so that inner loops can name their parent
    parent = {l.decl.over.id: n for n, l in checked.loops.items() if l.decl.over is not None}
    for name, loop in checked.loops.items():
        d = loop.decl
        add(LoopNode(id=f"loop:{name}", label=name, line=d.span.line, loop_kind=d.kind,
                     parent=f"loop:{parent[name]}" if name in parent else None,
                     loop=f"loop:{parent[name]}" if name in parent else None,
                     tasks=d.task_source.id if isinstance(d.task_source, A.Name) else None,
                     settings={k: format_expr(s.value) for k, s in loop.settings.items()}))
        if isinstance(d.task_source, A.Name):
            edge(f"tasks:{d.task_source.id}", f"loop:{name}", "task", "task")

    data_node: dict[tuple[str, str], str] = {}  # (loop, data name) -> node id

    def data_id(loop_name: str, data: str) -> str | None:
        loop = checked.loops[loop_name]
        if (loop_name, data) in data_node:
            return data_node[(loop_name, data)]
        over = loop.decl.over
        if over is not None and (over.id, data) in data_node:
            return data_node[(over.id, data)]
        return None

    def params_node(model: str) -> str:
        """θ′ of a model: one node, made by the loop that adapts it."""
        nid = f"params:{model}'"
        if nid not in g:
            owner = next((f"loop:{n}" for n, l in checked.loops.items() if model in l.adapted),
                         None)
            add(DataNode(id=nid, label=param_symbol.get(model, greek(model)) + "′", loop=owner,
                         data_kind="params"))
        return nid

    ordered = sorted(checked.loops.items(), key=lambda kv: kv[1].decl.kind != "inner")
    for name, loop in ordered:
        loop_id = f"loop:{name}"
        for i, stmt in enumerate(loop.decl.body):
            sid = f"{name}.{i}"
            if isinstance(stmt, A.Collect):
                add(CollectNode(id=sid, label=f"collect {format_expr(stmt.count)} {stmt.unit.id}",
                                loop=loop_id, line=stmt.span.line, count=format_expr(stmt.count),
                                unit=stmt.unit.id, source=stmt.source,
                                policy=format_expr(stmt.policy), output=stmt.output.id))
                out = add(DataNode(id=f"data:{name}.{stmt.output.id}",
                                   label=greek(stmt.output.id), loop=loop_id,
                                   data_kind="samples" if stmt.unit.id == "samples"
                                   else "trajectories"))
                data_node[(name, stmt.output.id)] = out
                edge(sid, out, stmt.output.id, greek(stmt.output.id))
                _policy_edges(checked, stmt, sid, edge, params_node, param_symbol)
            elif isinstance(stmt, A.Store):
                add(StoreNode(id=sid, label=f"store in {stmt.buffer.id}", loop=loop_id,
                              line=stmt.span.line, data=stmt.data.id, buffer=stmt.buffer.id))
                src = data_id(name, stmt.data.id)
                if src:
                    edge(src, sid, stmt.data.id, greek(stmt.data.id))
                edge(sid, f"memory:{stmt.buffer.id}", stmt.buffer.id, "M")
            elif isinstance(stmt, (A.Adapt, A.Update)):
                _update(checked, g, add, edge, stmt, sid, name, loop_id, data_id, params_node,
                        param_symbol)
    for key, decl in checked.memories.items():
        base = decl.target.parts[0]
        if base in checked.models and decl.value is None:
            edge(f"memory:{key}", f"model:{base}", "h", "h", "state")
        elif base.endswith("'"):
            edge(f"memory:{key}", params_node(base.rstrip("'")), base, greek(base), "state")
        entry = R.REGISTRY.get(decl.value.func_name or "") if isinstance(decl.value, A.Call) \
            else None
        if entry is not None and "latent" in entry.traits:
            for m, info in checked.models.items():
                if "z" in info.inputs:
                    edge(f"memory:{key}", f"model:{m}", "z", "z", "state")
            for a in decl.value.args:
                if isinstance(a.value, A.Name) and a.value.id in checked.metas:
                    edge(f"meta:{a.value.id}", f"memory:{key}", a.value.id, greek(a.value.id))
        if entry is not None and "key" in _args(decl.value):
            edge(f"model:{_args(decl.value)['key']}", f"memory:{key}", "h", "h")
    return g


def _param_symbol(model: str, models: list[str]) -> str:
    if greek(model) != model:
        return greek(model)
    return "θ" if len(models) == 1 else f"θ[{model}]"


def _policy_edges(checked, stmt: A.Collect, sid, edge, params_node, param_symbol) -> None:
    policy = stmt.policy
    if isinstance(policy, A.Call) and policy.args:
        policy = policy.args[0].value
    if not isinstance(policy, A.Name):
        return
    name = policy.id
    base = name.rstrip("'")
    if stmt.source == "from":
        edge(f"memory:{name}", sid, name, "M")
    elif name != base:
        edge(params_node(base), sid, name, param_symbol.get(base, base) + "′")
    elif base in checked.models:
        edge(f"model:{base}", sid, base, param_symbol[base])
    elif base in checked.memories:
        edge(f"memory:{base}", sid, base, "M")


def _update(checked, g, add, edge, stmt, sid, loop_name, loop_id, data_id, params_node,
            param_symbol) -> None:
    obj = stmt.objective
    rule = stmt.rule.func_name if isinstance(stmt.rule, A.Call) else ""
    entry = R.REGISTRY.get(rule or "")
    if isinstance(obj, A.Minimize):
        kind, text, data = "minimize", format_expr(obj.loss), obj.data.id
    elif isinstance(obj, A.Maximize):
        kind, text, data = "maximize", format_expr(obj.fitness), None
    else:
        kind, text, data = "toward", obj.target.id, None
    through = stmt.through if isinstance(stmt, A.Update) else None
    through_name = (through.func_name if isinstance(through, A.Call) else
                    through.id if isinstance(through, A.Name) else None)
    mode = "adapt" if isinstance(stmt, A.Adapt) else "update"
    targets = [t.text for t in stmt.targets]
    add(UpdateNode(id=sid, label=f"{mode} by {rule}", loop=loop_id, line=stmt.span.line,
                   mode=mode, targets=targets, rule=rule or "", rule_args=_args(stmt.rule),
                   rule_traits=sorted(entry.traits) if entry else [], objective=kind,
                   expression=text, data=data, through=through_name,
                   through_args=_args(through, R.THROUGH) if isinstance(through, A.Call) else {}))
    if data is not None:
        src = data_id(loop_name, data)
        if src:
            edge(src, sid, data, greek(data))
    if kind == "toward":
        edge(params_node(obj.target.id.rstrip("'")), sid, obj.target.id, greek(obj.target.id)
             if obj.target.id.rstrip("'") not in param_symbol
             else param_symbol[obj.target.id.rstrip("'")] + "′")
    for t in stmt.targets:
        base = t.parts[0]
        target = next((f"{k}:{base}" for k in ("model", "meta", "memory", "tasks")
                       if f"{k}:{base}" in g), None)
        if target is None:
            continue
        symbol = param_symbol.get(base, greek(base)) if target.startswith("model:") else \
            greek(base) if target.startswith("meta:") else base
        if mode == "adapt":
            edge(target, sid, base, symbol)
            edge(sid, params_node(base) if target.startswith("model:") else target,
                 base + "'", symbol + "′")
        else:
            edge(sid, target, base, "Δ" + symbol, "update")
    # meta-parameters an update's loss or rule reads (γ, λ into the inner step)
    for arg in _meta_names(stmt, checked):
        edge(f"meta:{arg}", sid, arg, greek(arg))
    if through_name is not None:
        for other, attrs in g.nodes(data=True):
            n = attrs["node"]
            if isinstance(n, UpdateNode) and n.mode == "adapt" and n.loop == f"loop:{through_name}":
                edge(other, sid, "through", "∂θ′/∂θ", "through")


def _meta_names(stmt, checked) -> list[str]:
    names = []
    for node in A.walk(stmt.objective if not isinstance(stmt.objective, A.Toward) else ()):
        if isinstance(node, A.Name) and node.id in checked.metas:
            names.append(node.id)
    for node in A.walk(stmt.rule):
        if isinstance(node, A.Name) and node.id in checked.metas:
            names.append(node.id)
    targets = {t.parts[0] for t in stmt.targets}
    return sorted(set(names) - targets)


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
