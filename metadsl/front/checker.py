"""Phase 2: AST → checked spec, or diagnostics.

Three passes over the module:
  1. declare: every top-level name, imports of stdlib modules, duplicates;
  2. type: every constructor call against the registry, every function body and loop
     statement, every expression's type, and which heads/models/meta-parameters each
     expression refers to (its `refs`);
  3. structure: what the loops can honour and reach: memory reset scopes, RL²-style
     inputs, meta-parameter reachability, differentiability of `through`, rule/target kinds,
     unused declarations and settings.
Errors are collected, not raised one by one: a run reports all it can.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import ast as A
from .. import registry as R
from . import stdlib
from ..diagnostics import CompileError, Diagnostic, did_you_mean, one_of

# ---- what the checker learns about each declaration ---------------------------------


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


def check_module(module: A.Module, source: str, file: str = "<input>") -> Checked:
    return Checker(module, source, file).run()


def _ref(kind: str, name: str) -> tuple[str, str]:
    return (kind, name)


class Checker:
    def __init__(self, module: A.Module, source: str, file: str):
        self.module, self.source, self.file = module, source, file
        self.diags: list[Diagnostic] = []
        self.tasks: dict[str, tuple[A.TasksDecl, R.Entry]] = {}
        self.models: dict[str, ModelInfo] = {}
        self.memories: dict[str, A.MemoryDecl] = {}
        self.metas: dict[str, A.MetaDecl] = {}
        self.funcs: dict[str, FuncInfo] = {}
        self.loops: dict[str, LoopInfo] = {}
        self.blocks: dict[str, A.SettingsBlock] = {}
        self.declared: dict[str, A.Span] = {}
        self.imported: dict[str, A.Name] = {}  # imported function -> the import's name node
        self.used: set[str] = set()  # top-level names referred to anywhere
        # (loop, statement, rule, targets, refs, through-loop) of every adapt/update
        self.pending: list[tuple] = []
        self.broken: set[str] = set()  # declarations with errors: skip checks that build on them

    # -- entry point --------------------------------------------------------------------

    def run(self) -> Checked:
        self.declare()
        self.type_declarations()
        self.type_loops()
        if self.module.kind == "spec":
            self.check_structure()
            self.check_unused()
        if self.diags:
            raise CompileError(sorted(self.diags, key=lambda d: (d.span.start, d.code)))
        return Checked(self.module, self.source, self.file, self.tasks, self.models,
                       self.memories, self.metas, self.funcs, self.loops, self.blocks)

    def error(self, code: str, message: str, span: A.Span, hint: str | None = None) -> None:
        self.diags.append(Diagnostic(code, message, span, hint, self.file))

    # -- pass 1: declarations -----------------------------------------------------------

    def declare(self) -> None:
        for decl in self.module.decls:
            if self.module.kind == "library" and not isinstance(decl, (A.Import, A.FuncDecl)):
                self.error("E0214", "a library holds only imports, `def` and `loss`", decl.span)
                continue
            if isinstance(decl, A.Import):
                self.declare_import(decl)
            elif isinstance(decl, A.SettingsBlock):
                if decl.kind in self.blocks:
                    first = self.blocks[decl.kind].span.line
                    self.error("E0211", f"a second `{decl.kind}` block (the first is on line "
                               f"{first})", decl.span, hint="merge the two blocks")
                else:
                    self.blocks[decl.kind] = decl
            else:
                name = decl.name if not isinstance(decl, A.MemoryDecl) else None
                if isinstance(decl, A.MemoryDecl):
                    if decl.value is None:  # memory of an existing thing: not a new name
                        self.memories[decl.target.text] = decl
                        continue
                    name = A.Name(decl.target.parts[0], decl.target.span)
                if not self.declare_name(name, decl):
                    continue
                if isinstance(decl, A.TasksDecl):
                    self.tasks[name.id] = (decl, None)
                elif isinstance(decl, A.ModelDecl):
                    self.models[name.id] = ModelInfo(decl, None)
                elif isinstance(decl, A.MemoryDecl):
                    self.memories[name.id] = decl
                elif isinstance(decl, A.MetaDecl):
                    self.metas[name.id] = decl
                elif isinstance(decl, A.FuncDecl):
                    self.funcs[name.id] = FuncInfo(decl, "")
                elif isinstance(decl, A.LoopDecl):
                    self.loops[name.id] = LoopInfo(decl)

    def declare_name(self, name: A.Name, decl=None) -> bool:
        if name.id in self.declared:
            self.error("E0210", f"'{name.id}' is already declared on line "
                       f"{self.declared[name.id].line}", name.span, hint="rename one of them")
            return False
        latent_z = name.id == "z" and isinstance(decl, A.MemoryDecl)  # the field z is its value
        if name.id in R.REGISTRY or (name.id in R.TRAJECTORY_FIELDS and not latent_z):
            self.error("E0210", f"'{name.id}' is a built-in name", name.span,
                       hint="choose another name")
        self.declared[name.id] = name.span
        return True

    def declare_import(self, imp: A.Import) -> None:
        lib = stdlib.load(imp.module.id) if imp.module.id in stdlib.module_names() else None
        if lib is None:
            self.error("E0216", f"no standard-library module '{imp.module.id}'", imp.module.span,
                       hint=did_you_mean(imp.module.id, stdlib.module_names())
                       or one_of(stdlib.module_names()))
            return
        wanted = imp.names or tuple(A.Name(n, imp.module.span) for n in lib.funcs)
        for n in wanted:
            if n.id not in lib.funcs:
                self.error("E0216", f"module '{imp.module.id}' has no '{n.id}'", n.span,
                           hint=did_you_mean(n.id, lib.funcs) or one_of(lib.funcs))
                continue
            if n.id in self.funcs and self.funcs[n.id].module == imp.module.id:
                continue
            if imp.names and not self.declare_name(n):
                continue
            if not imp.names:
                self.declared.setdefault(n.id, imp.span)
            self.funcs[n.id] = lib.funcs[n.id]
            self.imported[n.id] = n

    # -- pass 2: types ------------------------------------------------------------------

    def type_declarations(self) -> None:
        for name, (decl, _) in list(self.tasks.items()):
            entry = self.expect_entry(decl.value, "tasks", "a task distribution")
            self.tasks[name] = (decl, entry)
        for name, info in self.models.items():
            before = len(self.diags)
            self.type_model(info)
            if len(self.diags) > before:
                self.broken.add(name)
        for key, decl in self.memories.items():
            if decl.value is not None:
                self.expect_entry(decl.value, "memory", "a memory")
            if decl.scope.id not in R.MEMORY_SCOPES:
                self.error("E0208", f"unknown reset scope '{decl.scope.id}'", decl.scope.span,
                           hint=did_you_mean(decl.scope.id, R.MEMORY_SCOPES)
                           or one_of(R.MEMORY_SCOPES))
        for name, decl in self.metas.items():
            entry = self.expect_entry(decl.value, "meta", "a meta-parameter kind")
            if entry is not None:
                self.check_meta_init(decl, entry)
        for name, info in self.funcs.items():
            if info.module == "":
                before = len(self.diags)
                self.type_function(info)
                if len(self.diags) > before:
                    self.broken.add(name)
        for name, info in self.funcs.items():
            if info.module == "":  # imported functions arrive with their references closed
                info.refs = self.function_refs(name, set())

    def expect_entry(self, expr: A.Expr, kind: str, what: str) -> R.Entry | None:
        """`expr` must call a registry entry of `kind`; checks its arguments."""
        if not isinstance(expr, A.Call) or expr.func_name is None:
            self.error("E0209", f"expected {what} here, such as `{self.example(kind)}`",
                       expr.span)
            return None
        name = expr.func_name
        entry = R.REGISTRY.get(name)
        if entry is None or entry.kind != kind:
            candidates = [e.name for e in R.REGISTRY.values() if e.kind == kind]
            if entry is None and name not in self.declared:
                noun = what.split(" ", 1)[1] if what.startswith(("a ", "an ")) else what
                self.error("E0201", f"unknown {noun} '{name}'", expr.func.span,
                           hint=did_you_mean(name, candidates) or one_of(candidates))
            else:
                got = entry.kind if entry else self.kind_of(name)
                self.error("E0209", f"'{name}' is {self.article(got)}, not {what}",
                           expr.func.span, hint=one_of(candidates))
            return None
        self.check_args(expr, entry, scope=None)
        return entry

    def example(self, kind: str) -> str:
        return {"tasks": "bernoulli_bandit(arms = 5)", "memory": "buffer(capacity = 10000)",
                "meta": "bounded(init = 0.9, low = 0, high = 1)", "rule": "adam(lr = 3e-4)",
                "model": "policy(net = mlp(), heads = {pi: categorical})",
                "core": "gru(hidden = 256)"}.get(kind, kind)

    @staticmethod
    def article(kind: str) -> str:
        word = {"op": "an expression op", "tasks": "a task distribution", "core": "a network core",
                "meta": "a meta-parameter", "func": "a function", "loop": "a loop",
                "fitness": "a fitness function", "baseline": "a baseline",
                "policy": "a behaviour policy", "data": "data"}.get(kind)
        return word or f"a {kind}"

    def kind_of(self, name: str) -> str:
        for kind, table in (("tasks", self.tasks), ("model", self.models), ("memory", self.memories),
                            ("meta", self.metas), ("func", self.funcs), ("loop", self.loops)):
            if name in table:
                return kind
        return "name"

    def type_model(self, info: ModelInfo) -> None:
        entry = self.expect_entry(info.decl.value, "model", "a model")
        info.entry = entry
        if entry is None:
            return
        args = bind_args(info.decl.value, entry)
        for key in ("core", "net"):
            if key in args and isinstance(args[key], A.Call):
                info.core = R.REGISTRY.get(args[key].func_name or "")
        heads = args.get("heads")
        if isinstance(heads, A.DictExpr):
            for key, value in heads.items:
                kind = value.id if isinstance(value, A.Name) else ""
                info.heads[key.id] = "dist" if kind in R.DIST_HEADS else "tensor"
        elif heads is None and entry.param("heads") is not None:
            default = entry.param("heads").default
            if isinstance(default, dict):
                info.heads.update({k: "dist" if v in R.DIST_HEADS else "tensor"
                                   for k, v in default.items()})
        if "discriminator" in entry.traits:
            info.heads["q_z"] = "dist"
        inputs = args.get("inputs")
        if isinstance(inputs, A.ListExpr):
            info.inputs = [i.id for i in inputs.items if isinstance(i, A.Name)]
            info.inputs_span = inputs.span
        else:
            default = entry.param("inputs").default if entry.param("inputs") else []
            info.inputs = list(default) if isinstance(default, list) else []
            info.inputs_span = info.decl.value.span

    def check_meta_init(self, decl: A.MetaDecl, entry: R.Entry) -> None:
        args = bind_args(decl.value, entry)
        init = self.const(args.get("init")) if "init" in args else None
        if entry.name == "bounded" and init is not None:
            low = self.const(args.get("low")) if "low" in args else entry.param("low").default
            high = self.const(args.get("high")) if "high" in args else entry.param("high").default
            if low is not None and high is not None:
                if not low < high:
                    self.error("E0207", f"empty bounds: low = {low:g} is not below high = "
                               f"{high:g}", decl.value.span)
                elif not low < init < high:
                    self.error("E0207", f"initial value {init:g} of '{decl.name.id}' is outside "
                               f"its bounds ({low:g}, {high:g})", args["init"].span,
                               hint="a bounded meta-parameter starts strictly inside its bounds")

    # -- calls ----------------------------------------------------------------------

    def check_args(self, call: A.Call, entry: R.Entry, scope: "Scope | None") -> None:
        params = list(entry.params)
        seen: dict[str, A.Arg] = {}
        positional = [a for a in call.args if a.name is None]
        keyword_seen = too_many = False
        for i, arg in enumerate(call.args):
            if arg.name is None:
                if keyword_seen:
                    self.error("E0205", "a positional argument after keyword arguments",
                               arg.span, hint="name it: `NAME = value`")
                    continue
                index = len([a for a in call.args[:i] if a.name is None])
                if index >= len(params):
                    if entry.variadic and params:
                        self.check_value(params[-1], arg.value, scope, entry)
                        continue
                    if too_many:
                        continue
                    too_many = True
                    self.error("E0205", f"'{entry.name}' takes {len(params)} positional "
                               f"argument{'s' if len(params) != 1 else ''}, given "
                               f"{len(positional)}", arg.span, hint=self.signature(entry))
                    continue
                param = params[index]
            else:
                keyword_seen = True
                param = entry.param(arg.name)
                if param is None:
                    names = [p.name for p in params]
                    self.error("E0202", f"'{entry.name}' has no argument '{arg.name}'", arg.span,
                               hint=did_you_mean(arg.name, names) or
                               (one_of(names) if names else f"'{entry.name}' takes no arguments"))
                    continue
            if param.name in seen:
                self.error("E0203", f"argument '{param.name}' of '{entry.name}' is given twice",
                           arg.span, hint="remove one of them")
                continue
            seen[param.name] = arg
            self.check_value(param, arg.value, scope, entry)
        for p in params:
            if p.required and p.name not in seen and not (entry.variadic and p is params[-1]
                                                           and positional):
                self.error("E0204", f"'{entry.name}' needs the argument '{p.name}'"
                           f"{' (' + p.doc + ')' if p.doc else ''}", call.span,
                           hint=self.signature(entry))

    @staticmethod
    def signature(entry: R.Entry) -> str:
        parts = []
        for p in entry.params:
            default = "" if p.required else f" = {_show(p.default)}"
            parts.append(f"{p.name}: {p.type}{default}")
        return f"{entry.name}({', '.join(parts)})"

    def check_value(self, p: R.P, expr: A.Expr, scope: "Scope | None", entry: R.Entry) -> None:
        t = p.type
        where = f"'{p.name}' of '{entry.name}'"
        if t == "symbol":
            if not isinstance(expr, A.Name):
                self.error("E0206", f"{where} is one of {', '.join(p.choices or ())}",
                           expr.span)
            elif p.choices and expr.id not in p.choices:
                self.error("E0208", f"'{expr.id}' is not a valid {where}", expr.span,
                           hint=did_you_mean(expr.id, p.choices) or one_of(p.choices))
        elif t in ("int", "num"):
            self.check_number(p, expr, scope, where)
        elif t == "bool":
            if not (isinstance(expr, A.Name) and expr.id in ("true", "false")):
                self.error("E0206", f"{where} is true or false", expr.span)
        elif t == "str":
            if not isinstance(expr, A.String):
                self.error("E0206", f"{where} is a string in double quotes", expr.span)
        elif t == "list":
            if not isinstance(expr, A.ListExpr):
                self.error("E0206", f"{where} is a list: `[...]`", expr.span)
            else:
                for item in expr.items:
                    if p.choices:
                        self.check_value(R.P(p.name, "symbol", choices=p.choices), item, scope,
                                         entry)
                    elif p.low is not None or p.high is not None:  # numbers within bounds
                        self.check_number(R.P(p.name, "num", low=p.low, high=p.high,
                                              low_open=p.low_open, high_open=p.high_open,
                                              doc=p.doc), item, scope, f"an item of {where}")
                    elif self.const(item) is None and not isinstance(item, (A.ListExpr,)):
                        self.error("E0206", f"items of {where} are numbers", item.span)
        elif t == "dict":
            if not isinstance(expr, A.DictExpr):
                self.error("E0206", f"{where} is a dictionary: `{{key: value, ...}}`", expr.span)
            else:
                keys: set[str] = set()
                for key, value in expr.items:
                    if key.id in keys:
                        self.error("E0203", f"key '{key.id}' is given twice in {where}", key.span)
                    keys.add(key.id)
                    if p.choices:
                        self.check_value(R.P(p.name, "symbol", choices=p.choices), value, scope,
                                         entry)
        elif t in ("core", "rule"):
            self.expect_entry(expr, t, "a network core" if t == "core" else "an update rule")
        elif t in ("model", "meta", "tasks", "loop", "memory") and scope is None:
            self.expect_declared(expr, t, where)
        else:  # an expression argument of an op, typed in its scope
            got = scope.infer(expr) if scope is not None else "unknown"
            if not compatible(t, got):
                self.error("E0206", f"{where} expects {_type_word(t)}, got {_type_word(got)}",
                           expr.span)

    def check_number(self, p: R.P, expr: A.Expr, scope: "Scope | None", where: str) -> None:
        value = self.const(expr)
        if value is None:
            if isinstance(expr, A.Name) and expr.id in self.metas and p.type == "num":
                self.used.add(expr.id)
                return  # a learned quantity, e.g. sgd(lr = alpha)
            if scope is not None:  # inside a function: a parameter, typed by its annotation
                got = scope.infer(expr)
                if got == "unknown" or (p.type == "int" and got == "int") or \
                        (p.type == "num" and compatible("tensor", got)):
                    return
            self.error("E0206", f"{where} is {'an integer' if p.type == 'int' else 'a number'}",
                       expr.span)
            return
        if p.type == "int" and not float(value).is_integer():
            self.error("E0206", f"{where} is an integer, got {value:g}", expr.span)
            return
        if not p.in_bounds(value):
            self.error("E0207", f"{where} = {value:g} is out of bounds {p.bounds_text()}",
                       expr.span, hint=p.doc or None)

    def expect_declared(self, expr: A.Expr, kind: str, where: str) -> str | None:
        table = {"model": self.models, "meta": self.metas, "tasks": self.tasks,
                 "loop": self.loops, "memory": self.memories}[kind]
        if isinstance(expr, A.Name) and expr.id in table:
            self.used.add(expr.id)
            return expr.id
        if isinstance(expr, A.Name) and expr.id not in self.declared:
            self.error("E0201", f"unknown {kind} '{expr.id}'", expr.span,
                       hint=did_you_mean(expr.id, table) or (one_of(table) if table else None))
        else:
            self.error("E0209", f"{where} is {self.article(kind)} declared in this spec",
                       expr.span, hint=one_of(table) if table else None)
        return None

    @staticmethod
    def const(expr: A.Expr | None) -> float | None:
        """The value of a constant numeric expression, or None."""
        if isinstance(expr, A.Number):
            return expr.value
        if isinstance(expr, A.UnaryOp) and expr.op == "-":
            v = Checker.const(expr.operand)
            return -v if v is not None else None
        if isinstance(expr, A.BinOp) and expr.op in "+-*/^":
            a, b = Checker.const(expr.left), Checker.const(expr.right)
            if a is None or b is None:
                return None
            try:
                return {"+": a + b, "-": a - b, "*": a * b,
                        "/": a / b if b else None, "^": float(a) ** b}[expr.op]
            except (OverflowError, ZeroDivisionError, TypeError):
                return None
        return None

    # -- functions --------------------------------------------------------------------

    def type_function(self, info: FuncInfo) -> None:
        decl = info.decl
        scope = Scope(self, info)
        seen: set[str] = set()
        for p in decl.params:
            if p.name.id in seen:
                self.error("E0210", f"parameter '{p.name.id}' is declared twice", p.name.span)
            seen.add(p.name.id)
            if p.type is not None and p.type.id not in ("num", "int", "tensor", "dist", "model",
                                                        "bool"):
                self.error("E0201", f"unknown type '{p.type.id}'", p.type.span,
                           hint=did_you_mean(p.type.id, ("num", "int", "tensor", "dist", "model"))
                           or "types are num, int, tensor, dist, model, bool")
            ptype = p.type.id if p.type is not None else None
            if p.default is not None:
                got = scope.infer(p.default)
                ptype = ptype or ("tensor" if got in ("num", "int") else got)
            scope.locals[p.name.id] = ptype or "tensor"
        for let in decl.lets:
            scope.locals[let.name.id] = scope.infer(let.value)
        result = scope.infer(decl.body)
        if result not in ("tensor", "num", "int", "unknown", "bool"):
            self.error("E0206", f"'{decl.name.id}' must give a number or tensor, not "
                       f"{_type_word(result)}", decl.body.span)
        info.refs = scope.refs
        unused = [p for p in decl.params if ("local", p.name.id) not in scope.refs]
        unused += [l for l in decl.lets if ("local", l.name.id) not in scope.refs]
        for item in unused:
            self.error("E0213", f"'{item.name.id}' is never used in '{decl.name.id}'",
                       item.name.span, hint="remove it")

    def expand_calls(self, refs: set) -> set:
        """`refs` with the references of every function called, transitively."""
        out = set(refs)
        for kind, name in refs:
            if kind == "call" and name in self.funcs:
                out |= self.funcs[name].refs
        return out

    def function_refs(self, name: str, visiting: set[str]) -> set:
        info = self.funcs[name]
        if name in visiting:
            return set()
        refs = set(info.refs)
        for kind, callee in list(info.refs):
            if kind == "call" and callee in self.funcs:
                refs |= self.function_refs(callee, visiting | {name})
        return refs

    # -- loops --------------------------------------------------------------------------

    def type_loops(self) -> None:
        for name, loop in self.loops.items():
            decl = loop.decl
            if decl.kind == "inner" and isinstance(decl.task_source, A.Name):
                self.expect_declared(decl.task_source, "tasks", f"the task source of '{name}'")
            elif decl.kind == "inner":
                self.error("E0209", "an inner loop samples a declared task distribution",
                           decl.task_source.span, hint=one_of(self.tasks) if self.tasks else
                           "declare one with `tasks NAME = ...`")
            elif decl.over is not None:
                if decl.over.id not in self.loops:
                    self.error("E0201", f"unknown loop '{decl.over.id}'", decl.over.span,
                               hint=did_you_mean(decl.over.id, self.loops))
                elif self.loops[decl.over.id].decl.kind != "inner":
                    self.error("E0209", f"'{decl.over.id}' is an outer loop; `over` names an "
                               "inner loop", decl.over.span)
                else:
                    self.used.add(decl.over.id)
        # adapted names and collected data first: statements may refer to θ′ and τ of the
        # inner loop they run, and a use before its collect is reported as such
        for loop in self.loops.values():
            for stmt in loop.decl.body:
                if isinstance(stmt, A.Adapt):
                    loop.adapted |= {t.parts[0] for t in stmt.targets}
                elif isinstance(stmt, A.Collect) and stmt.output.id not in loop.data:
                    loop.data[stmt.output.id] = stmt
        for name, loop in self.loops.items():
            self.type_loop_body(loop, R.SETTINGS[loop.decl.kind], loop.decl.body)
        for kind, block in self.blocks.items():
            self.type_settings_block(block)

    def visible_data(self, loop: LoopInfo) -> dict[str, tuple[str, A.Collect]]:
        """Data a loop's statements may use: its own and that of the inner loop it runs."""
        out = {}
        over = loop.decl.over
        if over is not None and over.id in self.loops:
            out.update({n: (over.id, c) for n, c in self.loops[over.id].data.items()})
        out.update({n: (loop.decl.name.id, c) for n, c in loop.data.items()})
        return out

    def adapted_in_scope(self, loop: LoopInfo) -> set[str]:
        names = set(loop.adapted)
        over = loop.decl.over
        if over is not None and over.id in self.loops:
            names |= self.loops[over.id].adapted
        return names

    def type_loop_body(self, loop: LoopInfo, allowed: tuple[R.P, ...], body) -> None:
        name = loop.decl.name.id
        for stmt in body:
            if isinstance(stmt, A.Setting):
                self.type_setting(stmt, allowed, loop.settings, f"loop '{name}'")
            elif isinstance(stmt, A.Collect):
                self.type_collect(loop, stmt)
            elif isinstance(stmt, A.Store):
                self.type_store(loop, stmt)
            elif isinstance(stmt, A.Adapt):
                if loop.decl.kind != "inner":
                    self.error("E0214", "`adapt` belongs in an inner loop; an outer loop "
                               "`update`s", stmt.span)
                self.type_update(loop, stmt)
            elif isinstance(stmt, A.Update):
                if stmt.through is not None and loop.decl.kind != "outer":
                    self.error("E0214", "`through` belongs to an outer loop's update",
                               stmt.through.span)
                self.type_update(loop, stmt)

    def type_setting(self, stmt: A.Setting, allowed, seen: dict, where: str) -> None:
        param = next((p for p in allowed if p.name == stmt.name.id), None)
        if param is None:
            names = [p.name for p in allowed]
            self.error("E0212", f"{where} has no setting '{stmt.name.id}'", stmt.name.span,
                       hint=did_you_mean(stmt.name.id, names) or one_of(names))
            return
        if stmt.name.id in seen:
            self.error("E0215", f"'{stmt.name.id}' is set twice (first on line "
                       f"{seen[stmt.name.id].span.line})", stmt.span)
            return
        seen[stmt.name.id] = stmt
        if param.type != "any" and stmt.name.id not in ("against", "tasks"):
            self.check_value(param, stmt.value, None, R.Entry(where, "settings", (), "none", ""))

    def type_settings_block(self, block: A.SettingsBlock) -> None:
        seen: dict[str, A.Setting] = {}
        for stmt in block.body:
            if not isinstance(stmt, A.Setting):
                self.error("E0214", f"only `name = value` settings belong in `{block.kind}`",
                           stmt.span)
                continue
            self.type_setting(stmt, R.SETTINGS[block.kind], seen, block.kind)
        if block.kind == "evaluate":
            if "tasks" in seen:
                self.type_eval_tasks(seen["tasks"].value)
            if "against" in seen:
                self.type_baselines(seen["against"].value, seen.get("tasks"))
        setattr(self, f"{block.kind}_settings", seen)

    def type_eval_tasks(self, expr: A.Expr) -> None:
        items = expr.items if isinstance(expr, A.ListExpr) else (expr,)
        for item in items:
            if isinstance(item, A.Name):
                self.expect_declared(item, "tasks", "evaluation tasks")
            elif isinstance(item, A.Call) and item.func_name == "held_out":
                self.check_args(item, R.REGISTRY["held_out"], None)
            else:
                self.expect_entry(item, "tasks", "a task distribution")

    def eval_task_traits(self, expr: A.Expr | None) -> set[str]:
        traits: set[str] = set()
        if expr is None:
            for decl, entry in self.tasks.values():
                traits |= set(entry.traits) if entry else set()
            return traits
        items = expr.items if isinstance(expr, A.ListExpr) else (expr,)
        for item in items:
            if isinstance(item, A.Call) and item.func_name == "held_out" and item.args:
                item = item.args[0].value
            name = item.func_name if isinstance(item, A.Call) else \
                item.id if isinstance(item, A.Name) else None
            if name in self.tasks and self.tasks[name][1]:
                traits |= self.tasks[name][1].traits
            elif name in R.REGISTRY:
                traits |= R.REGISTRY[name].traits
        return traits

    def type_baselines(self, expr: A.Expr, tasks_setting: A.Setting | None) -> None:
        if not isinstance(expr, A.ListExpr):
            self.error("E0206", "`against` is a list of baselines", expr.span)
            return
        traits = self.eval_task_traits(tasks_setting.value if tasks_setting else None)
        baselines = [e.name for e in R.REGISTRY.values() if e.kind == "baseline"]
        for item in expr.items:
            call = item if isinstance(item, A.Call) else None
            name = call.func_name if call else item.id if isinstance(item, A.Name) else None
            entry = R.REGISTRY.get(name or "")
            if entry is None or entry.kind != "baseline":
                self.error("E0201", f"unknown baseline '{name or '?'}'", item.span,
                           hint=did_you_mean(name or "", baselines) or one_of(baselines))
                continue
            if call is not None:
                self.check_args(call, entry, None)
            if traits and not (traits & entry.traits):
                self.error("E0209", f"baseline '{name}' does not apply to these tasks "
                           f"({', '.join(sorted(traits & {'bandit', 'mdp', 'supervised'}))})",
                           item.span, hint=f"'{name}' is for {', '.join(sorted(entry.traits))}")

    def type_collect(self, loop: LoopInfo, stmt: A.Collect) -> None:
        count = self.const(stmt.count)
        if count is None or not float(count).is_integer():
            self.error("E0206", "a collect count is an integer", stmt.count.span)
        elif count < 1:
            self.error("E0207", f"collect count {count:g} is out of bounds [1, inf)",
                       stmt.count.span)
        if stmt.unit.id not in R.COLLECT_UNITS:
            self.error("E0208", f"unknown unit '{stmt.unit.id}'", stmt.unit.span,
                       hint=did_you_mean(stmt.unit.id, R.COLLECT_UNITS) or one_of(R.COLLECT_UNITS))
        else:
            self.check_unit_fits_tasks(loop, stmt)
        if stmt.source == "with":
            model = self.type_policy(loop, stmt.policy)
            if model is not None:
                loop.policies[stmt.output.id] = model
        else:
            mem = self.expect_declared(stmt.policy, "memory", "a `collect ... from` source")
            if mem is not None:
                decl = self.memories[mem]
                entry = R.REGISTRY.get(decl.value.func_name) if isinstance(decl.value, A.Call) \
                    else None
                if entry is None or "buffer" not in entry.traits:
                    self.error("E0209", f"'{mem}' is not a buffer to sample from",
                               stmt.policy.span, hint="declare `memory NAME = buffer(...)`")
            loop.refs.add(_ref("memory", mem or ""))
        first = loop.data[stmt.output.id]
        if first is not stmt:
            self.error("E0210", f"'{stmt.output.id}' is already collected on line "
                       f"{first.span.line} of this loop", stmt.output.span)

    def check_unit_fits_tasks(self, loop: LoopInfo, stmt: A.Collect) -> None:
        source = self.loop_task_entry(loop)
        if source is None:
            return
        supervised = "supervised" in source.traits
        if supervised != (stmt.unit.id == "samples") and stmt.source == "with":
            want = "samples" if supervised else "episodes or steps"
            self.error("E0209", f"tasks '{source.name}' give {want}, not {stmt.unit.id}",
                       stmt.unit.span, hint=f"collect {want}")

    def loop_task_entry(self, loop: LoopInfo) -> R.Entry | None:
        decl = loop.decl
        if decl.kind == "outer" and decl.over is not None and decl.over.id in self.loops:
            decl = self.loops[decl.over.id].decl
        if isinstance(decl.task_source, A.Name) and decl.task_source.id in self.tasks:
            return self.tasks[decl.task_source.id][1]
        return None

    def type_policy(self, loop: LoopInfo, expr: A.Expr) -> str | None:
        if isinstance(expr, A.Name):
            base = expr.id.rstrip("'")
            if base in self.models:
                self.used.add(base)
                if expr.id != base and base not in self.adapted_in_scope(loop):
                    self.error("E0408", f"'{expr.id}' is not adapted in this loop or the inner "
                               f"loop it runs", expr.span,
                               hint=f"adapt it: `adapt {base} by sgd(lr = 0.1) on ...`")
                loop.refs.add(_ref("model", base))
                return base
        if isinstance(expr, A.Call) and expr.func_name in R.REGISTRY \
                and R.REGISTRY[expr.func_name].kind == "policy":
            self.check_args(expr, R.REGISTRY[expr.func_name], Scope(self, None, loop))
            values = expr.args[0].value if expr.args else None
            if isinstance(values, A.Name):
                self.used.add(values.id)
                kind = "memory" if values.id in self.memories else "model"
                loop.refs.add(_ref(kind, values.id))
                return values.id if kind == "model" else None
            return None
        self.error("E0209", "collect `with` a model (or an adapted model, `pi'`), or a "
                   "behaviour policy such as q_greedy(...)", expr.span,
                   hint=one_of(self.models) if self.models else None)
        return None

    def type_store(self, loop: LoopInfo, stmt: A.Store) -> None:
        if stmt.data.id not in self.visible_data(loop):
            self.unknown_data(loop, stmt.data)
        mem = self.expect_declared(stmt.buffer, "memory", "a `store ... in` target")
        if mem is not None:
            loop.refs.add(_ref("memory", mem))

    def unknown_data(self, loop: LoopInfo, name: A.Name) -> None:
        elsewhere = [l for l, info in self.loops.items() if name.id in info.data]
        if elsewhere:
            self.error("E0408", f"'{name.id}' is collected in loop '{elsewhere[0]}', which this "
                       "loop does not run", name.span,
                       hint=f"collect it here, or run '{elsewhere[0]}' with `over`")
        else:
            visible = self.visible_data(loop)
            self.error("E0201", f"unknown data '{name.id}'", name.span,
                       hint=did_you_mean(name.id, visible) or
                       ("collect it first: `collect ... as NAME`" if not visible
                        else one_of(visible)))

    def type_update(self, loop: LoopInfo, stmt) -> None:
        rule = self.expect_entry(stmt.rule, "rule", "an update rule")
        if rule is not None:
            for arg in stmt.rule.args:  # e.g. sgd(lr = alpha): the rule reads meta-parameters
                if isinstance(arg.value, A.Name) and arg.value.id in self.metas:
                    loop.refs.add(_ref("meta", arg.value.id))
        targets = [self.type_target(loop, t) for t in stmt.targets]
        scope = Scope(self, None, loop)
        before = len(self.diags)
        obj = stmt.objective
        if isinstance(obj, A.Minimize):
            visible = self.visible_data(loop)
            if obj.data.id not in visible:
                self.unknown_data(loop, obj.data)
            elif obj.data.id in loop.data and \
                    loop.data[obj.data.id].span.start > stmt.span.start:
                self.error("E0408", f"'{obj.data.id}' is used before it is collected",
                           obj.data.span, hint="move the collect statement above this one")
            got = scope.infer(obj.loss)
            if not compatible("tensor", got):
                self.error("E0206", f"a loss is a number or tensor, not {_type_word(got)}",
                           obj.loss.span)
        elif isinstance(obj, A.Maximize):
            got = scope.infer(obj.fitness)
            if not compatible("tensor", got):
                self.error("E0206", f"a fitness is a number, not {_type_word(got)}",
                           obj.fitness.span)
        else:
            base = obj.target.id.rstrip("'")
            if obj.target.id == base or base not in self.adapted_in_scope(loop):
                self.error("E0408", f"`toward` names adapted parameters (`{base}'`) from the inner "
                           "loop this one runs", obj.target.span)
            scope.refs.add(_ref("model", base))
        through_loop = self.type_through(loop, stmt) if isinstance(stmt, A.Update) else None
        stmt_refs = self.expand_calls(scope.refs)
        loop.refs |= stmt_refs
        calls_broken = any(k == "call" and n in self.broken for k, n in stmt_refs)
        if len(self.diags) > before or calls_broken:  # a broken objective reaches nothing
            stmt_refs = None
        self.pending.append((loop, stmt, rule, targets, stmt_refs, through_loop))

    def type_target(self, loop: LoopInfo, ref: A.Ref) -> tuple[str, str] | None:
        head = ref.parts[0]
        if head.endswith("'"):
            self.error("E0209", f"update the parameters themselves, not the adapted copy "
                       f"'{head}'", ref.span)
            return None
        for kind, table in (("model", self.models), ("meta", self.metas),
                            ("memory", self.memories), ("tasks", self.tasks)):
            if head in table:
                self.used.add(head)
                if len(ref.parts) > 1 and kind == "model":
                    info = self.models[head]
                    part = ref.parts[1]
                    if part not in info.heads and part not in ("core", "net"):
                        self.error("E0201", f"model '{head}' has no part '{part}'", ref.span,
                                   hint=did_you_mean(part, list(info.heads) + ["core"]))
                return (kind, head)
        candidates = list(self.models) + list(self.metas) + list(self.memories)
        if head in self.loops or head in self.funcs:
            self.error("E0209", f"'{head}' is {self.article(self.kind_of(head))}; an update "
                       "changes models, meta-parameters, memories or task populations", ref.span)
        else:
            self.error("E0201", f"unknown name '{head}'", ref.span,
                       hint=did_you_mean(head, candidates) or (one_of(candidates)
                                                               if candidates else None))
        return None

    def type_through(self, loop: LoopInfo, stmt: A.Update) -> str | None:
        expr = stmt.through
        if expr is None:
            return None
        name_expr = expr.func if isinstance(expr, A.Call) else expr
        if not isinstance(name_expr, A.Name):
            self.error("E0407", "`through` names the inner loop: `through adapt` or "
                       "`through adapt(order = 1)`", expr.span)
            return None
        over = loop.decl.over
        if over is None or name_expr.id != over.id:
            self.error("E0407", f"'{name_expr.id}' is not the inner loop that '"
                       f"{loop.decl.name.id}' runs", name_expr.span,
                       hint=f"this loop runs '{over.id}'" if over else
                       "run an inner loop first: `outer NAME over INNER { ... }`")
            return None
        if isinstance(expr, A.Call):
            self.check_args(expr, R.THROUGH, None)
        return name_expr.id

    # -- pass 3: structure --------------------------------------------------------------

    def check_structure(self) -> None:
        outers = [l for l in self.loops.values() if l.decl.kind == "outer"]
        if not outers:
            self.error("E0410", "the spec has no outer loop, so nothing would run",
                       self.module.name.span, hint="add `outer NAME over INNER { ... }`")
        run = {l.decl.over.id for l in outers if l.decl.over is not None}
        for name, loop in self.loops.items():
            if loop.decl.kind == "inner" and name not in run:
                self.error("E0409", f"inner loop '{name}' is run by no outer loop",
                           loop.decl.name.span, hint=f"`outer NAME over {name} {{ ... }}`")
        for loop, stmt, rule, targets, refs, through in self.pending:
            if refs is not None:
                self.check_rule_targets(loop, stmt, rule, [t for t in targets if t], refs)
                if not self.broken:
                    self.check_heads_exist(loop, stmt, refs)
            if through is not None:
                self.check_through(stmt, through)
        self.check_metas()
        self.check_memories()

    def influence(self, stmt, refs: set, through: str | None) -> set:
        """Everything an update's objective depends on, through loops and latents."""
        out = set(refs)
        if isinstance(stmt, A.Update) and isinstance(stmt.objective, A.Maximize):
            for kind, name in refs:
                if kind == "loop" and name in self.loops:
                    out |= self.loops[name].refs
        if through is not None:
            out |= self.loops[through].refs
        for kind, name in list(out):  # a model fed a latent depends on the latent's parameters
            if kind in ("model", "head"):
                owner = self.models.get(name) if kind == "model" else None
                if owner is None and kind == "head":
                    owner = next((m for m in self.models.values() if name in m.heads), None)
                if owner and "z" in owner.inputs:
                    for mem in self.memories.values():
                        if isinstance(mem.value, A.Call):
                            for arg in mem.value.args:
                                if isinstance(arg.value, A.Name) and arg.value.id in self.metas:
                                    out.add(_ref("meta", arg.value.id))
        return out

    def check_rule_targets(self, loop, stmt, rule: R.Entry | None, targets, refs) -> None:
        if rule is None:
            return
        obj = stmt.objective
        traits = rule.traits
        kinds = {k for k, _ in targets}
        rule_name = rule.name
        if "evolutionary" in traits:
            for kind, name in targets:
                if kind not in ("model", "meta"):
                    self.error("E0405", f"'{rule_name}' evolves a parameter vector; '{name}' is "
                               f"{self.article(kind)}", stmt.targets[0].span,
                               hint="evolve a model's parameters or a meta-parameter")
            if not isinstance(obj, A.Maximize):
                self.error("E0406", f"'{rule_name}' maximises a fitness: `maximizing "
                           "final_return(LOOP)`", obj.span)
                return
            reach = self.influence(stmt, refs, None)
            for (kind, name), ref in zip(targets, stmt.targets):
                if kind == "model" and _ref("model", name) not in reach and not any(
                        _ref("head", h) in reach for h in self.models[name].heads):
                    self.error("E0403", f"the fitness does not depend on '{name}'",
                               obj.span, hint=f"evaluate a loop or policy that uses '{name}'")
            return
        if "population" in traits:
            if not ({"tasks", "model"} <= kinds):
                self.error("E0406", f"'{rule_name}' evolves (environment, agent) pairs: update "
                           "a task population and a model together", stmt.span,
                           hint="`update terrain, walker by poet(...) maximizing ...`")
            if not isinstance(obj, A.Maximize):
                self.error("E0406", f"'{rule_name}' maximises a fitness", obj.span)
            return
        if "interpolate" in traits:
            if not isinstance(obj, A.Toward):
                self.error("E0406", f"'{rule_name}' moves parameters toward adapted ones: "
                           "`toward pi'`", obj.span)
            for kind, name in targets:
                if kind != "model":
                    self.error("E0406", f"'{rule_name}' updates a model, not '{name}'",
                               stmt.targets[0].span)
            return
        if "table" in traits:
            for kind, name in targets:
                entry = self.memory_entry(name) if kind == "memory" else None
                if entry is None or "table" not in entry.traits:
                    self.error("E0406", f"'{rule_name}' writes to an episodic table; '{name}' is "
                               "not one", stmt.targets[0].span,
                               hint="declare `memory M = table(...)` or `dnd(...)`")
            if not isinstance(obj, A.Minimize):
                self.error("E0406", f"'{rule_name}' writes values computed `on EXPR over DATA`",
                           obj.span)
            return
        # gradient rules
        if not isinstance(obj, A.Minimize):
            self.error("E0406", f"'{rule_name}' minimises a loss `on LOSS over DATA`; "
                       "`maximizing` needs an evolutionary rule such as es", obj.span)
            return
        for (kind, name), ref in zip(targets, stmt.targets):
            if kind == "memory":
                entry = self.memory_entry(name)
                if entry is None or "differentiable" not in entry.traits:
                    self.error("E0406", f"'{rule_name}' follows gradients; memory '{name}' has "
                               "no parameters", ref.span)
                elif _ref("memory", name) not in refs:
                    self.error("E0403", f"the loss does not reach memory '{name}'", obj.loss.span,
                               hint=f"read it in the loss, e.g. lookup({name}, ...)")
            elif kind == "tasks":
                self.error("E0406", f"'{rule_name}' cannot update tasks '{name}'", ref.span)
            elif kind == "model" and name not in self.broken:
                info = self.models[name]
                reached = _ref("model", name) in refs or any(
                    _ref("head", h) in refs or _ref("attr", f"{name}.{h}") in refs
                    for h in info.heads)
                if not reached:
                    used = sorted(h for k, h in refs if k == "head")
                    self.error("E0403", f"the loss does not reach the parameters of '{name}'",
                               obj.loss.span,
                               hint=(f"it uses heads {', '.join(used)}; '{name}' has "
                                     if used else f"it uses no head of '{name}', which has ")
                               + (", ".join(sorted(info.heads)) or "no heads"))

    def memory_entry(self, name: str) -> R.Entry | None:
        decl = self.memories.get(name)
        if decl is None or not isinstance(decl.value, A.Call):
            return None
        return R.REGISTRY.get(decl.value.func_name or "")

    def check_heads_exist(self, loop, stmt, refs) -> None:
        all_heads = {h for m in self.models.values() for h in m.heads}
        for kind, name in sorted(refs):
            if kind == "head" and name not in all_heads:
                span = stmt.objective.span
                self.error("E0304", f"no model has a head '{name}', which the loss uses", span,
                           hint=f"add it to a model: `heads = {{..., {name}: "
                           f"{'categorical' if R.HEAD_SLOTS.get(name) == 'dist' else 'value'}}}`")

    def check_through(self, stmt: A.Update, inner: str) -> None:
        order, trace = 2, None
        if isinstance(stmt.through, A.Call):
            for arg in stmt.through.args:
                if arg.name == "order" and self.const(arg.value) is not None:
                    order = int(self.const(arg.value))
                if arg.name == "trace" and (self.const(arg.value) or 0) > 0:
                    trace = arg
        adapts = [s for s in self.loops[inner].decl.body if isinstance(s, A.Adapt)]
        if not adapts:
            self.error("E0213", f"`through {inner}` has no effect: '{inner}' adapts nothing",
                       stmt.through.span, hint="remove `through`, or `adapt` in the inner loop")
            return
        carried = {d.target.parts[0].rstrip("'") for d in self.memories.values()
                   if d.target.parts[0].endswith("'") and d.scope.id == "never"}
        if trace is not None and not any(a.targets[0].parts[0] in carried for a in adapts):
            model = adapts[0].targets[0].parts[0]
            self.error("E0213", "a `trace` has no effect: the adapted parameters do not "
                       "carry over from update to update, so θ never depends on earlier η",
                       trace.span, hint=f"add `memory {model}' reset never`, or remove the trace")
        if order == 2:
            for a in adapts:
                name = a.rule.func_name if isinstance(a.rule, A.Call) else None
                entry = R.REGISTRY.get(name or "")
                if entry is not None and "differentiable" not in entry.traits:
                    self.error("E0404", f"second-order meta-gradient through '{inner}', whose "
                               f"inner rule '{name}' is not differentiable", stmt.through.span,
                               hint=f"use `through {inner}(order = 1)`, or adapt with sgd")

    def check_metas(self) -> None:
        for name, decl in self.metas.items():
            learner = decl.learner.id
            if learner not in self.loops:
                self.error("E0201", f"unknown loop '{learner}'", decl.learner.span,
                           hint=did_you_mean(learner, self.loops) or
                           (one_of(self.loops) if self.loops else None))
                continue
            self.used.add(learner)
            updates = [p for p in self.pending if p[0].decl.name.id == learner
                       and any(t == ("meta", name) for t in p[3])]
            if not updates:
                self.error("E0402", f"'{name}' is learned by '{learner}', which never updates "
                           "it", decl.learner.span,
                           hint=f"add `update {name} by ... ` to '{learner}'")
                continue
            for loop, stmt, rule, targets, refs, through in updates:
                if refs is not None and _ref("meta", name) not in self.influence(stmt, refs,
                                                                                   through):
                    self.error("E0401", f"no objective of '{learner}' depends on '{name}'",
                               decl.name.span,
                               hint="use it in the loss or in the inner loop the update goes "
                               "`through`")

    def memory_users(self, name: str) -> list[LoopInfo]:
        """The loops whose statements use a memory's owner."""
        base = name.split(".")[0].rstrip("'")
        users = []
        for loop in self.loops.values():
            if _ref("memory", base) in loop.refs or base in loop.policies.values():
                users.append(loop)
                continue
            entry = self.memory_entry(base)
            if entry is not None and "latent" in entry.traits:
                if any("z" in self.models[m].inputs for m in loop.policies.values()
                       if m in self.models):
                    users.append(loop)
        return users

    def check_memories(self) -> None:
        for key, decl in self.memories.items():
            target = decl.target
            base = target.parts[0]
            scope = decl.scope.id
            if decl.value is None and not self.memory_target_ok(decl):
                continue
            users = self.memory_users(key)
            if not users:
                self.error("E0213", f"memory '{key}' is used by no loop", target.span)
                continue
            kinds = {u.decl.kind for u in users}
            units = {c.unit.id for u in users for c in u.data.values() if c.source == "with"}
            if scope == "task" and "inner" not in kinds:
                self.error("E0301", f"'{key}' resets per task, but no inner loop that samples "
                           "tasks uses it", decl.scope.span,
                           hint="use it in an inner loop, or reset per iteration")
            elif scope == "episode" and units and units <= {"samples"}:
                self.error("E0301", f"'{key}' resets per episode, but its loops collect samples, "
                           "which have no episodes", decl.scope.span, hint="reset per task")
            elif base.endswith("'") and scope not in ("task", "never"):
                self.error("E0301", f"adapted parameters '{base}' reset per task (MAML) or never "
                           "(online meta-gradients), not per " + scope, decl.scope.span)
            if decl.value is None and base in self.models and scope == "task":
                self.check_rl2_inputs(self.models[base], units, decl)

    def memory_target_ok(self, decl: A.MemoryDecl) -> bool:
        parts = decl.target.parts
        base = parts[0]
        if base.endswith("'"):
            if base.rstrip("'") not in {n for l in self.loops.values() for n in l.adapted}:
                self.error("E0201", f"'{base}' is adapted in no loop", decl.target.span)
                return False
            self.used.add(base.rstrip("'"))
            return True
        if base in self.models:
            self.used.add(base)
            info = self.models[base]
            if len(parts) > 1 and parts[1] not in ("core", "net"):
                self.error("E0201", f"model '{base}' has no part '{parts[1]}'", decl.target.span,
                           hint="memory belongs to the model's `core`")
                return False
            if len(parts) > 2 and not (info.core and "episodic" in info.core.traits
                                       and parts[2] == "episodic" and len(parts) == 3):
                self.error("E0302", f"'{decl.target.text}' has no state of its own",
                           decl.target.span, hint="an episodic_lstm core has `.episodic`")
                return False
            if not info.stateful:
                core = info.core.name if info.core else "its network"
                self.error("E0302", f"'{decl.target.text}' has no state to reset: {core} is "
                           "feed-forward", decl.target.span,
                           hint="use a gru, lstm or episodic_lstm core")
                return False
            return True
        if base in self.declared:
            self.error("E0302", f"'{base}' is {self.article(self.kind_of(base))}, which holds no "
                       "memory state", decl.target.span)
        else:
            self.error("E0201", f"unknown name '{base}'", decl.target.span,
                       hint=did_you_mean(base, self.models))
        return False

    def check_rl2_inputs(self, info: ModelInfo, units: set[str], decl: A.MemoryDecl) -> None:
        if not units:
            return
        need = ("prev_y",) if units <= {"samples"} else ("prev_action", "prev_reward")
        missing = [n for n in need if n not in info.inputs]
        if missing:
            self.error("E0303", f"'{info.decl.name.id}' adapts through its memory across a task "
                       f"(reset per task) but does not see {' and '.join(missing)}",
                       info.inputs_span or info.decl.span,
                       hint="feed them: `inputs = [" + ", ".join(
                           dict.fromkeys(info.inputs + list(missing))) + "]`")

    def check_unused(self) -> None:
        if not self.diags:
            self.check_unused_declarations()
        self.check_settings_without_effect()

    def check_unused_declarations(self) -> None:
        for decls, what in ((self.tasks, "tasks"), (self.models, "model"),
                            (self.metas, "meta-parameter")):
            for name in decls:
                if name not in self.used:
                    span = self.declared.get(name, self.module.span)
                    self.error("E0213", f"{what} '{name}' is declared but never used", span,
                               hint="remove it, or use it")
        for name, info in self.funcs.items():
            if info.module == "" and name not in self.used:
                self.error("E0213", f"'{name}' is defined but never used", info.decl.name.span)
        for imp in (d for d in self.module.decls if isinstance(d, A.Import)):
            if imp.names:
                for node in imp.names:
                    if node.id in self.imported and node.id not in self.used:
                        self.error("E0213", f"'{node.id}' is imported but never used", node.span)
                continue
            lib = stdlib.load(imp.module.id) if imp.module.id in stdlib.module_names() else None
            if lib and not any(n in self.used for n in lib.funcs):
                self.error("E0213", f"nothing from '{imp.module.id}' is used", imp.span)

    def check_settings_without_effect(self) -> None:
        schedule = getattr(self, "schedule_settings", {})
        if "workers" in schedule:
            backend = schedule.get("backend")
            if backend is None or getattr(backend.value, "id", None) != "ray":
                self.error("E0213", "`workers` has no effect unless backend = ray",
                           schedule["workers"].span, hint="set `backend = ray` or remove it")
        evaluate = getattr(self, "evaluate_settings", {})
        for name in ("adapt_steps", "later_lr_scales"):
            if name in evaluate and not any(l.adapted for l in self.loops.values()):
                self.error("E0213", f"`{name}` has no effect: no inner loop adapts parameters",
                           evaluate[name].span)
        for loop in self.loops.values():
            if "meta_batch" in loop.settings and loop.decl.over is None:
                self.error("E0213", "`meta_batch` has no effect in an outer loop that runs no "
                           "inner loop", loop.settings["meta_batch"].span)


