"""`metadsl fmt`: the canonical layout of a spec, and the one expression printer.

Canonical: 4-space indents, one statement per line, `name = value` with spaces, a line
broken only past WIDTH (call arguments then go one per line with a trailing comma;
a long update breaks before `on`/`maximizing`/`toward` and `through`). Comments are
kept: a comment line goes with the statement after it, an end-of-line comment stays
at the end of its statement's line. fmt(fmt(s)) == fmt(s), parse(fmt(s)) == parse(s).
"""

from __future__ import annotations

import re

from . import ast as A

WIDTH = 100
INDENT = "    "

# Binding strength of each operator (higher binds tighter).
_PREC = {"or": 1, "and": 2, "not": 3, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
         "+": 5, "-": 5, "*": 6, "/": 6, "neg": 7, "^": 8}
_POSTFIX = 9
_ATOM = 10


def _prec(e: A.Expr) -> int:
    if isinstance(e, A.BinOp):
        return _PREC[e.op]
    if isinstance(e, A.UnaryOp):
        return _PREC["not"] if e.op == "not" else _PREC["neg"]
    if isinstance(e, (A.Call, A.Attr, A.Index)):
        return _POSTFIX
    return _ATOM


def format_expr(e: A.Expr) -> str:
    """One-line text of an expression, with exactly the parentheses its tree needs."""
    if isinstance(e, A.Number):
        return e.text
    if isinstance(e, A.String):
        return _quote(e.value)
    if isinstance(e, A.Name):
        return e.id
    if isinstance(e, A.Attr):
        # `0 .a` written `0.a` would read back as the number `0.` then a name
        obj = f"({format_expr(e.obj)})" if isinstance(e.obj, A.Number) else \
            _wrap(e.obj, _POSTFIX)
        return f"{obj}.{e.name}"
    if isinstance(e, A.Index):
        return f"{_wrap(e.obj, _POSTFIX)}[{format_expr(e.index)}]"
    if isinstance(e, A.Call):
        return f"{_wrap(e.func, _POSTFIX)}({', '.join(format_arg(a) for a in e.args)})"
    if isinstance(e, A.UnaryOp):
        if e.op == "not":
            return f"not {_wrap(e.operand, _PREC['not'])}"
        return f"-{_wrap(e.operand, _PREC['neg'])}"
    if isinstance(e, A.BinOp):
        p = _PREC[e.op]
        if e.op == "^":  # right-associative; its left side is a postfix expression
            return f"{_wrap(e.left, _POSTFIX)} ^ {_wrap(e.right, _PREC['neg'])}"
        if p == 4:  # comparisons do not chain
            return f"{_wrap(e.left, 5)} {e.op} {_wrap(e.right, 5)}"
        return f"{_wrap(e.left, p)} {e.op} {_wrap(e.right, p + 1)}"
    if isinstance(e, A.ListExpr):
        return "[" + ", ".join(format_expr(x) for x in e.items) + "]"
    if isinstance(e, A.DictExpr):
        return "{" + ", ".join(f"{k.id}: {format_expr(v)}" for k, v in e.items) + "}"
    raise TypeError(f"not an expression: {type(e).__name__}")


def _wrap(e: A.Expr, min_prec: int) -> str:
    text = format_expr(e)
    return f"({text})" if _prec(e) < min_prec else text


def format_arg(a: A.Arg) -> str:
    return format_expr(a.value) if a.name is None else f"{a.name} = {format_expr(a.value)}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") \
        .replace("\t", "\\t") + '"'


def _broken(e: A.Expr, indent: str, room: int) -> str:
    """The expression laid out within `room` columns, breaking its outermost brackets."""
    flat = format_expr(e)
    if len(flat) <= room:
        return flat
    inner = indent + INDENT
    if isinstance(e, A.Call) and e.args:
        items = [(a.name + " = " if a.name else "") + _broken(a.value, inner, WIDTH - len(inner)
                                                                - len(a.name or "") - 3)
                 for a in e.args]
        return _wrap(e.func, _POSTFIX) + "(\n" + "".join(f"{inner}{x},\n" for x in items) + \
            indent + ")"
    if isinstance(e, A.ListExpr) and e.items:
        items = [_broken(x, inner, WIDTH - len(inner) - 1) for x in e.items]
        return "[\n" + "".join(f"{inner}{x},\n" for x in items) + indent + "]"
    if isinstance(e, A.DictExpr) and e.items:
        items = [f"{k.id}: " + _broken(v, inner, WIDTH - len(inner) - len(k.id) - 3)
                 for k, v in e.items]
        return "{\n" + "".join(f"{inner}{x},\n" for x in items) + indent + "}"
    return flat


