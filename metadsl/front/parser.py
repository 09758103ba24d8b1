"""Phase 1: source text → AST.  Lark LALR(1), strict, with positions.

Guards run before Lark so that no input (binary, huge, deeply nested) can reach a
Python exception: each becomes a diagnostic. After a syntax error the parser
re-parses each top-level declaration alone, so one run reports every broken one.
"""

from __future__ import annotations

import re
from functools import lru_cache

from lark import Lark, Token, Transformer_NonRecursive, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from . import ast as A
from ..diagnostics import CompileError, Diagnostic
from ..resources import grammar_path

MAX_BYTES = 1 << 18  # a spec is a page of text (the largest in specs/ is 2 KB)
MAX_OPERATORS = 1000  # operators in one declaration: the stdlib's longest loss has 12
MAX_DEPTH = 64  # bracket nesting
MAX_TREE_DEPTH = 400  # operator chains: `a + a + ... + a`
MAX_ERRORS = 20
SUPPORTED_VERSIONS = {1}

TOP_LEVEL = ("metadsl", "spec", "import", "from", "tasks", "model", "memory", "meta",
             "loss", "def", "inner", "outer", "evaluate", "schedule")
_ITEM_START = re.compile(r"^(" + "|".join(TOP_LEVEL) + r")\b", re.MULTILINE)

# How Lark's terminal names read in a message.
_READABLE = {"NAME": "a name", "INT": "an integer", "NUMBER": "a number", "STRING": "a string",
             "COMP_OP": "a comparison", "$END": "end of file"}


@lru_cache(maxsize=1)
def grammar() -> Lark:
    # cache=True stores the LALR tables in the temp dir, keyed by the grammar's hash:
    # building them costs ~100 ms, loading them ~10.
    return Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr", strict=True,
                propagate_positions=True, maybe_placeholders=True, cache=True,
                start=["start", "items"])


def decode(data: bytes, file: str) -> str:
    if len(data) > MAX_BYTES:
        raise CompileError([Diagnostic("E0003", f"the spec is {len(data)} bytes; the limit is "
                                       f"{MAX_BYTES}", hint="is this really a .mrl file?", file=file)])
    if b"\x00" in data:
        raise CompileError([Diagnostic("E0002", "the file holds NUL bytes: it looks binary",
                                       hint="a spec is UTF-8 text", file=file)])
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # editors on Windows write a BOM
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        span = A.Span(line, col, line, col + 1, e.start, e.start + 1)
        raise CompileError([Diagnostic("E0002", f"byte 0x{data[e.start]:02x} is not valid UTF-8",
                                       span, hint="save the file as UTF-8", file=file)]) from None


def parse(source: str, file: str = "<input>") -> A.Module:
    _check_nesting(source, file)
    _check_operator_chains(source, file)
    try:
        tree = grammar().parse(source, start="start")
    except UnexpectedInput as first:
        raise CompileError(_all_syntax_errors(source, first, file)) from None
    _check_tree_depth(tree, file)
    module = ToAst(file).transform(tree)
    _check_version(module, file)
    return module


def _check_nesting(source: str, file: str) -> None:
    depth = 0
    for m in re.finditer(r'[\[\](){}]|"(?:[^"\\\n]|\\.)*"|#[^\n]*', source):
        ch = m.group()
        if ch in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                raise CompileError([Diagnostic(
                    "E0003", f"brackets nested more than {MAX_DEPTH} deep",
                    _span_at(source, m.start()), hint="split the expression with `def`", file=file)])
        elif ch in ")]}":
            depth = max(0, depth - 1)


_OPERATOR_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|==|!=|<=|>=|[-+*/^<>]|\b(?:and|or)\b')


def _check_operator_chains(source: str, file: str) -> None:
    """Refuse a declaration with thousands of operators before Lark parses it: the parse
    (and the reparses that look for further errors) takes seconds per 100 KB of them."""
    starts = [m.start() for m in _ITEM_START.finditer(source)] + [len(source)]
    for begin, end in zip(starts, starts[1:]):
        count = sum(1 for m in _OPERATOR_TOKEN.finditer(source, begin, end)
                    if m.group()[0] not in '"#')
        if count > MAX_OPERATORS:
            raise CompileError([Diagnostic(
                "E0003", f"a declaration with {count} operators; the limit is {MAX_OPERATORS}",
                _span_at(source, begin), hint="split the expression with `def`", file=file)])


def _check_tree_depth(tree, file: str) -> None:
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            meta = node.meta
            span = A.Span(meta.line, meta.column, meta.end_line, meta.end_column,
                          meta.start_pos, meta.end_pos)
            raise CompileError([Diagnostic("E0003", f"expression nested more than "
                                           f"{MAX_TREE_DEPTH} deep", span, file=file)])
        stack.extend((c, depth + 1) for c in node.children if hasattr(c, "children"))


