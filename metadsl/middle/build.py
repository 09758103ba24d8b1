"""Checked spec → loop program (middle.program): the one reader of the checker's results.

Every fact a later phase needs is resolved here, once, from what the checker proved:
which names are models, meta-parameters, memories, data, heads or trajectory fields;
which loop runs which; what each rule is bound to. Constants are folded by the checker's
own folding (`Checker.const`), so the program and the diagnostics agree on every value.
"""

from __future__ import annotations

from ..front import ast as A
from .. import registry as R
from ..front.check import Checked, Checker, bind_args, show
from ..front.check.facts import declared_heads
from ..front.formatter import format_expr
from ..spans import NOWHERE
from . import program as P


def loc(node) -> P.Loc:
    span = getattr(node, "span", None)
    return P.Loc(span.line, span.column) if span is not None else P.NOWHERE


def constant(expr: A.Expr | None, param: R.P | None = None) -> P.Const | None:
    """A constant argument as a typed `Const`, or None where it is not constant."""
    if expr is None:
        return None
    ptype = param.type if param is not None else ""
    if isinstance(expr, A.String):
        return P.Const(expr.value, "str")
    if isinstance(expr, A.Name):
        if expr.id in ("true", "false"):
            return P.Const(expr.id == "true", "bool")
        return P.Const(expr.id, "symbol") if ptype == "symbol" else None
    if isinstance(expr, A.ListExpr):
        items = [constant(i) for i in expr.items]
        return None if None in items else P.Const(tuple(i.value for i in items), "list")
    if isinstance(expr, A.DictExpr):
        items = [(k.id, constant(v)) for k, v in expr.items]
        return None if any(v is None for _, v in items) else \
            P.Const(tuple((k, v.value) for k, v in items), "dict")
    value = Checker.const(expr)
    if value is None:
        return None
    integral = ptype == "int" or (ptype != "num" and _is_int_literal(expr))
    if integral and float(value).is_integer():
        return P.Const(int(value), "int")
    return P.Const(float(value), "float")


def _is_int_literal(expr: A.Expr) -> bool:
    if isinstance(expr, A.Number):
        return expr.is_int
    if isinstance(expr, A.UnaryOp):
        return _is_int_literal(expr.operand)
    if isinstance(expr, A.BinOp) and expr.op in "+-*":
        return _is_int_literal(expr.left) and _is_int_literal(expr.right)
    return False