def _assign(prefix: str, value: A.Expr, indent: str, suffix: str = "") -> str:
    """`prefix value suffix`, breaking `value` when the line would be too long."""
    return prefix + _broken(value, indent, WIDTH - len(prefix) - len(suffix)) + suffix


# ---- statements and declarations ------------------------------------------------------


def _objective(o) -> str:
    if isinstance(o, A.Minimize):
        return f"on {format_expr(o.loss)} over {o.data.id}"
    if isinstance(o, A.Maximize):
        return f"maximizing {format_expr(o.fitness)}"
    return f"toward {o.target.id}"


def _stmt(s, indent: str) -> str:
    if isinstance(s, A.Setting):
        return _assign(f"{indent}{s.name.id} = ", s.value, indent)
    if isinstance(s, A.Collect):
        return (f"{indent}collect {format_expr(s.count)} {s.unit.id} {s.source} "
                f"{format_expr(s.policy)} as {s.output.id}")
    if isinstance(s, A.Store):
        columns = f" with {format_expr(s.columns)}" if s.columns is not None else ""
        return f"{indent}store {s.data.id} in {s.buffer.id}{columns}"
    verb = "adapt" if isinstance(s, A.Adapt) else "update"
    head = f"{indent}{verb} {', '.join(t.text for t in s.targets)} by "
    tail = [_objective(s.objective)]
    if isinstance(s, A.Update) and s.through is not None:
        tail.append(f"through {format_expr(s.through)}")
    flat = head + format_expr(s.rule) + " " + " ".join(tail)
    if len(flat) <= WIDTH:
        return flat
    cont = indent + INDENT
    lines = [_assign(head, s.rule, indent)]
    if isinstance(s.objective, A.Minimize):
        o = s.objective
        lines.append(_assign(cont + "on ", o.loss, cont, f" over {o.data.id}"))
    else:
        lines.append(cont + tail[0])
    lines += [cont + t for t in tail[1:]]
    return "\n".join(lines)


def _params(params) -> str:
    out = []
    for p in params:
        text = p.name.id + (f": {p.type.id}" if p.type is not None else "")
        out.append(text + (f" = {format_expr(p.default)}" if p.default is not None else ""))
    return ", ".join(out)


class _Layout:
    """Emits lines, placing each comment before the first statement after it."""

    def __init__(self, comments: list[tuple[int, int, str]]):
        self.comments = comments  # (offset, line, text), in order
        self.next = 0
        self.lines: list[str] = []

    def leading(self, start: int, indent: str, line: int | None = None) -> None:
        while self.next < len(self.comments) and self.comments[self.next][0] < start:
            _, at, text = self.comments[self.next]
            self.lines.append(indent + text)
            self.next += 1
            following = self.comments[self.next][1] if self.next < len(self.comments) and \
                self.comments[self.next][0] < start else line
            if following is not None and following > at + 1:
                self.lines.append("")  # the author's paragraph break after a comment

    def emit(self, text: str, node_span: A.Span, indent: str) -> None:
        self.leading(node_span.start, indent, node_span.line)
        # a comment sitting inside the statement moves above it; one after it on its last
        # line stays at the end of that line
        self.leading(node_span.end, indent)
        if self.next < len(self.comments):
            offset, line, comment = self.comments[self.next]
            if line == node_span.end_line:
                text += "  " + comment
                self.next += 1
        self.lines.append(text)

    def rest(self, indent: str, before: int) -> None:
        self.leading(before, indent)


