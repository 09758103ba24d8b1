"""The abstract syntax tree: what the parser builds and the checker reads.

Every node carries the `Span` of the source it came from, so every diagnostic can
point at it. Nodes are frozen dataclasses; `strip_spans` gives a span-free form used
to compare two parses (the formatter's round-trip property).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Union

from ..spans import Span


# ---- expressions ------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    value: float
    text: str
    span: Span = field(compare=False)

    @property
    def is_int(self) -> bool:
        return self.text.isdigit()


@dataclass(frozen=True)
class String:
    value: str
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Name:
    id: str
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Attr:
    obj: "Expr"
    name: str
    span: Span = field(compare=False)
    name_span: Span = field(compare=False)


@dataclass(frozen=True)
class Index:
    obj: "Expr"
    index: "Expr"
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Arg:
    name: str | None  # None for a positional argument
    value: "Expr"
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Call:
    func: "Expr"
    args: tuple[Arg, ...]
    span: Span = field(compare=False)

    @property
    def func_name(self) -> str | None:
        return self.func.id if isinstance(self.func, Name) else None


@dataclass(frozen=True)
class BinOp:
    op: str  # + - * / ^ and or == != < <= > >=
    left: "Expr"
    right: "Expr"
    span: Span = field(compare=False)


@dataclass(frozen=True)
class UnaryOp:
    op: str  # - not
    operand: "Expr"
    span: Span = field(compare=False)


@dataclass(frozen=True)
class ListExpr:
    items: tuple["Expr", ...]
    span: Span = field(compare=False)


@dataclass(frozen=True)
class DictExpr:
    items: tuple[tuple[Name, "Expr"], ...]
    span: Span = field(compare=False)


Expr = Union[Number, String, Name, Attr, Index, Call, BinOp, UnaryOp, ListExpr, DictExpr]


# ---- loop statements ----------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    name: Name
    value: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Collect:
    """`collect COUNT UNIT with POLICY as NAME` or `... from BUFFER as NAME`."""

    count: Expr
    unit: Name
    source: str  # "with" (roll out a policy) or "from" (sample a buffer)
    policy: Expr
    output: Name
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Store:
    """`store DATA in BUFFER [with {NAME: EXPR, ...}]`: the optional columns are computed
    over the whole trajectories as they are stored (an n-step return), and read by name
    in losses over data sampled from the buffer."""

    data: Name
    buffer: Name
    columns: "Expr | None"
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Minimize:
    loss: Expr
    data: Name
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Maximize:
    fitness: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Toward:
    target: Name
    span: Span = field(compare=False)


Objective = Union[Minimize, Maximize, Toward]


@dataclass(frozen=True)
class Ref:
    """A dotted reference to a declared thing: `agent`, `agent.core`, `pi'`."""

    parts: tuple[str, ...]
    span: Span = field(compare=False)

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Adapt:
    """Inner-loop update: produces adapted copies (θ → θ′) and leaves θ as it was."""

    targets: tuple[Ref, ...]
    rule: Expr
    objective: Objective
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Update:
    """In-place update of parameters, meta-parameters, memories or populations."""

    targets: tuple[Ref, ...]
    rule: Expr
    objective: Objective
    through: Expr | None
    span: Span = field(compare=False)


Stmt = Union[Setting, Collect, Store, Adapt, Update]


# ---- declarations ---------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    module: Name
    names: tuple[Name, ...]  # empty: the whole module
    span: Span = field(compare=False)


@dataclass(frozen=True)
class TasksDecl:
    name: Name
    value: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True)
class ModelDecl:
    name: Name
    value: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True)
class MemoryDecl:
    """`memory agent.core reset per task` or `memory M = dnd(...) reset never`."""

    target: Ref
    value: Expr | None  # the constructor, for a memory that is its own store
    scope: Name  # step | episode | task | iteration | never
    span: Span = field(compare=False)
    # `reinit per SCOPE`: adapted parameters start each scope from a fresh random draw
    # (EPG's lifetimes), not from θ as `reset` does (MAML)
    fresh: bool = False


@dataclass(frozen=True)
class MetaDecl:
    name: Name
    value: Expr
    learner: Name
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Param:
    name: Name
    type: Name | None
    default: Expr | None
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Let:
    name: Name
    value: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True)
class FuncDecl:
    kind: str  # loss | def
    name: Name
    params: tuple[Param, ...]
    lets: tuple[Let, ...]
    body: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True)
class LoopDecl:
    kind: str  # inner | outer
    name: Name
    task_var: Name | None  # inner only: the `task` in `inner trial(task ~ bandits)`
    task_source: Expr | None
    over: Name | None  # outer only: the inner loop it runs
    body: tuple[Stmt, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True)
class SettingsBlock:
    kind: str  # evaluate | schedule
    body: tuple[Stmt, ...]
    span: Span = field(compare=False)


Decl = Union[Import, TasksDecl, ModelDecl, MemoryDecl, MetaDecl, FuncDecl, LoopDecl, SettingsBlock]


@dataclass(frozen=True)
class Module:
    kind: str  # spec | library (a stdlib module: declarations only)
    version: Number
    name: Name
    title: String | None
    decls: tuple[Decl, ...]
    span: Span = field(compare=False)


def strip_spans(node):
    """A plain, span-free rendering of a node: equal for equal programs."""
    if is_dataclass(node):
        return (type(node).__name__,) + tuple(
            strip_spans(getattr(node, f.name)) for f in fields(node) if f.compare
        )
    if isinstance(node, tuple):
        return tuple(strip_spans(x) for x in node)
    return node


def walk(node):
    """Every AST node under `node`, itself included, without recursion."""
    stack = [node]
    while stack:
        current = stack.pop()
        if is_dataclass(current) and not isinstance(current, Span):
            yield current
            for f in fields(current):
                if f.compare:
                    stack.append(getattr(current, f.name))
        elif isinstance(current, tuple):
            stack.extend(current)