class Builder:
    def __init__(self, checked: Checked):
        self.c = checked
        self.unsupported: list[tuple[str, P.Loc]] = []
        self.functions = self._function_table()
        self.heads = {h for m in checked.models.values() for h in m.heads} | set(R.HEAD_SLOTS)

    def missing(self, what: str, where) -> None:
        item = (what, loc(where) if not isinstance(where, P.Loc) else where)
        if item not in self.unsupported:
            self.unsupported.append(item)

    # ---- values and expressions ----

    def value(self, expr: A.Expr, param: R.P | None = None):
        """A registry argument: a constant, a meta-parameter, or an expression."""
        const = constant(expr, param)
        if const is not None:
            return const
        if isinstance(expr, A.Name) and expr.id in self.c.metas:
            return P.Meta(expr.id)
        if isinstance(expr, A.Name) and expr.id in self.c.models:
            return P.Params(expr.id)
        if isinstance(expr, A.Name) and expr.id in self.c.memories:
            return P.Memory(expr.id)
        return self.expr(expr, frozenset())

    def args(self, call: A.Expr | None, entry: R.Entry | None) -> tuple:
        """A registry call's given arguments by parameter name (defaults: a later pass)."""
        if not isinstance(call, A.Call) or entry is None:
            return ()
        bound = bind_args(call, entry)
        out = []
        for p in entry.params:
            if p.name in bound:
                value = self.value(bound[p.name], p)
                if isinstance(value, P.Const) and not R.choice_built(p, value.value):
                    self.missing(f"`{p.name} = {show(value.value)}` of {entry.name} (only "
                                 f"{p.name} = {show(p.default)} is built)", bound[p.name])
                out.append((p.name, value))
        return tuple(out)

    def expr(self, e: A.Expr, local: frozenset, detached: bool = False) -> P.Expr:
        if isinstance(e, A.Number):
            return P.Lit(int(e.value) if e.is_int else e.value)
        if isinstance(e, A.String):
            return P.Lit(e.value)
        if isinstance(e, A.Name):
            return self.name(e, local, detached)
        if isinstance(e, A.UnaryOp):
            if e.op == "-":
                return P.Negate(self.expr(e.operand, local, detached))
            return P.Unsupported(f"operator `{e.op}`", loc(e))
        if isinstance(e, A.BinOp):
            if e.op in ("and", "or"):
                return P.Unsupported(f"operator `{e.op}`", loc(e))
            return P.Binary(e.op, self.expr(e.left, local, detached),
                            self.expr(e.right, local, detached))
        if isinstance(e, A.Call):
            return self.call(e, local, detached)
        return P.Unsupported(f"expression `{type(e).__name__.lower()}`", loc(e))

    def name(self, e: A.Name, local: frozenset, detached: bool) -> P.Expr:
        n = e.id
        if n in local:
            return P.Local(n)
        if n in ("true", "false"):
            return P.Lit(n == "true")
        if n in R.TRAJECTORY_FIELDS or n in self.c.columns:
            return P.Field(n)
        if n in self.c.memories:
            return P.Memory(n)
        if n in self.c.metas:
            return P.Meta(n)
        if n in self.heads:
            return P.Head(n, detached)
        if n in self.c.models:
            return P.ModelRef(n)
        return P.Unsupported(f"name '{n}' in a loss", loc(e))

    def call(self, e: A.Call, local: frozenset, detached: bool) -> P.Expr:
        name = e.func_name or ""
        if name == "stop_grad" and len(e.args) == 1:
            # no gradient to the model: its heads are read detached; a meta-parameter in
            # the expression (a learned γ) keeps its gradient, which meta-gradients need
            return self.expr(e.args[0].value, local, detached=True)
        positional = tuple(self.expr(a.value, local, detached) for a in e.args if a.name is None)
        entry = R.REGISTRY.get(name)
        loops = {p.name for p in entry.params if p.type == "loop"} \
            if entry is not None and entry.kind == "op" else set()
        # a loop an op names (`anneal(..., loop = evolve)`) is kept by name
        keywords = tuple((a.name, P.Lit(a.value.id) if a.name in loops and
                          isinstance(a.value, A.Name) else self.expr(a.value, local, detached))
                         for a in e.args if a.name is not None)
        if name == "target" and len(e.args) == 1 and name not in local:
            head = self.target_head(e.args[0].value, local)
            return P.HeadCall(head, (), True, True) if head else \
                P.Unsupported("target(...) of anything but a head", loc(e))
        if isinstance(e.func, A.Call) and e.func.func_name == "target" and \
                len(e.func.args) == 1:  # target(q)(next_obs, action)
            head = self.target_head(e.func.args[0].value, local)
            return P.HeadCall(head, positional, True, True) if head else \
                P.Unsupported("target(...) of anything but a head", loc(e))
        if name in self.heads and name not in local and name not in self.functions:
            return P.HeadCall(name, positional, False, detached)
        if name in self.functions and name not in local:
            return P.Call(name, positional, keywords, detached)
        if entry is not None and entry.kind == "op":
            if not R.built(entry):
                return P.Unsupported(f"op '{name}'", loc(e))
            return P.Op(name, positional, keywords, "batch" in entry.traits)
        if name in local:  # a model parameter of the function (the checker typed it)
            return P.ModelCall(P.Local(name), positional)
        if name in self.c.models:
            return P.ModelCall(P.ModelRef(name), positional)
        return P.Unsupported(f"call of '{name or '?'}' in a loss", loc(e))

    def target_head(self, e: A.Expr, local: frozenset) -> str | None:
        """The head a `target(...)` copies."""
        if isinstance(e, A.Name) and e.id in self.heads and e.id not in local:
            return e.id
        return None

    # ---- functions ----

    def _function_table(self) -> dict:
        """Every function a spec can reach: its own and the standard library's (a stdlib
        function calls others of its module without the spec importing them). Names are
        unique across stdlib/, so one flat table serves."""
        from ..front import stdlib

        table = {}
        for module in stdlib.module_names():
            table.update(stdlib.load(module).funcs)
        table.update(self.c.funcs)
        return table

    def reachable_functions(self, roots: list[A.Expr]) -> tuple:
        """The functions the roots call, callees first (same spec, same order)."""
        order: list[str] = []

        def visit(name: str) -> None:
            if name in order or name not in self.functions:
                return
            decl = self.functions[name].decl
            local = {p.name.id for p in decl.params} | {l.name.id for l in decl.lets}
            for node in A.walk((decl.params, decl.lets, decl.body)):
                if isinstance(node, A.Call) and node.func_name in self.functions and \
                        node.func_name not in local:
                    visit(node.func_name)
            order.append(name)

        for root in roots:
            for node in A.walk(root):
                if isinstance(node, A.Call) and node.func_name:
                    visit(node.func_name)
        return tuple(self.function(name) for name in order)

    def function(self, name: str) -> P.Function:
        info = self.functions[name]
        decl = info.decl
        local = frozenset({p.name.id for p in decl.params} | {l.name.id for l in decl.lets})
        params = []
        for p in decl.params:
            if p.default is None:
                params.append((p.name.id, None))
            else:
                const = constant(p.default)
                params.append((p.name.id, P.Lit(const.value) if const is not None
                               else self.expr(p.default, local)))
        lets = tuple((l.name.id, self.expr(l.value, local)) for l in decl.lets)
        origin = f"stdlib/{info.module}.mrl" if info.module else "the spec"
        return P.Function(name, decl.kind, origin, tuple(params), lets,
                          self.expr(decl.body, local), loc(decl) if not info.module else P.NOWHERE)

    # ---- declarations ----

    def tasks(self) -> tuple:
        out = []
        for name, (decl, entry) in self.c.tasks.items():
            out.append(self.task_decl(name, decl.value, entry, decl))
        return tuple(out)

    def task_decl(self, name: str, call: A.Expr, entry: R.Entry, where) -> P.TaskDecl:
        if not R.built(entry):
            self.missing(f"tasks {entry.name}", where)
        return P.TaskDecl(name, entry.name, self.args(call, entry), tuple(sorted(entry.traits)),
                          loc(where))

    def models(self) -> tuple:
        out = []
        used_by = self.model_task_families()
        for name, info in self.c.models.items():
            if info.entry is None or info.core is None:
                continue
            if not R.built(info.entry):
                self.missing(f"model {info.entry.name}", info.decl)
            if not R.built(info.core):
                self.missing(f"core {info.core.name}", info.decl)
            core_call = next((a.value for a in info.decl.value.args
                              if a.name in ("core", "net")), None)
            for head, kind in declared_heads(info.decl.value):
                if kind in R.HEAD_KINDS and not R.HEAD_KINDS[kind].built:
                    self.missing(f"head {head}: {kind}", info.decl)
            out.append(P.ModelDecl(
                name, info.entry.name, info.core.name, self.args(core_call, info.core),
                tuple(info.inputs), declared_heads(info.decl.value), info.stateful,
                used_by.get(name), None, loc(info.decl)))
        return tuple(out)

    def model_task_families(self) -> dict[str, str]:
        """The task family whose observations and actions size each model: that of the
        first loop that rolls it out (the checker's record of each loop's policies)."""
        out: dict[str, str] = {}
        for name, loop in self.c.loops.items():
            family = self.loop_tasks(name)
            for model in loop.policies.values() if family else ():
                out.setdefault(model, family)
        # a model no loop acts with (a learned loss) reads the data of the tasks of the
        # loop that updates it
        for name, loop in self.c.loops.items():
            family = self.loop_tasks(name)
            for stmt in loop.decl.body if family else ():
                if isinstance(stmt, (A.Update, A.Adapt)):
                    for target in stmt.targets:
                        if target.parts[0] in self.c.models:
                            out.setdefault(target.parts[0], family)
        # a model a memory takes (a dnd's key network) sees the observations it acts on
        for memory, family in self.memory_task_families().items():
            decl = self.c.memories[memory]
            entry = R.REGISTRY[decl.value.func_name]
            for name, value in bind_args(decl.value, entry).items():
                param = entry.param(name)
                if param is not None and param.type == "model" and isinstance(value, A.Name):
                    out.setdefault(value.id, family)
        return out

    def metas(self) -> tuple:
        out = []
        for name, decl in self.c.metas.items():
            entry = R.REGISTRY.get(decl.value.func_name or "")
            if entry is None:
                continue
            if not R.built(entry):
                self.missing(f"meta-parameter {entry.name}", decl)
            out.append(P.MetaDecl(name, entry.name, self.args(decl.value, entry),
                                  decl.learner.id, loc(decl)))
        return tuple(out)

    def memory_task_families(self) -> dict[str, str]:
        """The task family whose observations and actions size each episodic memory: that
        of the first loop that acts on its values (`collect ... with q_greedy(M)`)."""
        out: dict[str, str] = {}
        for name, loop in self.c.loops.items():
            family = self.loop_tasks(name)
            for stmt in loop.decl.body if family else ():
                entry = R.REGISTRY.get(stmt.policy.func_name or "") \
                    if isinstance(stmt, A.Collect) and isinstance(stmt.policy, A.Call) else None
                values = bind_args(stmt.policy, entry).get("values") \
                    if entry is not None and entry.kind == "policy" else None
                if isinstance(values, A.Name) and values.id in self.c.memories:
                    out.setdefault(values.id, family)
        return out

    def memories(self) -> tuple:
        out = []
        used_by = self.memory_task_families()
        for key, decl in self.c.memories.items():
            base = decl.target.parts[0]
            entry = R.REGISTRY.get(decl.value.func_name or "") \
                if isinstance(decl.value, A.Call) else None
            if base.endswith("'"):
                target = P.Adapted(base.rstrip("'"))
            elif base in self.c.models and decl.value is None:
                target = P.Params(base)
            else:
                target = P.Memory(key)
            if entry is not None and not R.built(entry):
                self.missing(f"memory {key} = {entry.name}(...)", decl)
            out.append(P.MemoryDecl(key, target, decl.scope.id, entry.name if entry else None,
                                    self.args(decl.value, entry), loc(decl), used_by.get(key),
                                    written=key not in self.c.defaulted, fresh=decl.fresh))
        return tuple(out)

    # ---- loops ----

    def loop_tasks(self, name: str) -> str | None:
        decl = self.c.loops[name].decl
        if decl.kind == "outer":
            if decl.over is None or decl.over.id not in self.c.loops:
                return None
            decl = self.c.loops[decl.over.id].decl
        return decl.task_source.id if isinstance(decl.task_source, A.Name) else None

    def loops(self) -> tuple:
        inner = [n for n, l in self.c.loops.items() if l.decl.kind == "inner"]
        outer = [n for n, l in self.c.loops.items() if l.decl.kind == "outer"]
        return tuple(self.loop(n) for n in inner + outer)

    def loop(self, name: str) -> P.Loop:
        info = self.c.loops[name]
        decl = info.decl
        settings = {p.name: p for p in R.SETTINGS[decl.kind]}
        given = tuple((k, constant(s.value, settings[k])) for k, s in info.settings.items()
                      if k not in R.REPEAT_SETTINGS)
        repeat = {k: constant(s.value, settings[k]) for k, s in info.settings.items()
                  if k in R.REPEAT_SETTINGS}
        family = self.loop_tasks(name)
        body: list = []
        if decl.kind == "outer":
            if decl.over is None:
                self.missing(f"an outer loop without an inner loop ('{name}')", decl)
            else:
                body += [P.SampleTasks(family or "", loc=loc(decl)),
                         P.Map("tasks", decl.over.id, loc=loc(decl))]
        own = len(body)  # the loop's own statements follow its inner loop's run
        for stmt in decl.body:
            if isinstance(stmt, A.Collect):
                body.append(self.collect(name, family, stmt))
            elif isinstance(stmt, A.Store):
                columns = tuple((n.id, self.expr(e, frozenset())) for n, e in
                                getattr(stmt.columns, "items", ()))
                body.append(P.Store(self.data_ref(name, stmt.data.id), P.Memory(stmt.buffer.id),
                                    columns, loc(stmt)))
            elif isinstance(stmt, (A.Adapt, A.Update)):
                body.append(self.step(name, stmt))
        if repeat:
            value = {p: repeat.get(p) or P.Const(settings[p].default, "int")
                     for p in R.REPEAT_SETTINGS}
            body[own:] = [P.Repeat(**value, body=tuple(body[own:]),
                                   loc=loc(info.settings[next(iter(repeat))]))]
        adapts = any(isinstance(s, A.Adapt) for s in decl.body)
        return P.Loop(name, decl.kind, family, decl.over.id if decl.over else None, given,
                      tuple(body), adapts, loc(decl))

    def data_ref(self, loop: str, name: str) -> P.Data:
        """Data by name as the loop sees it: its own, or its inner loop's."""
        decl = self.c.loops[loop].decl
        if name in self.c.loops[loop].data or decl.over is None:
            return P.Data(loop, name)
        return P.Data(decl.over.id, name)

    def collect(self, loop: str, family: str | None, stmt: A.Collect):
        count = constant(stmt.count, R.P("count", "int"))
        output = P.Data(loop, stmt.output.id)
        if stmt.source == "from":
            return P.SampleBuffer(P.Memory(stmt.policy.id if isinstance(stmt.policy, A.Name)
                                           else "?"), count, stmt.unit.id, output, loc(stmt))
        if isinstance(stmt.policy, A.Call):
            entry = R.REGISTRY.get(stmt.policy.func_name or "")
            if entry is None or not R.built(entry):
                self.missing(f"behaviour policy {stmt.policy.func_name}", stmt.policy)
            policy = P.PolicyCall(stmt.policy.func_name or "?", self.args(stmt.policy, entry))
        else:
            pid = stmt.policy.id
            policy = P.Adapted(pid.rstrip("'")) if pid.endswith("'") else P.Params(pid)
        return P.Rollout(policy, family or "", count, stmt.unit.id, output, loc=loc(stmt))

    def step(self, loop: str, stmt) -> P.Step:
        entry = R.REGISTRY.get(stmt.rule.func_name or "") if isinstance(stmt.rule, A.Call) \
            else None
        rule = P.Rule(entry.name if entry else "?", tuple(sorted(entry.traits)) if entry else (),
                      self.args(stmt.rule, entry))
        targets = tuple(self.target(t) for t in stmt.targets)
        obj = stmt.objective
        if isinstance(obj, A.Minimize):
            objective = P.Minimize(self.expr(obj.loss, frozenset()),
                                   self.data_ref(loop, obj.data.id))
        elif isinstance(obj, A.Maximize):
            objective = P.Maximize(self.fitness(obj.fitness))
        else:
            objective = P.Toward(P.Adapted(obj.target.id.rstrip("'")))
        through = None
        if isinstance(stmt, A.Update) and stmt.through is not None:
            t = stmt.through
            name = t.func_name if isinstance(t, A.Call) else t.id
            args = dict(self.args(t, R.THROUGH)) if isinstance(t, A.Call) else {}
            through = P.Through(name, args.get("order"), args.get("trace"))
        mode = "adapt" if isinstance(stmt, A.Adapt) else "update"
        text = format_expr(obj.loss) if isinstance(obj, A.Minimize) else \
            format_expr(obj.fitness) if isinstance(obj, A.Maximize) else obj.target.id
        return P.Step(mode, targets, rule, objective, through, text, loc=loc(stmt))

    def fitness(self, e: A.Expr) -> P.Expr:
        """`maximizing F`: a fitness entry's call becomes a Fitness node, the score of the
        named loop's last collect (in its last round)."""
        entry = R.REGISTRY.get(e.func_name or "") if isinstance(e, A.Call) else None
        if entry is None or entry.kind != "fitness":
            return self.expr(e, frozenset())
        if not R.built(entry):
            self.missing(f"fitness {entry.name}", e)
            return P.Unsupported(f"fitness {entry.name}", loc(e))
        loop = bind_args(e, entry).get("loop")
        name = loop.id if isinstance(loop, A.Name) else ""
        collects = [st for st in self.c.loops[name].decl.body
                    if isinstance(st, A.Collect) and st.source != "from"] \
            if name in self.c.loops else []
        if not collects:
            self.missing(f"{entry.name}({name}) of a loop that collects nothing", e)
            return P.Unsupported(f"fitness {entry.name}", loc(e))
        return P.Fitness(entry.name, name, P.Data(name, collects[-1].output.id))

    def target(self, ref: A.Ref):
        """What an update changes, by the kind the checker resolved its name to."""
        name = ref.parts[0]
        if name in self.c.metas:
            return P.Meta(name)
        if name in self.c.models:
            return P.Params(name, ref.parts[1] if len(ref.parts) > 1 else None)
        if name in self.c.tasks:
            return P.Population(name)
        return P.Memory(name)

    # ---- evaluation ----

    def evaluate(self) -> P.Evaluate:
        block = self.c.blocks.get("evaluate")
        inner = self.c.evaluated
        if block is None or inner is None:
            return P.Evaluate("none", None, None, (), (), "", None)
        settings = {s.name.id: s for s in block.body if isinstance(s, A.Setting)}
        value = {k: s.value for k, s in settings.items()}
        against = tuple(item.func_name if isinstance(item, A.Call) else item.id
                        for item in getattr(value.get("against"), "items", ()))
        baseline_args = []
        for item in getattr(value.get("against"), "items", ()):
            if isinstance(item, A.Call):  # a baseline's settings: refused where not built
                given = self.args(item, R.REGISTRY[item.func_name])
                baseline_args.append((item.func_name, tuple(
                    (k, v.value) for k, v in given if isinstance(v, P.Const))))
        metric = getattr(value.get("metric"), "id", "total_reward")
        count = constant(value.get("instances"), R.P("instances", "int"))
        items = value["tasks"].items if isinstance(value.get("tasks"), A.ListExpr) else \
            [value["tasks"]] if "tasks" in value else [A.Name(self.loop_tasks(inner), NOWHERE)]
        tasks = []
        for item in items:
            if isinstance(item, A.Call) and item.func_name == "held_out":
                held = bind_args(item, R.REGISTRY["held_out"])
                count = constant(held.get("count"), R.P("count", "int")) or count
                item = item.args[0].value
            if isinstance(item, A.Name):
                tasks.append((item.id, item.id))
            elif isinstance(item, A.Call):
                entry = R.REGISTRY[item.func_name]
                label = format_expr(item)
                tasks.append((label, self.task_decl(f"{entry.name}_held_out", item, entry,
                                                    item)))
        count = count or P.Const(1000, "int")
        where = loc(settings.get("against", block))  # what the back end may lack: baselines
        outer = next((n for n, l in reversed(self.c.loops.items()) if l.decl.kind == "outer"
                      and l.decl.over is not None and l.decl.over.id == inner), None)
        pretrain = constant(value.get("pretrain_iterations"), R.P("pretrain_iterations", "int"))
        if self.c.evaluation == "after_adaptation":
            steps = tuple(int(i.value) for i in getattr(value.get("adapt_steps"), "items", ())
                          ) or tuple(
                R.setting("evaluate", "adapt_steps").default)
            scales = tuple(constant(i).value for i in
                           getattr(value.get("later_lr_scales"), "items", ())) or (1.0,)
            return P.Evaluate("after_adaptation", inner, outer, tuple(tasks), against, metric,
                              count, steps, scales, pretrain, loc=where,
                              baseline_args=tuple(baseline_args))
        return P.Evaluate("held_out", inner, outer, tuple(tasks), against, metric, count,
                          loc=where)

    # ---- the program ----

    def program(self) -> P.Program:
        c = self.c
        seed, honoured, execution = 0, [], "sequential"
        block = c.blocks.get("schedule")
        params = {p.name: p for p in R.SETTINGS["schedule"]}
        given = [s for s in (block.body if block else ())
                 if isinstance(s, A.Setting) and s.name.id in params]
        on_ray = any(s.name.id == "backend" and getattr(s.value, "id", None) == "ray"
                     for s in given)
        for s in given:
            name, value = s.name.id, constant(s.value, params[s.name.id])
            if name == "seed":
                seed = int(value.value)
            elif name in ("checkpoint_every", "log_every", "threads") or \
                    (on_ray and name in ("workers", "address")):
                honoured.append((name, value))
            elif name == "backend" and on_ray:
                execution = "ray"  # a Map over members runs as Ray tasks
            elif name == "execution" and value is not None and \
                    R.choice_built(params[name], value.value):
                execution = value.value if not on_ray else execution
            elif value is not None and value.value != params[name].default:
                # the runtime has only the default: one CPU process, one env per task
                self.missing(f"{name} = {value.value} (only {name} = "
                             f"{params[name].default} is built)", s)
        roots = [s.objective.loss for l in c.loops.values() for s in l.decl.body
                 if isinstance(s, (A.Update, A.Adapt)) and isinstance(s.objective, A.Minimize)]
        roots += [e for _, e in c.columns.values()]
        parts = dict(tasks=self.tasks(), models=self.models(), metas=self.metas(),
                     memories=self.memories(), functions=self.reachable_functions(roots),
                     loops=self.loops(), evaluate=self.evaluate())
        return P.Program(
            spec=c.module.name.id, title=c.module.title.value if c.module.title else "",
            source=c.source, path=c.file, seed=seed, schedule=tuple(honoured),
            execution=execution,
            unsupported=tuple(self.unsupported),
            **parts)


def build(checked: Checked) -> P.Program:
    return Builder(checked).program()