def _block(lay: _Layout, header: str, body, span: A.Span, indent: str) -> None:
    lay.leading(span.start, indent, span.line)
    lay.lines.append(f"{indent}{header} {{")
    for s in body:
        lay.emit(_stmt(s, indent + INDENT), s.span, indent + INDENT)
    lay.rest(indent + INDENT, span.end)
    lay.lines.append(indent + "}")


def _decl(lay: _Layout, d) -> None:
    if isinstance(d, A.Import):
        text = f"from {d.module.id} import {', '.join(n.id for n in d.names)}" if d.names \
            else f"import {d.module.id}"
        lay.emit(text, d.span, "")
    elif isinstance(d, A.TasksDecl):
        lay.emit(_assign(f"tasks {d.name.id} = ", d.value, ""), d.span, "")
    elif isinstance(d, A.ModelDecl):
        lay.emit(_assign(f"model {d.name.id} = ", d.value, ""), d.span, "")
    elif isinstance(d, A.MemoryDecl):
        reset = "reset never" if d.scope.id == "never" else \
            f"{'reinit' if d.fresh else 'reset'} per {d.scope.id}"
        if d.value is None:
            lay.emit(f"memory {d.target.text} {reset}", d.span, "")
        else:
            lay.emit(_assign(f"memory {d.target.text} = ", d.value, "", f" {reset}"), d.span, "")
    elif isinstance(d, A.MetaDecl):
        lay.emit(_assign(f"meta {d.name.id} = ", d.value, "", f" learned by {d.learner.id}"),
                 d.span, "")
    elif isinstance(d, A.FuncDecl):
        head = f"{d.kind} {d.name.id}({_params(d.params)})"
        if d.lets:
            lay.leading(d.span.start, "", d.span.line)
            lay.lines.append(head + " {")
            for let in d.lets:
                lay.emit(_assign(f"{INDENT}{let.name.id} = ", let.value, INDENT), let.span, INDENT)
            lay.emit(_assign(f"{INDENT}return ", d.body, INDENT), d.body.span, INDENT)
            lay.rest(INDENT, d.span.end)
            lay.lines.append("}")
        else:
            line = f"{head} = {format_expr(d.body)}"
            if len(line) > WIDTH:
                line = f"{head} =\n" + _assign(INDENT, d.body, INDENT)
            lay.emit(line, d.span, "")
    elif isinstance(d, A.LoopDecl):
        if d.kind == "inner":
            header = f"inner {d.name.id}({d.task_var.id} ~ {format_expr(d.task_source)})"
        else:
            header = f"outer {d.name.id}" + (f" over {d.over.id}" if d.over else "")
        _block(lay, header, d.body, d.span, "")
    elif isinstance(d, A.SettingsBlock):
        _block(lay, d.kind, d.body, d.span, "")


_GROUPED = (A.Import, A.TasksDecl, A.ModelDecl, A.MemoryDecl, A.MetaDecl)


def comments_of(source: str) -> list[tuple[int, int, str]]:
    """Every `# ...` comment (not inside a string) as (offset, line, text)."""
    out = []
    for m in re.finditer(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*', source):
        if m.group().startswith("#"):
            out.append((m.start(), source.count("\n", 0, m.start()) + 1, m.group().rstrip()))
    return out


def format_module(module: A.Module, source: str) -> str:
    lay = _Layout(comments_of(source))
    lay.leading(module.version.span.start, "")
    lay.emit(f"metadsl {module.version.text}", module.version.span, "")
    title = f" {_quote(module.title.value)}" if module.title else ""
    name_span = module.title.span if module.title else module.name.span
    lay.emit(f"{module.kind} {module.name.id}{title}", name_span, "")
    previous, previous_lines = None, 0
    for d in module.decls:
        grouped = previous is not None and isinstance(d, _GROUPED) and \
            type(d) is type(previous) and previous_lines == 1
        if not grouped:
            lay.lines.append("")
        before = len(lay.lines)
        _decl(lay, d)
        previous = d
        previous_lines = sum(1 for x in lay.lines[before:] if not x.lstrip().startswith("#")
                             and x.strip())
    lay.rest("", len(source) + 1)
    text = "\n".join(lay.lines).rstrip("\n") + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)