# ---- expression typing -------------------------------------------------------------------


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


def _type_word(t: str) -> str:
    return {"tensor": "a tensor", "num": "a number", "int": "an integer", "dist": "a distribution",
            "model": "a model", "func": "a function", "loop": "a loop", "tasks": "tasks",
            "memory": "a memory", "bool": "a boolean", "str": "a string", "list": "a list",
            "dict": "a dictionary", "head": "a head", "core": "a network core",
            "meta": "a meta-parameter", "unknown": "something unknown"}.get(t, t)


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


class Scope:
    """Names visible in an expression over trajectory data, and what it refers to.

    Lookup order: function parameters and lets, the spec's declarations, registry ops,
    trajectory fields, head slots (heads of the spec's models and the standard slots)."""

    def __init__(self, checker: Checker, func: FuncInfo | None, loop: LoopInfo | None = None):
        self.c = checker
        self.func = func
        self.loop = loop
        self.locals: dict[str, str] = {}
        self.refs: set = set()

    def heads(self) -> dict[str, str]:
        out = dict(R.HEAD_SLOTS)
        for m in self.c.models.values():
            out.update(m.heads)
        return out

    def visible(self) -> list[str]:
        names = list(self.locals) + list(self.c.declared) + list(self.c.funcs)
        names += [e.name for e in R.REGISTRY.values() if e.kind in ("op", "fitness")]
        return names + list(R.TRAJECTORY_FIELDS) + list(self.heads()) + list(R.CONSTANTS)

    def lookup(self, name: A.Name) -> str:
        n = name.id
        if n in self.locals:
            self.refs.add(_ref("local", n))
            return self.locals[n]
        c = self.c
        base = n.rstrip("'")
        if n in c.metas:
            c.used.add(n)
            self.refs.add(_ref("meta", n))
            return "tensor"
        if base in c.models:
            c.used.add(base)
            self.refs.add(_ref("model", base))
            return "model"
        for kind, table in (("memory", c.memories), ("tasks", c.tasks), ("loop", c.loops)):
            if n in table:
                c.used.add(n)
                self.refs.add(_ref(kind, n))
                return kind
        if n in c.funcs or (n in R.REGISTRY and R.REGISTRY[n].kind in ("op", "fitness")):
            return "func"
        if n in R.TRAJECTORY_FIELDS:
            return "tensor"
        heads = self.heads()
        if n in heads:
            self.refs.add(_ref("head", n))
            return heads[n]
        if n in R.CONSTANTS:
            return R.CONSTANTS[n]
        if self.loop is not None and n in c.visible_data(self.loop):
            return "data"
        c.error("E0201", f"unknown name '{n}'", name.span,
                hint=did_you_mean(n, self.visible()))
        return "unknown"

    def infer(self, e: A.Expr) -> str:
        if isinstance(e, A.Number):
            return "int" if e.is_int else "num"
        if isinstance(e, A.String):
            return "str"
        if isinstance(e, A.Name):
            t = self.lookup(e)
            if t == "func":
                self.c.error("E0206", f"'{e.id}' is a function: call it, `{e.id}(...)`", e.span)
                return "unknown"
            return t
        if isinstance(e, A.Attr):
            return self.infer_attr(e)
        if isinstance(e, A.Call):
            return self.infer_call(e)
        if isinstance(e, A.BinOp):
            a, b = self.infer(e.left), self.infer(e.right)
            for side, t in ((e.left, a), (e.right, b)):
                if not compatible("tensor", t):
                    self.c.error("E0206", f"'{e.op}' needs numbers or tensors, not "
                                 f"{_type_word(t)}", side.span)
                    return "unknown"
            if e.op in ("==", "!=", "<", "<=", ">", ">=", "and", "or"):
                return "bool" if "tensor" not in (a, b) else "tensor"
            if a in ("int", "num") and b in ("int", "num"):
                return "int" if a == b == "int" and e.op in "+-*" else "num"
            return "tensor"
        if isinstance(e, A.UnaryOp):
            t = self.infer(e.operand)
            if not compatible("tensor", t):
                self.c.error("E0206", f"'{e.op}' needs a number or tensor, not {_type_word(t)}",
                             e.span)
                return "unknown"
            return t
        if isinstance(e, A.Index):
            obj, idx = self.infer(e.obj), self.infer(e.index)
            if not compatible("tensor", obj) or not compatible("tensor", idx):
                self.c.error("E0206", "only tensors can be indexed, by numbers", e.span)
                return "unknown"
            return "tensor"
        if isinstance(e, A.ListExpr):
            for item in e.items:
                self.infer(item)
            return "list"
        if isinstance(e, A.DictExpr):
            return "dict"
        return "unknown"

    def infer_attr(self, e: A.Attr) -> str:
        if isinstance(e.obj, A.Name):
            base = e.obj.id.rstrip("'")
            if base in self.c.models:
                self.c.used.add(base)
                info = self.c.models[base]
                if e.name in info.heads:
                    self.refs.add(_ref("attr", f"{base}.{e.name}"))
                    return info.heads[e.name]
                self.c.error("E0201", f"model '{base}' has no head '{e.name}'", e.name_span,
                             hint=did_you_mean(e.name, info.heads) or
                             (one_of(info.heads) if info.heads else None))
                return "unknown"
            if self.loop is not None and e.obj.id in self.c.visible_data(self.loop):
                if e.name in R.TRAJECTORY_FIELDS:
                    return "tensor"
                self.c.error("E0201", f"data has no field '{e.name}'", e.name_span,
                             hint=did_you_mean(e.name, R.TRAJECTORY_FIELDS))
                return "unknown"
        t = self.infer(e.obj)
        if t != "unknown":
            self.c.error("E0206", f"{_type_word(t)} has no fields; functions are called as "
                         f"`{e.name}(x)`", e.span,
                         hint=f"write `{e.name}(...)`" if e.name in R.REGISTRY else None)
        return "unknown"

    def infer_call(self, e: A.Call) -> str:
        name = e.func_name
        c = self.c
        if name is not None and name in self.locals and self.locals[name] == "model":
            self.refs.add(_ref("local", name))
            return self.infer_net_call(e, "tensor")
        if name is not None and name in c.funcs and name not in self.locals:
            c.used.add(name)
            self.refs.add(_ref("call", name))
            self.check_func_args(e, c.funcs[name])
            return "tensor"
        if name is not None and name in R.REGISTRY and name not in self.locals:
            entry = R.REGISTRY[name]
            if entry.kind not in ("op", "fitness"):
                c.error("E0209", f"'{name}' is {c.article(entry.kind)}, not usable in an "
                        "expression", e.func.span)
                return "unknown"
            c.check_args(e, entry, self)
            if entry.result == "same":
                return self.infer(e.args[0].value) if e.args else "unknown"
            for arg in e.args:
                if isinstance(arg.value, A.Name) and arg.value.id in c.loops:
                    self.refs.add(_ref("loop", arg.value.id))
            return entry.result
        # a model, a head or target(head) called on explicit inputs: q1(obs, action)
        t = self.infer(e.func)
        if t in ("model", "dist", "tensor"):
            return self.infer_net_call(e, "tensor" if t == "model" else t)
        if t != "unknown":
            c.error("E0206", f"{_type_word(t)} cannot be called", e.func.span)
        return "unknown"

    def infer_net_call(self, e: A.Call, result: str) -> str:
        for arg in e.args:
            got = self.infer(arg.value)
            if arg.name is not None or not compatible("tensor", got):
                self.c.error("E0206", "a network is called on tensors, by position", arg.span)
        return result

    def check_func_args(self, e: A.Call, info: FuncInfo) -> None:
        decl = info.decl
        params = decl.params
        names = [p.name.id for p in params]
        seen: set[str] = set()
        for i, arg in enumerate(e.args):
            if arg.name is None:
                if i >= len(params):
                    self.c.error("E0205", f"'{decl.name.id}' takes {len(params)} argument"
                                 f"{'s' if len(params) != 1 else ''}, given "
                                 f"{len(e.args)}", arg.span,
                                 hint=f"{decl.name.id}({', '.join(names)})")
                    continue
                pname = names[i]
            else:
                if arg.name not in names:
                    self.c.error("E0202", f"'{decl.name.id}' has no argument '{arg.name}'",
                                 arg.span, hint=did_you_mean(arg.name, names) or
                                 (one_of(names) if names else None))
                    continue
                pname = arg.name
            if pname in seen:
                self.c.error("E0203", f"argument '{pname}' of '{decl.name.id}' is given twice",
                             arg.span)
                continue
            seen.add(pname)
            param = params[names.index(pname)]
            got = self.infer(arg.value)
            want = param.type.id if param.type is not None else "tensor"
            if not compatible(want, got):
                self.c.error("E0206", f"'{pname}' of '{decl.name.id}' expects {_type_word(want)}"
                             f", got {_type_word(got)}", arg.value.span)
        for p in params:
            if p.default is None and p.name.id not in seen:
                self.c.error("E0204", f"'{decl.name.id}' needs the argument '{p.name.id}'",
                             e.span, hint=f"{decl.name.id}({', '.join(names)})")
