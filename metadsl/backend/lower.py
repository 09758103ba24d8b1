"""Back end: loop program → one readable PyTorch training module, as Python `ast`.

Reads the loop program (metadsl.middle.program) and nothing else. One function per node
kind lowers it: `rollout`, `sample_tasks`, `map_tasks`, `step` (dispatched on the rule's
traits: a differentiable step, an optimizer step, an outer step through an inner loop,
an interpolation), `carry_over`, `reset`, `log`; `expr` lowers expressions node by node.
Spec names reach Python only through the symbol table the `mangle_names` pass made, and
spec text only as literals. The module is printed by `ast.unparse`, then black.

A node with no lowering is reported with its location (`NotBuilt`, exit 3), never
dropped. No torch here.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import itertools

from .. import __version__
from .. import registry as R
from ..diagnostics import NotBuilt
from ..resources import runtime_modules
from ..middle import program as P
from . import pyast as X


class Lowering:
    def __init__(self, program: P.Program):
        self.p = program
        self.missing: list[tuple[str, P.Loc]] = list(program.unsupported)
        self.fields = {a.path: a.name for a in program.args}
        self.runtime: set[str] = set()  # metadsl.runtime modules the module uses
        self.imports: set[str] = set()  # standard-library modules it uses

    # ---- names ----

    def note(self, what: str, loc: P.Loc) -> None:
        if (what, loc) not in self.missing:
            self.missing.append((what, loc))

    def rt(self, path: str) -> ast.expr:
        """A runtime attribute (`rollout.collect`), recording the module import."""
        self.runtime.add(path.split(".")[0])
        return X.dotted(path)

    def runtime_imports(self) -> list[ast.stmt]:
        """`from metadsl.runtime.PACKAGE import MODULE, ...` for the modules used, by package."""
        where = runtime_modules()
        packages: dict[str, list[str]] = {}
        for module in sorted(self.runtime):
            packages.setdefault(where[module], []).append(module)
        return [ast.ImportFrom(package, [ast.alias(m) for m in modules], 0)
                for package, modules in sorted(packages.items())]

    def std(self, path: str) -> ast.expr:
        """A standard-library attribute (`functools.partial`), recording the import."""
        self.imports.add(path.split(".")[0])
        return X.dotted(path)

    def impl(self, entry_name: str) -> ast.expr:
        return self.rt(R.REGISTRY[entry_name].impl)

    def state(self, name: str) -> ast.expr:
        return X.attr(X.name("state"), self.p.python("state", name))

    def setting(self, path: str) -> ast.expr:
        return X.attr(X.name("args"), self.fields[path])

    def local(self, loop: str, name: str) -> str:
        return self.p.python(f"loop:{loop}", name)

    def value(self, v, ctx: "Ctx | None" = None) -> ast.expr:
        """A statement's argument: a setting, a constant, a meta-parameter's value."""
        if isinstance(v, P.Setting):
            return self.setting(v.path)
        if isinstance(v, P.Const):
            if v.type == "dict":
                return X.mapping((k, X.const(x)) for k, x in v.value)
            return X.const(v.value)
        if isinstance(v, P.Meta):
            return X.call(self.state(v.name))
        if isinstance(v, (P.Params, P.Memory)):
            return self.state(P.target_name(v))
        return self.expr(v, ctx or Ctx(None, P.NOWHERE, metas=True))

    # ---- expressions ----

    def expr(self, e, ctx: "Ctx") -> ast.expr:
        method = getattr(self, "expr_" + type(e).__name__.lower(), None)
        if method is None:
            self.note(f"expression {type(e).__name__}", ctx.loc)
            return X.const(None)
        return method(e, ctx)

    def expr_lit(self, e: P.Lit, ctx) -> ast.expr:
        return X.const(e.value)

    expr_const = value

    def expr_setting(self, e: P.Setting, ctx) -> ast.expr:
        return self.setting(e.path)

    def expr_field(self, e: P.Field, ctx) -> ast.expr:
        return X.subscript(X.name("batch"), e.name)

    def heads(self, detached: bool) -> ast.expr:
        """The loss's view of its model (runtime.loss_view); `detached`: under stop_grad."""
        return X.call(X.attr(X.name("heads"), "detached")) if detached else X.name("heads")

    def expr_head(self, e: P.Head, ctx) -> ast.expr:
        return X.subscript(self.heads(e.detached), e.slot)

    def expr_headcall(self, e: P.HeadCall, ctx) -> ast.expr:
        """`q(obs, action)`, `target(v)(next_obs)`: the model called as an operation."""
        method = "target" if e.target else "call"
        return X.call(X.attr(self.heads(e.detached and not e.target), method),
                      X.const(e.slot), *[self.expr(a, ctx) for a in e.args])

    def expr_memory(self, e: P.Memory, ctx) -> ast.expr:
        """An episodic memory a loss reads, from the loss's view (`lookup(M, h, action)`)."""
        return X.call(X.attr(X.name("heads"), "memory"), X.const(e.key))

    def expr_local(self, e: P.Local, ctx) -> ast.expr:
        return X.name(self.p.python(f"function:{ctx.function}", e.name))

    def expr_meta(self, e: P.Meta, ctx) -> ast.expr:
        if not ctx.metas:  # a function body has no run state to read it from
            self.note(f"meta-parameter '{e.name}' in a function body", ctx.loc)
            return X.const(None)
        return X.call(self.state(e.name))

    def expr_op(self, e: P.Op, ctx) -> ast.expr:
        args = ([X.name("batch")] if e.batch else []) + [self.expr(a, ctx) for a in e.args]
        entry = R.REGISTRY[e.name]
        # a loop the op names says whose progress the batch carries: the step put it there
        keywords = [(k, self.expr(v, ctx)) for k, v in e.kwargs
                    if entry.param(k) is None or entry.param(k).type != "loop"]
        return X.call_kw(self.impl(e.name), args, keywords)

    def expr_modelref(self, e: P.ModelRef, ctx) -> ast.expr:
        """A model passed to a loss, bound by the loss's view to the step's parameters."""
        return X.call(X.attr(X.name("heads"), "model_ref"), X.const(e.model))

    def expr_modelcall(self, e: P.ModelCall, ctx) -> ast.expr:
        return X.call(self.expr(e.callee, ctx), *[self.expr(a, ctx) for a in e.args])

    def expr_call(self, e: P.Call, ctx) -> ast.expr:
        args = [X.name("batch"), self.heads(e.detached)] + [self.expr(a, ctx) for a in e.args]
        return X.call_kw(X.name(self.p.python("module", e.func)), args,
                         [(self.keyword(e.func, k), self.expr(v, ctx)) for k, v in e.kwargs])

    def keyword(self, func: str, param: str) -> str:
        return self.p.python(f"function:{func}", param)

    def expr_binary(self, e: P.Binary, ctx) -> ast.expr:
        return X.binary(e.op, self.expr(e.left, ctx), self.expr(e.right, ctx))

    def expr_negate(self, e: P.Negate, ctx) -> ast.expr:
        return ast.UnaryOp(ast.USub(), self.expr(e.operand, ctx))

    def expr_unsupported(self, e: P.Unsupported, ctx) -> ast.expr:
        self.note(e.what, e.loc)
        return X.const(None)

    def objective(self, loss, loop: P.Loop, loc: P.Loc) -> ast.Lambda:
        """`lambda batch, heads: LOSS`: meta-parameters read from the run state."""
        return X.lambda_(["batch", "heads"], self.expr(loss, Ctx(None, loc, metas=True)))

    # ---- functions (def / loss) ----

    def function(self, fn: P.Function) -> ast.FunctionDef:
        ctx = Ctx(fn.name, fn.loc, metas=False)
        scope = f"function:{fn.name}"
        params, defaults, setup = ["batch", "heads"], [], []
        for pname, default in fn.params:
            py = self.p.python(scope, pname)
            params.append(py)
            if default is None:
                if defaults:  # a required parameter after defaults: make it keyword-able
                    defaults.append(X.const(None))
                continue
            if isinstance(default, P.Lit):
                defaults.append(X.const(default.value))
            else:  # a default over the trajectory (`r = reward`) is computed per call
                defaults.append(X.const(None))
                setup.append(X.if_(ast.Compare(X.name(py), [ast.Is()], [X.const(None)]),
                                   [X.assign(py, self.expr(default, ctx))]))
        body = setup + [X.assign(self.p.python(scope, n), self.expr(v, ctx)) for n, v in fn.lets]
        body.append(X.ret(self.expr(fn.body, ctx)))
        return X.function(self.p.python("module", fn.name), X.arguments(params, defaults), body,
                          f"`{fn.kind} {fn.name}` from {fn.origin}.")

    # ---- build ----

    def build(self) -> ast.FunctionDef:
        body: list[ast.stmt] = [
            X.expr(X.call("torch.manual_seed", self.setting("seed"))),
            X.assign("gen", X.call(X.attr(X.call("torch.Generator"), "manual_seed"),
                                   self.setting("seed")))]
        parts = [("gen", X.name("gen"))]
        self.state_fields = [("gen", X.dotted("torch.Generator"))]

        def bind(key: str, value: ast.expr) -> None:
            py = self.p.python("state", key)
            body.append(X.assign(py, value))
            parts.append((py, X.name(py)))
            self.state_fields.append((py, value.func if isinstance(value, ast.Call) else None))

        for task in self.p.tasks:
            bind(task.name, self.task(task))
        for model in self.p.models:
            if not R.built(R.REGISTRY[model.constructor]) or not R.built(R.REGISTRY[model.core]):
                continue  # noted by the builder
            if model.tasks is None:
                self.note(f"model '{model.name}' is never rolled out (its sizes come from "
                          "the tasks it acts in)", model.loc)
                continue
            bind(model.name, self.model(model))
        for meta in self.p.metas:
            if R.built(R.REGISTRY[meta.constructor]):
                bind(meta.name, X.call_kw(self.impl(meta.constructor), [],
                                          [(k, self.local_value(v)) for k, v in meta.args]))
        for memory in self.p.memories:
            if memory.constructor is not None and R.built(R.REGISTRY[memory.constructor]):
                made = self.memory(memory)
                if made is not None:
                    bind(memory.key, made)
        for loop in self.p.loops:
            for stmt in loop.statements:
                if isinstance(stmt, P.Step) and P.has_optimizer(stmt) and \
                        R.built(R.REGISTRY[stmt.rule.name]):
                    params = [X.call(X.attr(self.local_part(t), "part_parameters"),
                                     X.const(t.part))
                              if isinstance(t, P.Params) and t.part is not None else
                              X.call(X.attr(self.local_part(t), "parameters"))
                              for t in stmt.targets]
                    first = params[0] if len(params) == 1 else \
                        ast.List([ast.Starred(p, X.LOAD) for p in params], X.LOAD)
                    bind(P.optimizer_key(loop.name, P.step_label(stmt)),
                         X.call_kw(self.impl(stmt.rule.name), [first],
                                   [(k, self.value(v)) for k, v in stmt.rule.args]))
                if isinstance(stmt, P.Step) and stmt.target_network and \
                        isinstance(stmt.targets[0], P.Params):
                    bind(P.target_network_key(stmt.targets[0].model),
                         X.call(self.rt("loss_view.TargetNetwork"),
                                self.local_part(stmt.targets[0])))
                if isinstance(stmt, P.Step) and stmt.through is not None and \
                        stmt.through.traced_model:
                    model = stmt.through.traced_model
                    metas = ast.List([self.local_part(t) for t in stmt.targets], X.LOAD)
                    bind("trace:" + model, X.call(self.rt("adaptation.Trace"),
                                                  self.local_part(P.Params(model)), metas,
                                                  decay=self.value(stmt.through.trace)))
        body.append(X.ret(X.call_kw(X.name("State"), [], parts)))
        return X.function("build", X.arguments(["args"], annotations={"args": X.name("Args")}),
                          body, "Tasks, models, meta-parameters and optimizers, seeded from "
                          "args.seed.", returns=X.name("State"))

    def state_class(self) -> ast.ClassDef:
        """The run's typed state: one field per part build() makes."""
        body: list[ast.stmt] = [X.docstring(
            "Everything the run learns and samples with: its generator (each outer "
            "iteration replaces it by that iteration's key), task families, models, "
            "meta-parameters and optimizers; checkpointed whole.")]
        for name, annotation in self.state_fields:
            body.append(ast.AnnAssign(X.name(name, True), annotation or X.name("object"), None,
                                      1))
        node = ast.ClassDef("State", [self.rt("session.State")], [], body, [X.name("dataclass")])
        if "type_params" in ast.ClassDef._fields:
            node.type_params = []
        return node

    def local_part(self, ref) -> ast.expr:
        """A part of the state as build() names it before the state exists."""
        return X.name(self.p.python("state", P.target_name(ref)))

    def local_value(self, v) -> ast.expr:
        return self.local_part(v) if isinstance(v, (P.Params, P.Meta, P.Memory)) \
            else self.value(v)

    def memory(self, m: P.MemoryDecl) -> ast.expr | None:
        """An episodic memory or replay buffer; one acted on is sized by the task family
        its loop acts in (the observation a table projects, the actions it must cover)."""
        keywords = [(k, self.local_value(v)) for k, v in m.args]
        if m.tasks is not None:
            family = X.name(self.p.python("state", m.tasks))
            keywords += [("obs_dim", X.attr(family, "obs_dim")),
                         ("n_actions", X.attr(family, "n_actions"))]
        elif "sized" in R.REGISTRY[m.constructor].traits:
            self.note(f"memory '{m.key}' is never acted on (`collect ... with q_greedy("
                      f"{m.key})`: its sizes come from the tasks it acts in)", m.loc)
            return None
        if "buffer" in R.REGISTRY[m.constructor].traits and m.scope == "task":
            keywords.append(("per_task", X.const(True)))  # a stream per task instance
        return X.call_kw(self.impl(m.constructor), [], keywords)

    def task(self, task: P.TaskDecl) -> ast.expr:
        if not R.built(R.REGISTRY[task.source]):
            return X.const(None)  # noted by the builder
        return X.call_kw(self.impl(task.source), [], [(k, self.value(v)) for k, v in task.args])

    def model(self, m: P.ModelDecl) -> ast.expr:
        family = X.name(self.p.python("state", m.tasks))
        keywords = [("core", X.const(m.core))] + [(k, self.value(v)) for k, v in m.core_args]
        keywords += [("inputs", X.const(list(m.inputs))), ("heads", X.mapping(m.heads)),
                     ("obs_dim", X.attr(family, "obs_dim")),
                     ("n_actions", X.attr(family, "n_actions"))]
        if m.reset is not None:
            keywords.append(("reset", X.const(m.reset)))
        if any(R.HEAD_KINDS[kind].bounded for _, kind in m.heads):
            keywords.append(("action_bounds", X.attr(family, "action_bounds")))
        return X.call_kw(self.impl(m.core), [], keywords)

    # ---- statements ----

    def stmt(self, s, ctx: "Ctx") -> list[ast.stmt]:
        method = getattr(self, "stmt_" + type(s).__name__.lower(), None)
        if method is None:
            self.note(f"`{type(s).__name__}` statements", getattr(s, "loc", ctx.loc))
            return []
        return method(s, ctx)

    def trial_steps(self, r: P.Rollout, sequential: bool | None = None) -> ast.expr:
        """Environment steps of one trial of a rollout, from the task family's horizon."""
        horizon = X.attr(self.state(r.tasks), "horizon")
        if r.unit == "steps":
            return self.value(r.count)
        if (r.schedule == "sequential") if sequential is None else sequential:
            return X.binary("*", self.value(r.count), horizon)
        return horizon

    def trial_length(self, rollouts: list[P.Rollout], tasks: str) -> ast.expr:
        """The env steps task instances are drawn for: the longest trial acting in them."""
        lengths = []
        for r in rollouts:
            length = self.trial_steps(r)
            if ast.dump(length) not in map(ast.dump, lengths):
                lengths.append(length)
        return lengths[0] if len(lengths) == 1 else X.call("max", *lengths) if lengths else \
            X.attr(self.state(tasks), "horizon")

    def stmt_sampletasks(self, s: P.SampleTasks, ctx) -> list[ast.stmt]:
        steps = self.trial_length([P.producer(self.p, d) for d in s.trials], s.source)
        return [X.assign("instances", X.call(X.attr(self.state(s.source), "sample"),
                                             self.value(s.count), steps,
                                             X.attr(X.name("state"), "gen")))]

    def theta(self, inner: P.Loop, count: ast.expr, traced: str | None = None) -> ast.Dict:
        """θ per task of each model the inner loop adapts, {model: {name: [tasks, ...]}}."""
        pairs = []
        for m in P.adapted_models(inner):
            model = self.state(m)
            if m == traced:  # θ whose gradient to η is the trace
                pairs.append((m, X.call(X.attr(self.state("trace:" + m), "theta"), model, count)))
            elif self.p.model(m).reinit:  # a fresh network per task, from the run's key
                pairs.append((m, X.call(X.attr(model, "fresh_per_task"), count,
                                        X.attr(X.name("state"), "gen"))))
            else:
                pairs.append((m, X.call(X.attr(model, "parameters_per_task"), count)))
        return X.mapping(pairs)

    def stmt_perturb(self, s: P.Perturb, ctx) -> list[ast.stmt]:
        """This iteration's generation of the model's θ, its noise keyed by
        (seed, phase, iteration, "eps", target)."""
        path = ast.Tuple([self.setting("seed"), X.const(ctx.loop.name), X.name("iteration"),
                          X.const("eps"), X.const(s.target.model)], X.LOAD)
        opt = self.state(P.optimizer_key(ctx.loop.name, s.target.model))
        return [X.assign("generation", X.call(X.attr(opt, "generation"), X.const(s.target.model),
                                              self.state(s.target.model),
                                              X.attr(X.name("run"), "progress"), path))]

    def progress_of(self, inner: P.Loop) -> list:
        """The outer loop's progress, for an inner loop whose `adapt` losses read it."""
        return [("progress", X.attr(X.name("run"), "progress"))] \
            if P.adapt_reads_progress(self.p, inner) else []

    def stmt_map(self, s: P.Map, ctx) -> list[ast.stmt]:
        return self.map_members(s, ctx) if s.index == "members" else self.map_tasks(s, ctx)

    def map_members(self, s: P.Map, ctx) -> list[ast.stmt]:
        """Each member's run of the inner loop, by the schedule's execution, its draws
        under (seed, phase, iteration, "member", i); the fitnesses in member order."""
        progress = [X.attr(X.name("run"), "progress")] \
            if P.adapt_reads_progress(self.p, self.p.loop(s.loop)) else []
        body = X.call_kw(self.std("functools.partial"),
                         [X.name(self.p.python("module", "member:" + ctx.loop.name)),
                          X.name("args"), *progress], [])
        path = ast.Tuple([self.setting("seed"), X.const(ctx.loop.name), X.name("iteration"),
                          X.const("member")], X.LOAD)
        keywords = [("rows", self.setting(f"{ctx.loop.name}.meta_batch")), ("path", path)]
        given = [body, X.name("generation"), X.name("state"), X.name("instances")]
        if s.execution == "batched" and not self.rows_batchable(self.p.loop(s.loop)):
            return []
        if s.execution == "ray":
            call = X.call_kw(self.rt("population_ray.members"), given,
                             keywords + [("run", X.name("run"))])
        else:
            call = X.call_kw(self.rt(f"population.{s.execution}"), given, keywords)
        return [X.assign(["results", "env_steps"], call)] + \
            [X.assign(name, X.subscript(X.name("results"), name)) for name, _ in s.results]

    def rows_batchable(self, inner: P.Loop) -> bool:
        """Whether members can run stacked as rows of one call: their tasks repeat as rows
        and every draw of the inner loop is per row (actions, fresh networks), so each
        member's rows draw from its own key; noted where not."""
        family = self.p.task(inner.tasks).source if inner.tasks else None
        if family is None or "rows" not in R.REGISTRY[family].traits:
            self.note(f"execution = batched on {family} tasks (their instances do not "
                      "repeat as rows: use execution = sequential)", inner.loc)
            return False
        shared = [s for s in inner.body if (isinstance(s, P.SampleBuffer) and s.unit != "steps")
                  or (isinstance(s, P.Step) and s.mode == "update")]
        if shared:
            self.note("execution = batched with draws that are not per row in the inner loop "
                      "(a uniform replay sample, an in-place update's minibatches)", shared[0].loc)
            return False
        return True

    def member_function(self, loop: P.Loop) -> ast.FunctionDef:
        """`LOOP_member(args, state, instances, params)`: one member of an outer loop's
        generation — or, batched, all of them, one block of rows each — its inner loop
        acting with the member's θ_i (`params`, one row per
        task), its fitnesses and its environment steps."""
        s = P.member_map(loop)
        inner = self.p.loop(s.loop)
        fn = X.name(self.p.python("module", inner.name))
        progress = P.adapt_reads_progress(self.p, inner)
        if inner.adapts:  # the member's θ_i beside the θ per task the inner loop adapts
            start = self.theta(inner, X.attr(X.name("instances"), "size"))
            start.keys.append(None)
            start.values.append(X.name("params"))
            call = X.call_kw(fn, [X.name("args"), X.name("state"), X.name("instances"), start,
                                  self.setting(f"{inner.name}.steps")],
                             [("order", X.const(1))] +
                             ([("progress", X.name("progress"))] if progress else []))
            call = ast.Subscript(call, X.const(1), X.LOAD)  # its rounds
        else:
            call = X.call_kw(fn, [X.name("args"), X.name("state"), X.name("instances"),
                                  self.setting(f"{inner.name}.steps")],
                             [("params", X.name("params"))])
        results = []
        for name, fitness in s.results:
            data = X.subscript(X.subscript(X.name("rounds"), -1), fitness.data.name)
            results.append((name, X.call(self.impl(fitness.name), self.state(inner.tasks),
                                         data)))
        steps = [X.call(self.rt("rollout.steps_taken"), X.subscript(X.name("round_"), r.output.name))
                 for r in P.rollouts(inner)]
        total = X.call("sum", ast.GeneratorExp(
            steps[0] if len(steps) == 1 else X.call("sum", ast.List(steps, X.LOAD)),
            [ast.comprehension(X.name("round_", True), X.name("rounds"), [], 0)]))
        args = X.arguments(["args"] + (["progress"] if progress else []) +
                           ["state", "instances", "params"], [],
                           {"args": X.name("Args"), "state": X.name("State"),
                            "params": X.name("dict"), "progress": X.name("float")})
        return X.function(self.p.python("module", "member:" + loop.name), args,
                          [X.assign("rounds", call),
                           X.ret(ast.Tuple([X.mapping(results), total], X.LOAD))],
                          f"One member of outer loop {loop.name}'s generation: inner loop "
                          f"{inner.name} acting with the member's parameters, its fitness and "
                          "the environment steps it took.", returns=X.name("tuple"))

    def map_tasks(self, s: P.Map, ctx) -> list[ast.stmt]:
        inner = self.p.loop(s.loop)
        fn = X.name(self.p.python("module", s.loop))
        steps = self.setting(f"{s.loop}.steps")
        if inner.adapts:
            call = X.call_kw(fn, [X.name("args"), X.name("state"), X.name("instances"),
                                  self.theta(inner, self.setting(f"{ctx.loop.name}.meta_batch")),
                                  steps], [("order", X.const(1))] + self.progress_of(inner))
            out: list[ast.stmt] = [X.assign(["adapted", "rounds"], call)]
        else:
            keywords = [("progress", X.attr(X.name("run"), "progress"))] \
                if P.has_update(inner) else []
            call = X.call_kw(fn, [X.name("args"), X.name("state"), X.name("instances"), steps],
                             keywords)
            out = [X.assign("rounds", call)]
        # the inner loop's data the outer statements read: its last round's
        used = {st.objective.data for st in ctx.loop.statements if isinstance(st, P.Step) and
                isinstance(st.objective, P.Minimize)} | \
            {st.data for st in ctx.loop.statements if isinstance(st, P.Store)}
        for r in P.rollouts(inner):
            if r.output in used:
                out.append(X.assign(self.local(ctx.loop.name, r.output.name),
                                    X.subscript(X.subscript(X.name("rounds"), -1),
                                                r.output.name)))
        return out

    def stmt_rollout(self, r: P.Rollout, ctx) -> list[ast.stmt]:
        out = self.local(ctx.loop.name, r.output.name)
        family = self.state(r.tasks)
        gen = X.attr(X.name("state"), "gen")
        acting = self.acting(r.policy)
        if acting is None:
            return []  # an unbuilt model or behaviour policy, noted by the builder
        parallel = r.schedule == "parallel"  # N episodes (or samples) side by side
        env = X.call(X.attr(family, "env"), X.name("instances"), copies=self.value(r.count)) \
            if parallel else X.call(X.attr(family, "env"), X.name("instances"))
        if r.unit == "samples":  # supervised data, read in order: nothing acts
            if parallel:
                return [X.assign(out, X.call(self.rt("rollout.samples"), env, gen))]
            return [X.assign("env", env),
                    X.assign(out, X.call(self.rt("rollout.samples"), X.name("env"), gen))]
        keywords = []
        if r.unit == "episodes" and not parallel:
            steps = X.binary("*", self.value(r.count), X.attr(X.name("env"), "horizon"))
            keywords.append(("episodes", self.value(r.count)))
        elif r.unit == "episodes":  # each copy's trial is one episode, however long
            steps = X.attr(X.name("env"), "horizon")
            keywords.append(("episodes", X.const(1)))
        else:
            steps = self.value(r.count)
        params = self.policy_params(r.policy, ctx)
        if params is not None:
            keywords.append(("params", params))
        if r.memory == "episode":
            keywords.append(("memory", X.const("episode")))  # returns stop at episode ends
        return [X.assign("env", env),
                X.assign(out, X.call_kw(self.rt("rollout.collect"),
                                        [acting, X.name("env"), steps, gen], keywords))]

    def acting(self, policy) -> ast.expr | None:
        """What acts in a rollout: a model, or a behaviour policy made from its registry
        binding (`episodic.QGreedy(values=state.M, epsilon=...)`); None where unbuilt."""
        if isinstance(policy, P.PolicyCall):
            if not R.built(R.REGISTRY[policy.name]):
                return None
            return X.call_kw(self.impl(policy.name), [],
                             [(k, self.value(v)) for k, v in policy.args])
        if P.acting_model(policy) not in {m.name for m in self.p.models}:
            return None
        return self.state(P.acting_model(policy))

    def policy_params(self, policy, ctx) -> ast.expr | None:
        """Per-task parameters a rollout acts with: θ′ after adaptation, or the inner
        loop's current per-task θ of a model it adapts."""
        if isinstance(policy, P.Adapted):
            return X.subscript(X.name("adapted"), policy.model)
        if ctx.loop.kind == "inner" and P.acting_model(policy) in \
                P.adapted_models(ctx.loop) + P.member_models(self.p, ctx.loop.name):
            return X.subscript(X.name("params"), policy.model)
        return None

    def data(self, d: P.Data, ctx) -> ast.expr:
        return X.name(self.local(ctx.loop.name, d.name))

    def stmt_store(self, s: P.Store, ctx) -> list[ast.stmt]:
        """The data's real steps as transitions, with columns computed over the whole
        trajectories (`fn(batch, view)`, like a loss with no model)."""
        columns = [(name, self.objective(e, ctx.loop, s.loc)) for name, e in s.columns]
        keywords = [("columns", X.mapping(columns))] if columns else []
        return [X.expr(X.call_kw(X.attr(self.state(s.buffer.key), "extend"),
                                 [self.data(s.data, ctx)], keywords))]

    def stmt_samplebuffer(self, s: P.SampleBuffer, ctx) -> list[ast.stmt]:
        """`N samples from B`: uniform draws; `N steps from B`: the last N, in order."""
        buffer = self.state(s.buffer.key)
        sample = X.call(X.attr(buffer, "recent"), self.value(s.count)) if s.unit == "steps" \
            else X.call(X.attr(buffer, "sample"), self.value(s.count),
                        X.attr(X.name("state"), "gen"))
        return [X.assign(self.local(ctx.loop.name, s.output.name), sample)]

    def stmt_repeat(self, s: P.Repeat, ctx) -> list[ast.stmt]:
        """`updates = N`, `warmup = W`: the statements N times, each time every buffer they
        sample holds W transitions. A step skipped for all N (warm-up) logs NaN."""
        skipped = [X.assign(self.local(ctx.loop.name, "stats:" + P.step_label(st)),
                            X.call(self.rt("rules.skipped")))
                   for st in s.body if isinstance(st, P.Step) and P.in_place_gradient_step(st)]
        buffers = dict.fromkeys(st.buffer.key for st in s.body if isinstance(st, P.SampleBuffer))
        ready = [X.binary(">=", X.call("len", self.state(b)), self.value(s.warmup))
                 for b in buffers]
        body = [x for st in s.body for x in self.stmt(st, ctx)]
        if ready:
            body = [X.if_(ready[0] if len(ready) == 1 else ast.BoolOp(ast.And(), ready), body)]
        return skipped + [X.for_("_", X.call("range", self.value(s.updates)), body)]

    def stmt_reset(self, s: P.Reset, ctx) -> list[ast.stmt]:
        return [X.expr(X.call(X.attr(self.state(s.memory.key), "clear")))]

    def stmt_carryover(self, s: P.CarryOver, ctx) -> list[ast.stmt]:
        return [X.expr(X.call(self.rt("adaptation.carry_over"), self.state(s.model),
                              X.subscript(X.name("adapted"), s.model)))]

    # -- steps, dispatched on the rule's traits --

    def stmt_step(self, s: P.Step, ctx) -> list[ast.stmt]:
        entry = R.REGISTRY.get(s.rule.name)
        if entry is None or not R.built(entry):
            self.note(f"update rule {s.rule.name}", s.loc)
            return []
        traits = set(s.rule.traits)
        if "table" in traits:
            return self.table_write(s, ctx)
        for t in s.targets:
            if isinstance(t, P.Population):
                self.note(f"an update of task population '{t.name}'", s.loc)
                return []
        if "evolutionary" in traits and isinstance(s.objective, P.Maximize):
            return self.evolutionary_step(s, ctx)
        if isinstance(s.objective, P.Maximize):
            self.note(f"`maximizing` with {s.rule.name}, a rule that is not evolutionary",
                      s.loc)
            return []
        if not self.model_calls_lower(s):
            return []
        if isinstance(s.objective, P.Minimize) and P.memories_read(self.p, s.objective.loss) \
                and not P.in_place_gradient_step(s):
            self.note("an episodic memory read (`lookup`) in a step other than an in-place "
                      "gradient update", s.loc)
            return []
        if s.mode == "adapt":
            if "differentiable" not in traits or not isinstance(s.objective, P.Minimize):
                self.note(f"`adapt` by {s.rule.name}", s.loc)
                return []
            runs = {l.name for l in self.p.loops if l.over == ctx.loop.name}
            for op in P.reads_progress(self.p, s):
                named = dict(op.kwargs).get("loop")
                if not isinstance(named, P.Lit) or named.value not in runs:
                    self.note(f"{op.name}(...) in an `adapt` loss that names no outer loop "
                              f"running {ctx.loop.name} (`{op.name}(..., loop = OUTER)`: an "
                              "inner step has no progress of its own)", s.loc)
                    return []
            return self.differentiable_step(s, ctx)
        if isinstance(s.objective, P.Toward):
            if "interpolate" not in traits:
                self.note(f"interpolating update by {s.rule.name}", s.loc)
                return []
            return self.interpolation(s, ctx)
        if "gradient" not in traits:
            self.note(f"`update` by {s.rule.name}", s.loc)
            return []
        if s.through is not None:
            return self.outer_step(s, ctx)
        return self.optimizer_step(s, ctx)

    def evolutionary_step(self, s: P.Step, ctx) -> list[ast.stmt]:
        """The rule's step from the generation's fitnesses (the Map over its members made
        them): an ES step of θ."""
        if not isinstance(s.objective.fitness, P.Local):
            return []  # not expanded into a generation: noted by the pass
        target = P.step_label(s)
        update = X.call(X.attr(self.state(P.optimizer_key(ctx.loop.name, target)), "update"),
                        X.name("generation"), X.name(s.objective.fitness.name))
        return [X.assign(self.local(ctx.loop.name, "stats:" + target), update)]

    def model_calls_lower(self, s: P.Step) -> bool:
        """Whether the heads the loss calls as operations can be built for this step: a
        target network is kept by in-place updates only, and only a feed-forward model is
        evaluated on other inputs."""
        if s.target_network and not P.in_place_gradient_step(s):
            self.note("a target network read in a step other than an in-place gradient "
                      "update", s.loc)
            return False
        if not isinstance(s.objective, P.Minimize):
            return True
        if P.models_passed(self.p, s.objective.loss) and s.mode != "adapt":
            self.note("a model passed to a loss (a learned loss) in a step other than an "
                      "`adapt`", s.loc)
            return False
        models = {m.name: m for m in self.p.models}
        called = any(isinstance(n, P.HeadCall) and n.args
                     for n in P.loss_nodes(self.p, s.objective.loss))
        if called and any(isinstance(t, P.Params) and t.model in models and
                          models[t.model].stateful for t in s.targets):
            self.note("a recurrent model's head called on other inputs", s.loc)
            return False
        return True

    def differentiable_step(self, s: P.Step, ctx) -> list[ast.stmt]:
        """θ′ = θ − α∇L per task, vmapped (adaptation.sgd): the inner loop's `adapt`."""
        if not all(isinstance(t, P.Params) for t in s.targets) or len(s.targets) > 1:
            self.note("`adapt` of anything but one model's parameters (per-task "
                      "meta-parameters, latents)", s.loc)
            return []
        model = P.target_name(s.targets[0])
        if model not in {m.name for m in self.p.models}:
            return []  # an unbuilt model, noted by the builder
        loss = self.local(ctx.loop.name, "loss:" + model)
        data = self.data(s.objective.data, ctx)
        objective = s.objective.loss
        keywords = [(k, self.value(v)) for k, v in s.rule.args]
        if ctx.baseline is not None:  # the baseline's own loss, at the step size it is given
            objective = P.Call(R.LOSS_BASELINES[ctx.baseline], (), (), False)
            keywords = [(k, X.name("lr") if k == "lr" else v) for k, v in keywords]
        if P.reads_progress(self.p, dataclasses.replace(s, objective=P.Minimize(
                objective, s.objective.data))):  # the outer loop's, handed to the inner loop
            data = X.call("dict", data, progress=X.name("progress"))
        keywords += [("order", X.name("order")), ("scale", X.name("scale"))]
        passed = P.models_passed(self.p, objective)
        if passed:  # a learned loss: its parameters are this loop's where it holds them
            held = set(P.adapted_models(ctx.loop)) | set(P.member_models(self.p, ctx.loop.name))
            keywords.append(("models", X.mapping(
                (m, ast.Tuple([self.state(m), X.subscript(X.name("params"), m)
                               if m in held else X.const(None)], X.LOAD)) for m in passed)))
        call = X.call_kw(self.impl(s.rule.name),
                         [self.state(model), X.subscript(X.name("params"), model), data,
                          self.objective(objective, ctx.loop, s.loc)], keywords)
        return [X.assign([X.subscript(X.name("params"), model), loss], call)]

    def table_write(self, s: P.Step, ctx) -> list[ast.stmt]:
        """`update M by table_write(...) on VALUES over DATA`: values from the data alone."""
        if any(isinstance(n, (P.Head, P.HeadCall, P.Memory))
               for n in P.loss_nodes(self.p, s.objective.loss)):
            self.note("values written to a table that read a model's heads or a memory",
                      s.loc)
            return []
        memory = P.target_name(s.targets[0])
        return [X.expr(X.call_kw(self.impl(s.rule.name),
                                 [self.state(memory), self.data(s.objective.data, ctx),
                                  self.objective(s.objective.loss, ctx.loop, s.loc)],
                                 [(k, self.value(v)) for k, v in s.rule.args]))]

    def optimizer_step(self, s: P.Step, ctx) -> list[ast.stmt]:
        """An in-place update: epochs × minibatches of gradient steps on the data; the
        optimizer also steps the other targets (a dnd's keys and values)."""
        target = next((t for t in s.targets if isinstance(t, P.Params)), None)
        if target is None:
            self.note("an in-place update of meta-parameters or memories alone (no model's "
                      "parameters among its targets)", s.loc)
            return []
        model = target.model
        made = P.producer(self.p, s.objective.data)
        inputs = set(self.p.model(model).inputs) if model in {m.name for m in self.p.models} \
            else set()
        if isinstance(made, P.SampleBuffer) and not inputs <= set(R.TRANSITION_FIELDS):
            self.note(f"model '{model}' trained on replayed transitions, which hold "
                      f"{', '.join(R.TRANSITION_FIELDS)}, reads "
                      f"{', '.join(sorted(inputs - set(R.TRANSITION_FIELDS)))}", s.loc)
            return []
        progress = X.attr(X.name("run"), "progress") if ctx.loop.kind == "outer" \
            else X.name("progress")
        batch = X.call("dict", self.data(s.objective.data, ctx), progress=progress)
        target = [("target", self.state(P.target_network_key(model)))] \
            if s.target_network else []
        read = P.memories_read(self.p, s.objective.loss)
        if read:
            target.append(("memories", X.mapping((k, self.state(k)) for k in read)))
        call = X.call_kw(self.rt("rules.minimize"),
                         [self.state(P.optimizer_key(ctx.loop.name, P.step_label(s))),
                          self.state(model), batch,
                          self.objective(s.objective.loss, ctx.loop, s.loc)],
                         [("gen", X.attr(X.name("state"), "gen"))] +
                         [(k, self.value(v)) for k, v in s.diagnostic_args] + target +
                         ([("diagnose", X.const(False))] if not s.diagnostics else []))
        return [X.assign(self.local(ctx.loop.name, "stats:" + P.step_label(s)), call)]

    def outer_step(self, s: P.Step, ctx) -> list[ast.stmt]:
        """One outer step on a closure that replays the inner loop on the same data, so
        the gradient (TRPO: also its Fisher-vector products) goes through θ′."""
        inner = self.p.loop(s.through.loop)
        target = P.step_label(s)
        data = s.objective.data
        made_by = P.producer(self.p, data)
        models = P.adapted_models(inner)
        if not models:
            self.note(f"`through {inner.name}`, an inner loop that adapts nothing", s.loc)
            return []
        model = P.acting_model(made_by.policy) if isinstance(made_by, P.Rollout) and \
            P.acting_model(made_by.policy) in models else models[0]
        batch = self.setting(f"{ctx.loop.name}.meta_batch")
        replay = X.call(X.name(self.p.python("module", inner.name)), X.name("args"),
                        X.name("state"), X.name("instances"),
                        self.theta(inner, batch, s.through.traced_model),
                        self.setting(f"{inner.name}.steps"), order=self.value(s.through.order),
                        replay=X.name("rounds"),
                        **dict(self.progress_of(inner)))
        closure = X.function("outer", X.arguments([]), [
            X.assign(["adapted", "_"], replay),
            X.ret(X.call(self.rt("adaptation.objective"), self.state(model),
                         X.subscript(X.name("adapted"), model), self.data(data, ctx),
                         self.objective(s.objective.loss, ctx.loop, s.loc)))],
            "θ′ recomputed from θ on the same data, so that the outer gradient goes "
            "through the inner steps.", returns=self.rt("adaptation.Outer"))
        keywords = []
        if s.through.traced_model:
            keywords.append(("trace", self.state("trace:" + s.through.traced_model)))
        step = X.call_kw(self.rt("rules.outer_step"),
                         [self.state(P.optimizer_key(ctx.loop.name, target)), X.name("outer")],
                         keywords)
        return [closure, X.assign(self.local(ctx.loop.name, "loss:" + target), step)]

    def interpolation(self, s: P.Step, ctx) -> list[ast.stmt]:
        """θ ← θ + ε(mean θ′ − θ) (Reptile)."""
        model = P.target_name(s.targets[0])
        keywords = [(k, self.value(v)) for k, v in s.rule.args]
        keywords.append(("progress", X.attr(X.name("run"), "progress")))
        return [X.expr(X.call_kw(self.impl(s.rule.name),
                                 [self.state(model),
                                  X.subscript(X.name("adapted"), s.objective.target.model)],
                                 keywords))]

    def stmt_log(self, s: P.Log, ctx) -> list[ast.stmt]:
        pairs = []
        for m in s.metrics:
            if m.kind == "score":
                data, index = m.source
                value = X.call(X.attr(X.call(X.attr(self.state(ctx.loop.tasks), "score"),
                                             self.round_data(data, index, ctx)), "mean"))
            elif m.kind == "loss":
                pairs.append((m.name, X.name(self.local(ctx.loop.name, "loss:" + m.source))))
                continue
            elif m.kind == "step_stat":
                target, stat = m.source
                stats = X.name(self.local(ctx.loop.name, "stats:" + target))
                pairs.append((m.name, X.subscript(stats, stat)))
                continue
            elif m.kind == "inner_loss":
                value = X.call(X.attr(X.subscript(X.subscript(X.name("rounds"), 0),
                                                  "loss_" + m.source), "mean"))
            elif m.kind == "rule_stat":
                target, stat = m.source
                pairs.append((m.name, X.attr(self.state(P.optimizer_key(ctx.loop.name, target)),
                                             stat)))
                continue
            else:  # a scalar meta-parameter's value
                value = X.call(self.state(m.source.name))
            pairs.append((m.name, X.call(X.attr(value, "item"))))
        steps: ast.expr = X.const(0)
        for data in s.env_steps:
            if isinstance(data, P.Local):  # a count the statement before made
                steps = X.name(data.name)
                continue
            count = X.call(X.attr(X.subscript(self.round_data(data, 0, ctx), "done"), "numel"))
            if data.loop != ctx.loop.name:  # every round of the inner loop
                count = X.binary("*", X.call("len", X.name("rounds")), count)
            steps = count if isinstance(steps, ast.Constant) else X.binary("+", steps, count)
        return [X.expr(X.call(X.attr(X.name("run"), "log"), X.name("iteration"),
                              X.mapping(pairs), env_steps=steps))]

    def round_data(self, data: P.Data, index: int, ctx) -> ast.expr:
        if data.loop == ctx.loop.name:
            return self.data(data, ctx)
        return X.subscript(X.subscript(X.name("rounds"), index), data.name)

    # ---- loops ----

    def inner_loop(self, loop: P.Loop, baseline: str | None = None) -> ast.FunctionDef:
        """An inner loop's function: its resets (scope: one call, a task), then `steps`
        rounds of its statements in their order. An adapting loop's data statements are
        skipped on `replay`, which hands back an earlier call's data instead. `baseline`:
        the variant an evaluation baseline runs (`ppo_baseline`: the loss it trains with in
        place of the loop's `adapt` loss, at a step size `lr` it is given)."""
        ctx = Ctx(None, loop.loc, loop=loop, baseline=baseline)
        produced = [s for s in loop.body if isinstance(s, (P.Rollout, P.SampleBuffer))]
        resets = [x for s in loop.body if isinstance(s, P.Reset) for x in self.stmt(s, ctx)]
        ordered = [s for s in loop.body if not isinstance(s, P.Reset)]
        record = [(s.output.name, X.name(self.local(loop.name, s.output.name))) for s in produced]
        fn = self.p.python("module", loop.name if baseline is None else
                           f"{loop.name}:{baseline}")
        doc = f"inner loop {loop.name}(task ~ {loop.tasks}): `steps` rounds of its body on " \
            "a batch of task instances"
        if baseline is not None:
            doc = f"{doc}, trained by baseline {baseline}'s loss at step size `lr`"
        if loop.adapts:
            replayed = [X.assign(self.local(loop.name, s.output.name),
                                 X.subscript(X.subscript(X.name("replay"), X.name("k")),
                                             s.output.name)) for s in produced]
            body = [X.assign("scale", ast.IfExp(X.binary("==", X.name("k"), X.const(0)),
                                                X.const(1.0), X.name("later_lr_scale")))]
            data_kinds = (P.Rollout, P.SampleBuffer, P.Store)
            for is_data, group in itertools.groupby(ordered, lambda s: isinstance(s, data_kinds)):
                group = list(group)
                lowered = [x for s in group for x in self.stmt(s, ctx)]
                if not is_data:
                    body += lowered
                    continue
                replayed = [X.assign(self.local(loop.name, s.output.name),
                                     X.subscript(X.subscript(X.name("replay"), X.name("k")),
                                                 s.output.name))
                            for s in group if not isinstance(s, P.Store)]
                body.append(X.if_(ast.Compare(X.name("replay"), [ast.Is()], [X.const(None)]),
                                  lowered, replayed or [ast.Pass()]))
            record += [("loss_" + m, X.name(self.local(loop.name, "loss:" + m)))
                       for m in P.adapted_models(loop)]
            record.append(("params", X.call("dict", X.name("params"))))
            body.append(X.expr(X.call(X.attr(X.name("rounds"), "append"), X.mapping(record))))
            statements = resets + [X.assign(["params", "rounds"],
                                   ast.Tuple([X.call("dict", X.name("params")),
                                              ast.List([], X.LOAD)], X.LOAD)),
                          X.for_("k", X.call("range", X.name("steps")), body),
                          X.ret(ast.Tuple([X.name("params"), X.name("rounds")], X.LOAD))]
            progress = P.adapt_reads_progress(self.p, loop) and baseline is None
            extra = ["progress"] if progress else []
            args = X.arguments(["args", "state", "instances", "params", "steps", "order",
                                "replay", "later_lr_scale"] + extra,
                               [X.const(None), X.const(1.0)] + ([X.const(1.0)] if progress
                                                                 else []),
                               {"args": X.name("Args"), "state": X.name("State"),
                                "params": X.name("dict"), "steps": X.name("int"),
                                "order": X.name("int"),
                                "replay": X.binary_or(X.name("list"), X.const(None)),
                                "later_lr_scale": X.name("float"), "progress": X.name("float")})
            if baseline is not None:  # the step size it is tried at, by keyword
                args.kwonlyargs, args.kw_defaults = [ast.arg("lr", X.name("float"))], [None]
            doc += ("; each round collects, then adapts θ′ per task from `params` (one set "
                    "per task, the tasks vmapped). Order 1 makes each inner gradient a "
                    "constant; `replay` re-adapts on an earlier call's data (the outer step "
                    "recomputes θ′ from θ); rounds after the first take `later_lr_scale` "
                    "times the step size" + ("; `progress` is the outer loop's (1: the end of "
                                            "training, as evaluated)" if progress else "") +
                    ". Returns θ′ and each round's data.")
            returns = ast.Subscript(X.name("tuple"), ast.Tuple([X.name("dict"), X.name("list")],
                                                                X.LOAD), X.LOAD)
            return X.function(fn, args, statements, doc, returns=returns)
        body = [x for s in ordered for x in self.stmt(s, ctx)] + \
            [X.expr(X.call(X.attr(X.name("rounds"), "append"), X.mapping(record)))]
        names = ["args", "state", "instances", "steps"] + \
            (["progress"] if P.has_update(loop) else []) + \
            (["params"] if P.member_models(self.p, loop.name) else [])
        statements = resets + [X.assign("rounds", ast.List([], X.LOAD)),
                      X.for_("_", X.call("range", X.name("steps")), body),
                      X.ret(X.name("rounds"))]
        args = X.arguments(names, [], {"args": X.name("Args"), "state": X.name("State"),
                                       "steps": X.name("int"), "progress": X.name("float"),
                                       "params": X.name("dict")})
        return X.function(fn, args, statements, doc + ". Returns each round's data.",
                          returns=X.name("list"))

    def outer_loop(self, loop: P.Loop) -> ast.FunctionDef:
        ctx = Ctx(None, loop.loc, loop=loop)
        body = [x for s in loop.body for x in self.stmt(s, ctx)]
        iterations = X.call(X.attr(X.name("run"), "iterations"), X.const(loop.name),
                            self.setting(f"{loop.name}.iterations"))
        doc = f"outer loop {loop.name}" + (f" over {loop.over}" if loop.over else "") + \
            ": each iteration samples a batch of tasks, runs the inner loop on them, then " \
            "updates from what it collected."
        # each iteration draws from its own key (seed, phase, iteration)
        keyed = X.assign("state", X.call(X.attr(X.name("state"), "replace"), gen=X.call(
            self.rt("keys.key"), self.setting("seed"), X.const(loop.name), X.name("iteration"))))
        return X.function(self.p.python("module", loop.name),
                          X.arguments(["args", "state", "run"],
                                      annotations={"args": X.name("Args"),
                                                   "state": X.name("State"),
                                                   "run": self.rt("session.Run")}),
                          [X.for_("iteration", iterations, [keyed] + body)], doc,
                          returns=X.const(None))

    # ---- evaluation ----

    def evaluate(self) -> ast.FunctionDef:
        ev = self.p.evaluate
        signature = X.arguments(["args", "state", "run"],
                                annotations={"args": X.name("Args"),
                                             "state": X.name("State"),
                                             "run": self.rt("session.Run")})
        if ev.kind == "none":
            return X.function("evaluate", signature, [], "The spec has no evaluate block.",
                              returns=X.const(None))
        if ev.kind == "after_adaptation":
            return self.evaluate_after_adaptation(ev, signature)
        inner = self.p.loop(ev.loop)
        first = next(iter(P.rollouts(inner)), None)
        if first is None:
            self.note("an evaluation of an inner loop that collects nothing", ev.loc)
            return X.function("evaluate", signature, [])
        acting = self.acting(first.policy)
        if acting is None:
            return X.function("evaluate", signature, [])  # its unbuilt policy is noted
        families = []
        retrained = [b for b in ev.against if "retrains" in R.REGISTRY[b].traits]
        computed = [b for b in ev.against if b not in retrained]
        for label, task in ev.tasks:
            decl = self.p.task(task) if isinstance(task, str) else task
            family = self.state(task) if isinstance(task, str) else self.task(task)
            for baseline in ev.against:
                if baseline not in R.REGISTRY[decl.source].provides:
                    self.note(f"baseline {baseline} on {decl.source} tasks", ev.loc)
            families.append(ast.Tuple([X.const(label), family], X.LOAD))
        body: list[ast.stmt] = []
        learned = []
        outer = [X.name(self.p.python("module", l.name)) for l in self.p.loops
                 if l.kind == "outer"]
        for baseline in retrained:  # the spec's own training, on other tasks
            if isinstance(first.policy, P.PolicyCall):
                self.note(f"baseline {baseline} of a behaviour policy ({first.policy.name})",
                          ev.loc)
                continue
            body.append(X.assign(baseline, X.call(
                self.impl(baseline), X.call("build", X.name("args")),
                X.const(self.p.python("state", inner.tasks)), ast.List(outer, X.LOAD),
                X.name("args"))))
            learned.append((baseline, X.attr(X.name(baseline),
                                             self.p.python("state", first.policy.model))))
        # a trial of several episodes where the learner's memory spans them
        episodes = self.value(first.count) if first.unit == "episodes" and \
            first.schedule == "sequential" else X.const(None)
        rows = X.call(self.rt("evaluation.held_out"), X.name("SPEC"),
                      acting, X.name("family"), X.name("label"),
                      steps=self.trial_steps(first, sequential=True), episodes=episodes,
                      instances=self.value(ev.instances), against=X.const(computed),
                      metric=X.const(ev.metric),
                      seed=self.setting("seed"),
                      **({"learned": X.mapping(learned)} if learned else {}))
        body += [X.assign("held_out", ast.List(families, X.LOAD)),
                X.assign("results", ast.List([], X.LOAD)),
                ast.For(ast.Tuple([X.name("label", True), X.name("family", True)], X.STORE),
                        X.name("held_out"), [ast.AugAssign(X.name("results", True), ast.Add(),
                                                           rows)], []),
                X.expr(X.call(X.attr(X.name("run"), "write_eval"), X.name("results")))]
        return X.function("evaluate", signature, body,
                          "Held-out tasks: the learner and each baseline on the same instances "
                          "and random draws.", returns=X.const(None))

    def evaluate_after_adaptation(self, ev: P.Evaluate, signature) -> ast.FunctionDef:
        inner = self.p.loop(ev.loop)
        models = P.adapted_models(inner)
        for baseline in ev.against:
            if "adaptation" not in R.REGISTRY[baseline].traits:
                self.note(f"baseline {baseline} for an evaluation after adaptation", ev.loc)
        first = next(iter(P.rollouts(inner)), None)
        learners = [(X.name("SPEC"), X.name("state"))]
        fn = X.name(self.p.python("module", inner.name))
        inner_call = X.call(self.std("functools.partial"), fn, X.name("args"))
        held = models + [m for m in P.member_models(self.p, inner.name) if m not in models]
        modules = X.mapping((m, X.const(self.p.python("state", m))) for m in held)
        fresh = [m for m in models if self.p.model(m).reinit]
        family = self.state(inner.tasks)
        trial = self.trial_length(P.rollouts(inner), inner.tasks)
        variants = []
        for baseline in P.loss_baselines(self.p):
            loss = R.LOSS_BASELINES[baseline]
            if loss not in {f.name for f in self.p.functions}:
                self.note(f"baseline {baseline} where no loss of the spec reaches `{loss}` "
                          f"(import it: `from rl import {loss}`)", ev.loc)
            fn_b = X.name(self.p.python("module", f"{inner.name}:{baseline}"))
            grid = dict(dict(ev.baseline_args).get(baseline, ())).get("lr") or \
                R.REGISTRY[baseline].param("lr").default
            variants.append((baseline, ast.Tuple([
                X.call("build", X.name("args")),
                X.call(self.std("functools.partial"), fn_b, X.name("args")),
                X.const(list(grid))], X.LOAD)))
        for baseline in ev.against:
            if baseline in R.LOSS_BASELINES:
                continue  # its own inner loop, below
            if baseline == "pretrained":
                value = X.call(self.rt("evaluation.pretrained"), X.call("build", X.name("args")),
                               inner=inner_call, family=family, modules=modules, steps=trial,
                               batch=self.setting(f"{ev.outer}.meta_batch"),
                               iterations=self.value(ev.pretrain_iterations),
                               seed=self.setting("seed"), phase=X.const(ev.outer))
            else:
                value = X.call("build", X.name("args"))
            learners.append((X.const(baseline), value))
        kshot = X.const(None)
        if first is not None and first.unit == "samples":
            step = next(s for s in inner.body if isinstance(s, P.Step) and s.mode == "adapt")
            kshot = X.call(self.rt("evaluation.KShot"), X.const(P.target_name(step.targets[0])),
                           self.value(first.count),
                           self.objective(step.objective.loss, inner, step.loc))
        label = ast.JoinedStr([ast.Constant(f"held_out({inner.tasks}, count = "),
                               ast.FormattedValue(self.value(ev.instances), -1, None),
                               ast.Constant(")")])
        call = X.call(self.rt("evaluation.adaptation"), X.name("SPEC"),
                      ast.Dict([k for k, _ in learners], [v for _, v in learners]),
                      inner=inner_call, family=family, modules=modules, trial=trial,
                      instances=self.value(ev.instances),
                      steps=X.const(list(ev.adapt_steps)),
                      scales=X.const(list(ev.later_lr_scales)), metric=X.const(ev.metric),
                      label=label, seed=self.setting("seed"),
                      data=X.const(first.output.name if first is not None else ""),
                      kshot=kshot)
        if fresh:
            call.keywords.append(ast.keyword("fresh", X.const(tuple(fresh))))
        if variants:
            call.keywords.append(ast.keyword("variants", X.mapping(variants)))
        held_out = self.held_out_family(ev, inner)
        if held_out is not None:  # tasks other than the ones it trained on
            family_kw = next(k for k in call.keywords if k.arg == "family")
            family_kw.value = held_out[1]
            call.keywords[[k.arg for k in call.keywords].index("label")].value = \
                X.const(held_out[0])
        return X.function("evaluate", signature,
                          [X.expr(X.call(X.attr(X.name("run"), "write_eval"), call))],
                          "Held-out tasks: the score after k inner steps from the meta-learned "
                          "θ and from each baseline, on the same tasks and random draws; each "
                          "method's step size after the first step is the candidate that "
                          "scores best on separate validation tasks.", returns=X.const(None))

    def held_out_family(self, ev: P.Evaluate, inner: P.Loop) -> tuple | None:
        """(label, family) of the evaluation's tasks where they are not the inner loop's
        own family (EPG's held-out half circle); None where they are."""
        if len(ev.tasks) > 1:
            self.note("an evaluation after adaptation on several task families", ev.loc)
            return None
        for label, task in ev.tasks:
            if isinstance(task, str):
                return None if task == inner.tasks else (label, self.state(task))
            return label, self.task(task)
        return None

    # ---- the module ----

    def args_class(self) -> ast.ClassDef:
        body: list[ast.stmt] = [X.docstring(
            f"Hyperparameters of {self.p.spec}; defaults from the spec. `--set PATH=VALUE` "
            "overrides one, by the dotted path each field's docstring starts with.")]
        for a in self.p.args:
            body.append(ast.AnnAssign(X.name(a.name, True), X.name(a.type), X.const(a.default),
                                      1))
            body.append(X.docstring(f"{a.path}: {a.doc}"))
        node = ast.ClassDef("Args", [], [], body, [X.name("dataclass")])
        if "type_params" in ast.ClassDef._fields:
            node.type_params = []
        return node

    def settings_table(self) -> ast.Assign:
        keys, values = [], []
        for a in self.p.args:
            given = zip(("low", "high", "low_open", "high_open"), a.bounds[0]) if a.bounds else ()
            bounds = [(k, X.const(v)) for k, v in given if v is not None and v is not False]
            keywords = [("bounds", X.call_kw(self.rt("session.Bounds"), [], bounds))] \
                if bounds else []
            if a.follows:
                keywords.append(("follows", X.const(a.follows)))
            keys.append(X.const(a.path))
            values.append(X.call_kw(self.rt("session.Setting"), [X.const(a.name)], keywords))
        return X.assign("SETTINGS", ast.Dict(keys, values))

    def main(self) -> ast.FunctionDef:
        outer = [l for l in self.p.loops if l.kind == "outer"]
        calls = [X.expr(X.call(X.name(self.p.python("module", l.name)), X.name("args"),
                               X.name("state"), X.name("run"))) for l in outer]
        parse = X.call(self.rt("session.parse"), X.name("Args"), X.name("SETTINGS"), X.name("argv"),
                       iterations=X.const(f"{outer[-1].name}.iterations" if outer else None))
        run = X.call_kw(self.rt("session.Run"), [X.name("SPEC"), X.name("SPEC_SHA256"),
                                              X.name("args"), X.name("options")],
                        [("source", X.name("__file__")), ("spec_source", X.name("SPEC_SOURCE"))]
                        + [(name, self.value(v)) for name, v in self.p.schedule])
        body = [X.assign(["args", "options"], parse),
                ast.With([ast.withitem(run, X.name("run", True))],
                         [X.assign("state", X.call("build", X.name("args"))),
                          X.expr(X.call(X.attr(X.name("run"), "restore"), X.name("state"))),
                          *calls,
                          X.expr(X.call("evaluate", X.name("args"), X.name("state"),
                                        X.name("run")))])]
        return X.function("main", X.arguments(["argv"], [X.const(None)]), body,
                          returns=X.const(None))

    def generate(self) -> str:
        functions = [self.function(f) for f in self.p.functions]
        build = self.build()
        loops = [self.inner_loop(l) if l.kind == "inner" else self.outer_loop(l)
                 for l in self.p.loops]
        loops += [self.member_function(l) for l in self.p.loops if P.member_map(l) is not None]
        loops += [self.inner_loop(self.p.loop(self.p.evaluate.loop), b)
                  for b in P.loss_baselines(self.p)]
        evaluate = self.evaluate()
        main = self.main()
        settings = self.settings_table()
        if self.missing:
            raise NotBuilt(sorted(self.missing, key=lambda m: (m[1].line, m[1].column, m[0])))
        digest = hashlib.sha256(self.p.source.encode()).hexdigest()[:16]
        header = (f"{self.p.spec}: {self.p.title}\n\n"
                  f"Generated by metadsl {__version__} from {self.p.path} (sha256 {digest}).\n"
                  "Edit the spec, not this file. It imports the metadsl runtime (the "
                  "`metadsl` package must be installed):\n"
                  "python train.py [--seed N] [--iterations N] [--set PATH=VALUE ...] "
                  "[--out DIR] [--resume DIR]")
        imports = [ast.ImportFrom("__future__", [ast.alias("annotations")], 0),
                   *[ast.Import([ast.alias(m)]) for m in sorted(self.imports)],
                   ast.ImportFrom("dataclasses", [ast.alias("dataclass")], 0),
                   ast.Import([ast.alias("torch")]),
                   *self.runtime_imports()]
        body = [X.docstring(header), *imports,
                X.assign("SPEC", X.const(self.p.spec)), X.assign("SPEC_SHA256", X.const(digest)),
                self.args_class(), settings, *functions, self.state_class(), build, *loops,
                evaluate,
                X.assign("SPEC_SOURCE", X.call(X.attr(X.const("\n"), "join"),
                                               X.const(self.p.source.split("\n")))),
                main,
                X.if_(X.binary("==", X.name("__name__"), X.const("__main__")),
                      [X.expr(X.call("main"))])]
        return ast.unparse(X.module(body))


class Ctx:
    """Where an expression or statement is lowered: its function (for local names), its
    location, whether run-state meta-parameters are readable, and its loop."""

    def __init__(self, function: str | None, loc: P.Loc, metas: bool = True,
                 loop: P.Loop | None = None, baseline: str | None = None):
        self.function, self.loc, self.metas, self.loop = function, loc, metas, loop
        self.baseline = baseline  # an evaluation baseline's variant of an inner loop


def lower(program: P.Program) -> str:
    """The generated module, formatted by black (deterministic: same spec, same bytes)."""
    import black

    source = Lowering(program).generate()
    compile(source, f"{program.spec}.py", "exec")  # a SyntaxError here is the compiler's bug
    return black.format_str(source, mode=black.Mode(line_length=100))
