"""Small constructors for Python's own `ast`: the generated module is built from these,
never from strings, so spec text can reach it only as literals."""

from __future__ import annotations

import ast

LOAD, STORE = ast.Load(), ast.Store()


def name(id_: str, store: bool = False) -> ast.Name:
    return ast.Name(id_, STORE if store else LOAD)


def dotted(path: str) -> ast.expr:
    """`a.b.c` as attribute access (generated names only, never spec text)."""
    first, *rest = path.split(".")
    node: ast.expr = name(first)
    for part in rest:
        node = ast.Attribute(node, part, LOAD)
    return node


def attr(obj: ast.expr, attribute: str) -> ast.Attribute:
    return ast.Attribute(obj, attribute, LOAD)


def const(value) -> ast.expr:
    """A Python literal from plain data: numbers, strings, booleans, None; tuples and
    lists as lists (dicts are built by `mapping`)."""
    if isinstance(value, (list, tuple)):
        return ast.List([const(v) for v in value], LOAD)
    if isinstance(value, float) and value < 0 or isinstance(value, int) and \
            not isinstance(value, bool) and value < 0:
        return ast.UnaryOp(ast.USub(), ast.Constant(-value))
    return ast.Constant(value)


def mapping(pairs) -> ast.Dict:
    """A dict literal from (key, value expr or plain value) pairs."""
    keys, values = [], []
    for k, v in pairs:
        keys.append(ast.Constant(k))
        values.append(v if isinstance(v, ast.AST) else const(v))
    return ast.Dict(keys, values)


def call(func: ast.expr | str, *args: ast.expr, **kwargs: ast.expr) -> ast.Call:
    """A call; keyword names must be Python identifiers (generated or mangled)."""
    if isinstance(func, str):
        func = dotted(func)
    return ast.Call(func, list(args), [ast.keyword(k, v) for k, v in kwargs.items()])


def call_kw(func: ast.expr | str, args: list, keywords: list[tuple[str, ast.expr]]) -> ast.Call:
    if isinstance(func, str):
        func = dotted(func)
    return ast.Call(func, list(args), [ast.keyword(k, v) for k, v in keywords])


def subscript(obj: ast.expr, key) -> ast.Subscript:
    return ast.Subscript(obj, key if isinstance(key, ast.AST) else const(key), LOAD)


def assign(target: str | ast.expr | list, value: ast.expr) -> ast.Assign:
    if isinstance(target, str):
        target = name(target, store=True)
    elif isinstance(target, list):
        target = ast.Tuple([name(t, store=True) if isinstance(t, str) else _store(t)
                            for t in target], STORE)
    else:
        target = _store(target)
    return ast.Assign([target], value)


def _store(node: ast.expr) -> ast.expr:
    if isinstance(node, ast.Name):
        return ast.Name(node.id, STORE)
    if isinstance(node, ast.Subscript):
        return ast.Subscript(node.value, node.slice, STORE)
    if isinstance(node, ast.Attribute):
        return ast.Attribute(node.value, node.attr, STORE)
    return node


def expr(value: ast.expr) -> ast.Expr:
    return ast.Expr(value)


def docstring(text: str) -> ast.Expr:
    return ast.Expr(ast.Constant(text))


def arguments(positional: list[str], defaults: list[ast.expr] | None = None,
              annotations: dict[str, ast.expr] | None = None) -> ast.arguments:
    annotations = annotations or {}
    return ast.arguments(posonlyargs=[], args=[ast.arg(a, annotations.get(a))
                                               for a in positional],
                         kwonlyargs=[], kw_defaults=[], defaults=defaults or [])


def function(fname: str, args: ast.arguments, body: list[ast.stmt], doc: str | None = None,
             returns: ast.expr | None = None) -> ast.FunctionDef:
    statements = ([docstring(doc)] if doc else []) + (body or [ast.Pass()])
    node = ast.FunctionDef(fname, args, statements, [], returns)
    if "type_params" in ast.FunctionDef._fields:  # Python ≥ 3.12
        node.type_params = []
    return node


def lambda_(params: list[str], body: ast.expr) -> ast.Lambda:
    return ast.Lambda(arguments(params), body)


def for_(target: str, iterable: ast.expr, body: list[ast.stmt]) -> ast.For:
    return ast.For(name(target, store=True), iterable, body or [ast.Pass()], [])


def if_(test: ast.expr, body: list[ast.stmt], orelse: list[ast.stmt] | None = None) -> ast.If:
    return ast.If(test, body, orelse or [])


def ret(value: ast.expr) -> ast.Return:
    return ast.Return(value)


BINARY = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div, "^": ast.Pow}
COMPARE = {"==": ast.Eq, "!=": ast.NotEq, "<": ast.Lt, "<=": ast.LtE, ">": ast.Gt,
           ">=": ast.GtE}


def binary(op: str, left: ast.expr, right: ast.expr) -> ast.expr:
    if op in COMPARE:
        return ast.Compare(left, [COMPARE[op]()], [right])
    return ast.BinOp(left, BINARY[op](), right)


def binary_or(left: ast.expr, right: ast.expr) -> ast.expr:
    """`left | right` (an annotation's union)."""
    return ast.BinOp(left, ast.BitOr(), right)


def module(body: list[ast.stmt]) -> ast.Module:
    return ast.fix_missing_locations(ast.Module(body, type_ignores=[]))