def _check_version(module: A.Module, file: str) -> None:
    v = module.version
    if not v.is_int or v.value not in SUPPORTED_VERSIONS:  # a float: 10^400 is inf
        raise CompileError([Diagnostic(
            "E0110", f"language version {v.text} is not supported", v.span,
            hint="this metadsl reads `metadsl 1`", file=file)])


# ---- syntax errors ------------------------------------------------------------------

# Common slips, recognised by where the parser stops (Lark's match_examples). Each
# example is one declaration; the header is prepended when matching a whole-file error.
_HEADER = "metadsl 1\nspec s\n"
_SLIPS = {
    "a collect statement names its data: `collect 10 episodes with agent as tau`": [
        "inner l(t ~ x) { collect 10 episodes with agent }",
        "inner l(t ~ x) { collect 10 episodes with agent update a by b on c over d }",
    ],
    "say which data the loss is computed over: `on ppo() over tau`": [
        "outer o { update a by adam() on ppo() }",
        "outer o { update a by adam() on ppo() collect 1 episodes with a as b }",
        "inner i(t ~ x) { adapt a by sgd() on ppo() }",
    ],
    "an inner loop names its task distribution: `inner trial(task ~ bandits) { ... }`": [
        "inner trial { }",
    ],
    "keyword arguments use `=`: `adam(lr = 3e-4)`": [
        "tasks t = f(a: 1)",
        "model m = f(a: 1)",
    ],
    "a function body is `let`s then `return EXPR`: `loss l(x) { y = x * 2  return y }`": [
        "loss l(x) { x }",
        "loss l(x) { y = x }",
    ],
}
_HEADER_SLIPS = {
    "a spec starts with the language version and its name: `metadsl 1` then `spec NAME`": [
        "spec s\n", "tasks t = f()\n", "metadsl 1\ntasks t = f()\n",
    ],
}


def _all_syntax_errors(source: str, first: UnexpectedInput, file: str) -> list[Diagnostic]:
    diags = [_syntax_diagnostic(source, first, "start", file)]
    starts = [m.start() for m in _ITEM_START.finditer(source)]
    for i, begin in enumerate(starts):
        if len(diags) >= MAX_ERRORS:
            break
        if source.startswith(("metadsl", "spec"), begin):
            continue  # the header was parsed as part of the first attempt
        end = starts[i + 1] if i + 1 < len(starts) else len(source)
        # Blank out everything but this declaration; positions stay those of the file.
        masked = re.sub(r"[^\n]", " ", source[:begin]) + source[begin:end] + \
            re.sub(r"[^\n]", " ", source[end:])
        try:
            grammar().parse(masked, start="items")
        except UnexpectedInput as e:
            d = _syntax_diagnostic(source, e, "items", file)
            if all(d.span.start != x.span.start for x in diags):
                diags.append(d)
    return sorted(diags, key=lambda d: d.span.start)


def _syntax_diagnostic(source: str, e: UnexpectedInput, start: str, file: str) -> Diagnostic:
    hint = _slip_hint(e, start)
    if isinstance(e, UnexpectedCharacters):
        span = _span_at(source, e.pos_in_stream)
        ch = source[e.pos_in_stream]
        what = "'\"' starts a string that is not closed on its line" if ch == '"' else \
            f"unexpected character {ch!r}"
        return Diagnostic("E0102", what, span, hint=hint or _expected(e.allowed), file=file)
    if isinstance(e, UnexpectedToken) and e.token.type != "$END":
        tok = e.token
        span = A.Span(tok.line, tok.column, tok.end_line or tok.line,
                      tok.end_column or tok.column + 1, tok.start_pos, tok.end_pos or tok.start_pos)
        return Diagnostic("E0101", f"unexpected {_describe(tok)}", span,
                          hint=hint or _expected(e.expected), file=file)
    expected = getattr(e, "expected", None) or ()
    return Diagnostic("E0103", "the spec ends in the middle of a declaration",
                      _span_at(source, len(source.rstrip()) - 1 if source.strip() else 0),
                      hint=hint or _expected(expected), file=file)


def _slip_hint(e: UnexpectedInput, start: str) -> str | None:
    if start == "start":
        examples = {hint: [_HEADER + x for x in xs] for hint, xs in _SLIPS.items()}
        examples.update(_HEADER_SLIPS)
    else:
        examples = _SLIPS
    try:
        return e.match_examples(lambda text: grammar().parse(text, start=start), examples,
                                use_accepts=True)
    except Exception:  # a hint is a nicety; never let it hide the error itself
        return None


