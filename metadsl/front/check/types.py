"""Pass 2, type: every constructor, rule and op call against its registry signature
(arity, unknown or repeated keywords, types, bounds, choices); every function body and
loop statement through `Scope.infer`, recording what each expression refers to."""

from __future__ import annotations

import math

from .. import ast as A
from ... import registry as R
from ...diagnostics import did_you_mean, one_of
from .facts import (FuncInfo, LoopInfo, ModelInfo, bind_args, compatible, declared_heads, ref,
                    show, type_word)
from .scope import Scope


class Types:
    """The typing pass, a part of the Checker (it shares the checker's tables)."""

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
        direct = {name: set(info.refs) for name, info in self.funcs.items()}
        for name, info in self.funcs.items():
            if info.module == "":  # imported functions arrive with their references closed
                info.refs = self.function_refs(name, direct)

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
                info.heads[key.id] = R.HEAD_KINDS[kind].value if kind in R.HEAD_KINDS else "tensor"
        elif heads is None and entry.param("heads") is not None:
            default = entry.param("heads").default
            if isinstance(default, dict):
                info.heads.update({k: R.HEAD_KINDS[v].value if v in R.HEAD_KINDS else "tensor"
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
            default = "" if p.required else f" = {show(p.default)}"
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
                        self.check_number(R.P(p.name, p.item, low=p.low, high=p.high,
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
                self.error("E0206", f"{where} expects {type_word(t)}, got {type_word(got)}",
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
        if not math.isfinite(value) or abs(value) > R.MAX_MAGNITUDE:
            self.error("E0207", f"{where} is not a finite number of at most "
                                f"{R.MAX_MAGNITUDE:g} in magnitude", expr.span)
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
            v = Types.const(expr.operand)
            return -v if v is not None else None
        if isinstance(expr, A.BinOp) and expr.op in "+-*/^":
            a, b = Types.const(expr.left), Types.const(expr.right)
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
                       f"{type_word(result)}", decl.body.span)
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

    def function_refs(self, name: str, direct: dict[str, set]) -> set:
        """The references of `name` and of every function it reaches (each visited once:
        linear in the call graph, however the functions call each other)."""
        refs: set = set()
        seen, stack = {name}, [name]
        while stack:
            for kind, callee in direct[stack.pop()]:
                refs.add((kind, callee))
                if kind == "call" and callee in direct and callee not in seen:
                    seen.add(callee)
                    stack.append(callee)
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
        stepped: dict[str, A.Stmt] = {}  # target → the statement that first changes it
        for stmt in body:
            if isinstance(stmt, (A.Adapt, A.Update)):
                for target in stmt.targets:
                    # the same target, or a whole model and a part of it: both would step it
                    first = next((s for t, s in stepped.items() if s is not stmt and (
                        t == target.text or t.split(".")[0] == target.parts[0] and
                        ("." not in t or len(target.parts) == 1))), None)
                    stepped.setdefault(target.text, stmt)
                    if first is not None:
                        self.error("E0214", f"'{target.text}' is already changed in loop "
                                   f"'{name}' (line {first.span.line}): one step per target "
                                   "and loop", target.span,
                                   hint="combine the objectives: `on a() + b() over DATA`, "
                                   "or update the model's parts each by its own step")
                    if len(target.parts) > 1 and isinstance(stmt, A.Adapt):
                        self.error("E0214", f"`adapt` makes θ′ of a whole model; '"
                                   f"{target.text}' is a part of one", target.span,
                                   hint=f"adapt '{target.parts[0]}'")
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
        self.check_repeated(loop, body)

    def check_repeated(self, loop: LoopInfo, body) -> None:
        """`updates`/`warmup` repeat an outer loop's replay samples and in-place updates;
        nothing else of the loop can run more than once an iteration."""
        given = [loop.settings[k] for k in R.REPEAT_SETTINGS if k in loop.settings]
        if not given:
            return
        setting = given[0].name.id
        for stmt in body:
            repeatable = isinstance(stmt, A.Collect) and stmt.source == "from" or \
                isinstance(stmt, A.Update) and stmt.through is None and \
                isinstance(stmt.objective, A.Minimize)
            if not repeatable and not isinstance(stmt, A.Setting):
                self.error("E0214", f"`{setting}` repeats this loop's samples from a replay "
                           "buffer and its updates on them; this statement cannot be "
                           "repeated", stmt.span,
                           hint="collect in the inner loop, and update here on replayed "
                                "samples")
                return
        if not any(isinstance(s, A.Collect) and s.source == "from" for s in body):
            self.error("E0214", f"`{setting}` repeats updates on fresh samples of a replay "
                       "buffer, and this loop samples none", given[0].span,
                       hint="`collect N samples from BUFFER as batch`")

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
        if count is None or not math.isfinite(count) or not float(count).is_integer():
            self.error("E0206", "a collect count is an integer", stmt.count.span)
        elif not 1 <= count <= R.MAX_COUNT:
            self.error("E0207", f"collect count {count:g} is out of bounds [1, {R.MAX_COUNT}]",
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
            loop.refs.add(ref("memory", mem or ""))
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
                loop.refs.add(ref("model", base))
                return base
        if isinstance(expr, A.Call) and expr.func_name in R.REGISTRY \
                and R.REGISTRY[expr.func_name].kind == "policy":
            entry = R.REGISTRY[expr.func_name]
            self.check_args(expr, entry, Scope(self, None, loop))
            values = bind_args(expr, entry).get("values")
            if isinstance(values, A.Name):
                self.used.add(values.id)
                kind = "memory" if values.id in self.memories else "model"
                loop.refs.add(ref(kind, values.id))
                self.check_action_values(values, kind)
                return values.id if kind == "model" else None
            return None
        self.error("E0209", "collect `with` a model (or an adapted model, `pi'`), or a "
                   "behaviour policy such as q_greedy(...)", expr.span,
                   hint=one_of(self.models) if self.models else None)
        return None

    def check_action_values(self, values: A.Name, kind: str) -> None:
        """What `q_greedy(values)` acts on: an episodic table or dnd, or a feed-forward
        model with a `q_values` head."""
        if kind == "memory":
            entry = self.memory_entry(values.id)
            if entry is None or "table" not in entry.traits:
                self.error("E0209", f"'{values.id}' holds no action values to act on",
                           values.span, hint="a `table(...)` or `dnd(...)` memory, or a model "
                           "with a q_values head")
            return
        info = self.models.get(values.id)
        if info is None:
            return  # reported as unknown by the argument check
        kinds = [kind for _, kind in declared_heads(info.decl.value)] \
            if isinstance(info.decl.value, A.Call) else []
        if "q_values" not in kinds or info.stateful:
            self.error("E0209", f"q_greedy acts on a feed-forward model's q_values head; "
                       f"'{values.id}' {'is recurrent' if info.stateful else 'has none'}",
                       values.span, hint="`policy(net = mlp(...), heads = {q: q_values})`")

    def type_store(self, loop: LoopInfo, stmt: A.Store) -> None:
        if stmt.data.id not in self.visible_data(loop):
            self.unknown_data(loop, stmt.data)
        mem = self.expect_declared(stmt.buffer, "memory", "a `store ... in` target")
        if mem is not None:
            loop.refs.add(ref("memory", mem))
            entry = self.memory_entry(mem)
            if entry is None or "buffer" not in entry.traits:
                self.error("E0209", f"'{mem}' is not a buffer to store in", stmt.buffer.span,
                           hint="declare `memory NAME = buffer(...)`")
        if stmt.columns is None:
            return
        if not isinstance(stmt.columns, A.DictExpr):
            self.error("E0206", "stored columns are a dictionary `{NAME: EXPR, ...}`",
                       stmt.columns.span, hint="`store tau in replay with {ret: nstep(100)}`")
            return
        for name, expr in stmt.columns.items:
            scope = Scope(self, None, loop)
            got = scope.infer(expr)
            if not compatible("tensor", got):
                self.error("E0206", f"a stored column is a tensor, not {type_word(got)}",
                           expr.span)
                continue
            reads = sorted(f"{k} '{n}'" for k, n in self.expand_calls(scope.refs)
                           if k in ("head", "attr", "model", "memory", "meta", "column"))
            if reads:
                self.error("E0206", f"a stored column is computed from the trajectory's "
                           f"fields alone, but this one reads {reads[0]}", expr.span,
                           hint="compute it in the loss instead")

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
                    loop.refs.add(ref("meta", arg.value.id))
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
                self.error("E0206", f"a loss is a number or tensor, not {type_word(got)}",
                           obj.loss.span)
        elif isinstance(obj, A.Maximize):
            got = scope.infer(obj.fitness)
            if not compatible("tensor", got):
                self.error("E0206", f"a fitness is a number, not {type_word(got)}",
                           obj.fitness.span)
        else:
            base = obj.target.id.rstrip("'")
            if obj.target.id == base or base not in self.adapted_in_scope(loop):
                self.error("E0408", f"`toward` names adapted parameters (`{base}'`) from the inner "
                           "loop this one runs", obj.target.span)
            scope.refs.add(ref("model", base))
        through_loop = self.type_through(loop, stmt) if isinstance(stmt, A.Update) else None
        stmt_refs = self.expand_calls(scope.refs)
        loop.refs |= stmt_refs
        calls_broken = any(k == "call" and n in self.broken for k, n in stmt_refs)
        if len(self.diags) > before or calls_broken:  # a broken objective reaches nothing
            stmt_refs = None
        self.pending.append((loop, stmt, rule, targets, stmt_refs, through_loop))

    def type_target(self, loop: LoopInfo, target: A.Ref) -> tuple[str, str] | None:
        head = target.parts[0]
        if head.endswith("'"):
            self.error("E0209", f"update the parameters themselves, not the adapted copy "
                       f"'{head}'", target.span)
            return None
        for kind, table in (("model", self.models), ("meta", self.metas),
                            ("memory", self.memories), ("tasks", self.tasks)):
            if head in table:
                self.used.add(head)
                if len(target.parts) > 1 and kind == "model":
                    info = self.models[head]
                    part = target.parts[1]
                    if part not in info.heads and part not in ("core", "net"):
                        self.error("E0201", f"model '{head}' has no part '{part}'", target.span,
                                   hint=did_you_mean(part, list(info.heads) + ["core"]))
                return (kind, head)
        candidates = list(self.models) + list(self.metas) + list(self.memories)
        if head in self.loops or head in self.funcs:
            self.error("E0209", f"'{head}' is {self.article(self.kind_of(head))}; an update "
                       "changes models, meta-parameters, memories or task populations", target.span)
        else:
            self.error("E0201", f"unknown name '{head}'", target.span,
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

