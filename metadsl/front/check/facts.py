"""What the checker learns about each declaration, and the small helpers every pass
shares (binding a call's arguments, type compatibility, printing a value)."""

from __future__ import annotations

from .. import ast as A
from ... import registry as R

from dataclasses import dataclass, field


@dataclass
class ModelInfo:
    decl: A.ModelDecl
    entry: R.Entry | None
    heads: dict[str, str] = field(default_factory=dict)  # head name -> "dist" | "tensor"
    core: R.Entry | None = None
    inputs: list[str] = field(default_factory=list)
    inputs_span: A.Span | None = None

    @property
    def stateful(self) -> bool:
        return self.core is not None and "stateful" in self.core.traits


@dataclass
class FuncInfo:
    decl: A.FuncDecl
    module: str  # "" for the spec itself
    refs: set = field(default_factory=set)  # transitive: ("head", h), ("model", m), ...


@dataclass
class LoopInfo:
    decl: A.LoopDecl
    settings: dict[str, A.Setting] = field(default_factory=dict)
    data: dict[str, A.Collect] = field(default_factory=dict)  # name -> producing statement
    adapted: set[str] = field(default_factory=set)  # names adapted in this loop
    policies: dict[str, str] = field(default_factory=dict)  # data name -> model name
    refs: set = field(default_factory=set)  # everything its statements refer to


@dataclass
class Checked:
    """A module that passed the checker, with what the later phases need."""

    module: A.Module
    source: str
    file: str
    tasks: dict[str, tuple[A.TasksDecl, R.Entry]]
    models: dict[str, ModelInfo]
    memories: dict[str, A.MemoryDecl]
    metas: dict[str, A.MetaDecl]
    funcs: dict[str, FuncInfo]
    loops: dict[str, LoopInfo]
    blocks: dict[str, A.SettingsBlock]
    columns: dict[str, tuple[A.Store, A.Expr]] = field(default_factory=dict)
    evaluated: str | None = None  # the inner loop `evaluate` measures (Structure decides)
    defaulted: frozenset = frozenset()  # memories whose scope is the default, not written
    evaluation: str = "none"  # after_adaptation | held_out | none: how it is measured


def ref(kind: str, name: str) -> tuple[str, str]:
    """What an expression refers to: ("head", "pi"), ("model", "agent"), ..."""
    return (kind, name)


def bind_args(call: A.Call, entry: R.Entry) -> dict[str, A.Expr]:
    """A registry call's arguments by parameter name (errors are check_args' to report)."""
    out: dict[str, A.Expr] = {}
    for i, arg in enumerate(call.args):
        if arg.name is None:
            if i < len(entry.params):
                out.setdefault(entry.params[i].name, arg.value)
        else:
            out.setdefault(arg.name, arg.value)
    return out


def compatible(expected: str, got: str) -> bool:
    if got == "unknown" or expected == "any":
        return True
    if expected == "tensor":
        return got in ("tensor", "num", "int", "bool")
    if expected == "num":
        return got in ("num", "int")
    return expected == got


def type_word(t: str) -> str:
    return {"tensor": "a tensor", "num": "a number", "int": "an integer", "dist": "a distribution",
            "model": "a model", "func": "a function", "loop": "a loop", "tasks": "tasks",
            "memory": "a memory", "bool": "a boolean", "str": "a string", "list": "a list",
            "dict": "a dictionary", "head": "a head", "core": "a network core",
            "meta": "a meta-parameter", "unknown": "something unknown"}.get(t, t)


def show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def declared_heads(call: A.Call) -> tuple:
    """A model constructor's `heads = {pi: categorical, v: value}` as ((head, kind), ...),
    or its entry's default heads where the spec gives none (`regressor(...)`: pred)."""
    for a in call.args:
        if a.name == "heads" and isinstance(a.value, A.DictExpr):
            return tuple((h.id, k.id) for h, k in a.value.items if isinstance(k, A.Name))
    entry = R.REGISTRY.get(call.func_name or "")
    default = entry.param("heads").default if entry and entry.param("heads") else None
    return tuple(default.items()) if isinstance(default, dict) else ()