def _describe(tok: Token) -> str:
    if tok.type == "NAME":
        return f"name '{tok}'"
    if tok.type in ("INT", "NUMBER"):
        return f"number {tok}"
    if tok.type == "STRING":
        return f"string {tok}"
    return f"'{tok}'"


# Token groups that read better as one phrase when most of the group is expected.
_EXPRESSION_START = {"NAME", "NUMBER", "INT", "STRING", "LPAR", "LSQB", "LBRACE", "MINUS", "NOT"}
_OPERATOR = {"PLUS", "MINUS", "STAR", "SLASH", "CIRCUMFLEX", "DOT", "LSQB", "LPAR", "COMP_OP",
             "AND", "OR"}


def _expected(names) -> str | None:
    names = set(names)
    if "NAME" in names:  # a setting named `tasks` is a name to the reader
        names.discard("SETTING_TASKS")
    phrases = set()
    for group, phrase in ((_EXPRESSION_START, "an expression"), (_OPERATOR, "an operator")):
        if len(names & group) >= 4:
            phrases.add(phrase)
            names -= group
    shown = sorted({_readable(n) for n in names if n}) + sorted(phrases)
    if not shown:
        return None
    if len(shown) > 10:
        shown = shown[:10] + [f"... ({len(shown) - 10} more)"]
    return "expected " + ", ".join(shown)


def _readable(terminal: str) -> str:
    if terminal in _READABLE:
        return _READABLE[terminal]
    try:
        pattern = grammar().get_terminal(terminal).pattern
    except KeyError:
        return terminal.lower()
    if pattern.type == "str":
        return f"'{pattern.value}'"
    return terminal.lower()


def _span_at(source: str, pos: int) -> A.Span:
    pos = max(0, min(pos, len(source)))
    line = source.count("\n", 0, pos) + 1
    col = pos - (source.rfind("\n", 0, pos) + 1) + 1
    return A.Span(line, col, line, col + 1, pos, pos + 1)


# ---- parse tree → AST --------------------------------------------------------------


def _tok_span(tok: Token) -> A.Span:
    return A.Span(tok.line, tok.column, tok.end_line, tok.end_column, tok.start_pos, tok.end_pos)


def _meta_span(meta) -> A.Span:
    return A.Span(meta.line, meta.column, meta.end_line, meta.end_column,
                  meta.start_pos, meta.end_pos)


def _name(tok: Token) -> A.Name:
    return A.Name(str(tok), _tok_span(tok))


def _flatten(decls) -> tuple:
    out = []
    for d in decls:
        out.extend(d if isinstance(d, tuple) else (d,))
    return tuple(out)


def _binop(op: str):
    def method(self, meta, children):
        left, right = children
        return A.BinOp(op, left, right, _meta_span(meta))
    return method


@v_args(meta=True)
class ToAst(Transformer_NonRecursive):
    """Builds `metadsl.ast` nodes. Non-recursive, so long operator chains are safe."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    # module
    def start(self, meta, children):
        version, (kind, name, title), *decls = children
        return A.Module(kind, version, name, title, _flatten(decls), _meta_span(meta))

    def items(self, meta, children):
        return _flatten(children)

    def version(self, meta, children):
        (tok,) = children
        return A.Number(float(tok), str(tok), _tok_span(tok))

    def spec_decl(self, meta, children):
        kind, name, title = children
        return str(kind), _name(name), (self._string(title) if title is not None else None)

    def import_decl(self, meta, children):  # `import rl, latent`: one Import per module
        return tuple(A.Import(_name(m), (), _tok_span(m)) for m in children)

    def from_import(self, meta, children):
        module, *names = children
        return A.Import(_name(module), tuple(_name(n) for n in names), _meta_span(meta))

    def tasks_decl(self, meta, children):
        name, value = children
        return A.TasksDecl(_name(name), value, _meta_span(meta))

    def model_decl(self, meta, children):
        name, value = children
        return A.ModelDecl(_name(name), value, _meta_span(meta))

    def memory_of(self, meta, children):
        target, (scope, fresh) = children
        return A.MemoryDecl(target, None, scope, _meta_span(meta), fresh)

    def memory_new(self, meta, children):
        name, value, (scope, fresh) = children
        target = A.Ref((str(name),), _tok_span(name))
        return A.MemoryDecl(target, value, scope, _meta_span(meta), fresh)

    def reset_per(self, meta, children):
        (scope,) = children
        return _name(scope), False

    def reinit_per(self, meta, children):
        (scope,) = children
        return _name(scope), True

    def reset_never(self, meta, children):
        span = _meta_span(meta)
        return A.Name("never", A.Span(span.end_line, span.end_column - 5, span.end_line,
                                      span.end_column, span.end - 5, span.end)), False

    def meta_decl(self, meta, children):
        name, value, learner = children
        return A.MetaDecl(_name(name), value, _name(learner), _meta_span(meta))

    def func_kind(self, meta, children):
        return str(children[0])

    def func_expr(self, meta, children):
        kind, name, params, body = children
        return A.FuncDecl(kind, _name(name), params or (), (), body, _meta_span(meta))

    def func_block(self, meta, children):
        kind, name, params, *lets, body = children
        return A.FuncDecl(kind, _name(name), params or (), tuple(lets), body, _meta_span(meta))

    def params(self, meta, children):
        return tuple(children)

    def param(self, meta, children):
        name, type_, default = children
        return A.Param(_name(name), _name(type_) if type_ is not None else None, default,
                       _meta_span(meta))

    def let(self, meta, children):
        name, value = children
        return A.Let(_name(name), value, _meta_span(meta))

    def inner_decl(self, meta, children):
        name, var, source, body = children
        return A.LoopDecl("inner", _name(name), _name(var), source, None, body, _meta_span(meta))

    def outer_decl(self, meta, children):
        name, over, body = children
        return A.LoopDecl("outer", _name(name), None, None,
                          _name(over) if over is not None else None, body, _meta_span(meta))

    def evaluate_decl(self, meta, children):
        return A.SettingsBlock("evaluate", children[0], _meta_span(meta))

    def schedule_decl(self, meta, children):
        return A.SettingsBlock("schedule", children[0], _meta_span(meta))

    def block(self, meta, children):
        return tuple(children)

    # statements
    def setting(self, meta, children):
        name, value = children
        return A.Setting(_name(name), value, _meta_span(meta))

    def source(self, meta, children):
        return str(children[0])

    def collect(self, meta, children):
        count, unit, source, policy, output = children
        return A.Collect(count, _name(unit), source, policy, _name(output), _meta_span(meta))

    def store(self, meta, children):
        data, buffer, columns = children
        return A.Store(_name(data), _name(buffer), columns, _meta_span(meta))

    def adapt(self, meta, children):
        targets, rule, objective = children
        return A.Adapt(targets, rule, objective, _meta_span(meta))

    def update(self, meta, children):
        targets, rule, objective, through = children
        return A.Update(targets, rule, objective, through, _meta_span(meta))

    def targets(self, meta, children):
        return tuple(children)

    def minimize(self, meta, children):
        loss, data = children
        return A.Minimize(loss, _name(data), _meta_span(meta))

    def maximize(self, meta, children):
        return A.Maximize(children[0], _meta_span(meta))

    def toward(self, meta, children):
        return A.Toward(_name(children[0]), _meta_span(meta))

    def through(self, meta, children):
        return children[0]

    def ref(self, meta, children):
        return A.Ref(tuple(str(c) for c in children), _meta_span(meta))

    # expressions
    def number(self, meta, children):
        (tok,) = children
        return A.Number(float(tok), str(tok), _tok_span(tok))

    def string(self, meta, children):
        return self._string(children[0])

    def _string(self, tok: Token) -> A.String:
        body = str(tok)[1:-1]
        value = re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)
        return A.String(value, _tok_span(tok))

    def name(self, meta, children):
        return _name(children[0])

    def call(self, meta, children):
        func, args = children
        return A.Call(func, tuple(args or ()), _meta_span(meta))

    def args(self, meta, children):
        return tuple(c if isinstance(c, A.Arg) else A.Arg(None, c, c.span) for c in children)

    def kwarg(self, meta, children):
        name, value = children
        return A.Arg(str(name), value, _meta_span(meta))

    def attr(self, meta, children):
        obj, name = children
        return A.Attr(obj, str(name), _meta_span(meta), _tok_span(name))

    def index(self, meta, children):
        obj, idx = children
        return A.Index(obj, idx, _meta_span(meta))

    add, sub, mul, div = (_binop(o) for o in ("+", "-", "*", "/"))
    pow, or_, and_ = (_binop(o) for o in ("^", "or", "and"))

    def compare(self, meta, children):
        left, op, right = children
        return A.BinOp(str(op), left, right, _meta_span(meta))

    def neg(self, meta, children):
        return A.UnaryOp("-", children[0], _meta_span(meta))

    def not_(self, meta, children):
        return A.UnaryOp("not", children[0], _meta_span(meta))

    def list(self, meta, children):
        items = tuple(c for c in children if c is not None)
        return A.ListExpr(items, _meta_span(meta))

    def dict(self, meta, children):
        items = tuple(c for c in children if c is not None)
        return A.DictExpr(items, _meta_span(meta))

    def pair(self, meta, children):
        key, value = children
        return (_name(key), value)
