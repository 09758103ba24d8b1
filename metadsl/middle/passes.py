"""Loop program → loop program: the middle end's passes, each pure and dumpable.

    resolve_defaults   every registry default a call left out, written into the program
    place_memories     memory scopes honoured: a recurrent memory's reset on its rollouts
                       and model, `memory M' reset never` as a CarryOver after the update
    expand_population_steps
                       `update X by es(...) maximizing F` as Perturb → Map over the
                       members (each runs the inner loop, scores F) → the rule's step
    schedule_rollouts  sequential episodes for a policy with memory, parallel copies for
                       one without; which rollouts each SampleTasks draws for
    mark_through       `through` as one transform: the order, the meta-gradient trace
    plan_diagnostics   a policy update's approximate KL, clip fraction, explained variance
    insert_logs        what each outer iteration logs (returns, losses, meta-parameters)
    extract_settings   every number a run may override becomes an Args field (`--set`)
    mangle_names       the symbol table: spec names → Python names that collide with
                       nothing (keywords, builtins, the generated code's own names)

`run_all` applies them in this order; `check --emit ir` prints the result.
"""

from __future__ import annotations

import builtins
import dataclasses
import keyword

from .. import registry as R
from . import program as P
from ..resources import runtime_modules

# ---- helpers ------------------------------------------------------------------------------


def _map_steps(program: P.Program, fn) -> P.Program:
    """The program with every loop's statements replaced by fn(loop, stmt) (a list); a
    `Repeat`'s own statements first, then the Repeat itself."""
    def mapped(loop: P.Loop, body: tuple) -> tuple:
        out = []
        for stmt in body:
            if isinstance(stmt, P.Repeat):
                stmt = dataclasses.replace(stmt, body=mapped(loop, stmt.body))
            out.extend(fn(loop, stmt))
        return tuple(out)

    return program.replace(loops=tuple(dataclasses.replace(loop, body=mapped(loop, loop.body))
                                       for loop in program.loops))


def _with_defaults(given: tuple, entry: R.Entry | None) -> tuple:
    if entry is None:
        return given
    values = dict(given)
    out = []
    for p in entry.params:
        if p.name in values:
            out.append((p.name, values[p.name]))
        elif not p.required and p.built:
            out.append((p.name, P.Const(_plain(p.default), _const_type(p))))
    return tuple(out)


def _plain(value):
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, dict):
        return tuple(value.items())
    return value


def _const_type(p: R.P) -> str:
    return {"int": "int", "num": "float", "bool": "bool", "str": "str", "symbol": "symbol",
            "list": "list", "dict": "dict"}.get(p.type, p.type)


# ---- passes ---------------------------------------------------------------------------------


def resolve_defaults(program: P.Program) -> P.Program:
    """Write every registry default a call left out into the program, so that the dump and
    the lowering see the full configuration."""
    tasks = tuple(dataclasses.replace(t, args=_with_defaults(t.args, R.REGISTRY[t.source]))
                  for t in program.tasks)
    models = tuple(dataclasses.replace(m, core_args=_with_defaults(m.core_args,
                                                                   R.REGISTRY[m.core]))
                   for m in program.models)
    metas = tuple(dataclasses.replace(m, args=_with_defaults(m.args, R.REGISTRY[m.constructor]))
                  for m in program.metas)
    memories = tuple(dataclasses.replace(m, args=_with_defaults(m.args,
                                                                R.REGISTRY[m.constructor]))
                     if m.constructor is not None else m for m in program.memories)

    def step(loop: P.Loop, stmt):
        if isinstance(stmt, P.Rollout) and isinstance(stmt.policy, P.PolicyCall):
            policy = stmt.policy
            return [dataclasses.replace(stmt, policy=dataclasses.replace(
                policy, args=_with_defaults(policy.args, R.REGISTRY[policy.name])))]
        if not isinstance(stmt, P.Step):
            return [stmt]
        entry = R.REGISTRY.get(stmt.rule.name)
        if entry is not None:  # parameters for facts this step lacks are not defaulted
            entry = dataclasses.replace(entry, params=tuple(
                p for p in entry.params
                if p.applies_to is None or getattr(stmt, p.applies_to)))
        rule = dataclasses.replace(stmt.rule, args=_with_defaults(stmt.rule.args, entry))
        through = stmt.through
        if through is not None:
            order = through.order or P.Const(R.THROUGH.param("order").default, "int")
            trace = through.trace or P.Const(float(R.THROUGH.param("trace").default), "float")
            through = dataclasses.replace(through, order=order, trace=trace)
        return [dataclasses.replace(stmt, rule=rule, through=through)]

    given = dict(program.schedule)
    honoured = ("checkpoint_every", "log_every", "threads") + \
        (("workers", "address") if program.execution == "ray" else ())
    schedule = tuple((p.name, given.get(p.name) or P.Const(p.default, p.type))
                     for p in R.SETTINGS["schedule"] if p.name in honoured)
    program = _map_steps(program.replace(tasks=tasks, models=models, metas=metas,
                                         memories=memories, schedule=schedule), step)
    loops = []
    for loop in program.loops:
        given = dict(loop.settings)
        settings = tuple((p.name, given.get(p.name) or P.Const(p.default, "int"))
                         for p in R.SETTINGS[loop.kind] if p.name not in R.REPEAT_SETTINGS)
        loops.append(dataclasses.replace(loop, settings=settings))
    # an outer loop samples its meta-batch of tasks
    return _map_steps(program.replace(loops=tuple(loops)), lambda loop, st: [
        dataclasses.replace(st, count=loop.setting("meta_batch"))
        if isinstance(st, P.SampleTasks) else st])


def place_memories(program: P.Program) -> P.Program:
    """Honour each memory's reset scope. A model's hidden state reset per task is a fresh
    state at the start of each rollout; per episode it is also cleared where an episode
    ended (the model's `reset`); an episodic_lstm's store (`M.core.episodic`) is part of
    that state, fresh for each trial, so it lasts one task. Adapted parameters kept
    (`reset never`) are carried into θ after the outer loop's update; adapted parameters
    `reinit per task` start each task from a fresh draw (the model's `reinit`). A store with a
    constructor is reset by a `Reset` statement at the start of the loop its scope names."""
    reset_of: dict[str, str] = {}
    carried: list[str] = []
    fresh: list[str] = []
    unsupported = list(program.unsupported)
    resets: dict[str, list] = {}
    for mem in program.memories:
        if isinstance(mem.target, P.Params) and mem.key.endswith(".episodic"):
            # an episodic_lstm's store: built fresh for each trial, so it lasts one task
            if mem.scope != "task":
                unsupported.append((f"memory {mem.key} reset per {mem.scope} (the episodic "
                                    "store lasts one task: reset per task)", mem.loc))
        elif isinstance(mem.target, P.Params):
            if mem.scope in ("task", "episode"):
                reset_of[mem.target.model] = mem.scope
            else:
                unsupported.append((f"memory {mem.key} reset per {mem.scope}", mem.loc))
        elif isinstance(mem.target, P.Adapted):
            if mem.scope == "never":
                carried.append(mem.target.model)
            elif mem.scope == "task" and mem.fresh:
                fresh.append(mem.target.model)
            elif mem.scope != "task":
                unsupported.append((f"memory {mem.key} reset per {mem.scope}", mem.loc))
        elif mem.constructor is not None:
            resets.setdefault(mem.scope, []).append(P.Reset(P.Memory(mem.key), mem.scope,
                                                            mem.loc))
    # the checker gave every stateful model a scope (written, or the default)
    models = tuple(dataclasses.replace(m, reset=reset_of[m.name] if m.stateful else None,
                                       reinit=m.name in fresh)
                   for m in program.models)
    loops = []
    for loop in program.loops:
        body = list(loop.body)
        if loop.kind == "inner":
            body = resets.get("task", []) + body
        elif loop.over is not None:
            adapted = P.adapted_models(program.loop(loop.over))
            body = resets.get("iteration", []) + body + \
                [P.CarryOver(m, loop.loc) for m in carried if m in adapted]
        loops.append(dataclasses.replace(loop, body=tuple(body)))
    return program.replace(models=models, loops=tuple(loops), unsupported=tuple(unsupported))


def schedule_rollouts(program: P.Program) -> P.Program:
    """A policy with memory plays a trial's episodes one after another in one environment
    per task (its memory spans them, and so do its returns); one without plays N episodes
    (or samples) as N parallel copies of the task, each copy's trial one episode, and a
    step budget in one environment per task, its returns stopping at each episode's end.
    Each outer loop draws its task instances for every rollout that acts in them: its
    inner loop's and its own."""
    stateful = {m.name for m in program.models if m.stateful}

    def schedule(loop: P.Loop, stmt):
        if not isinstance(stmt, P.Rollout):
            return [stmt]
        if P.acting_model(stmt.policy) in stateful:
            return [dataclasses.replace(stmt, schedule="sequential", memory="trial")]
        if stmt.unit == "steps":
            return [dataclasses.replace(stmt, schedule="sequential", memory="episode")]
        return [dataclasses.replace(stmt, schedule="parallel", memory="trial")]

    program = _map_steps(program, schedule)

    def trials(loop: P.Loop, stmt):
        if isinstance(stmt, P.SampleTasks) and loop.over is not None:
            acting = P.rollouts(program.loop(loop.over)) + P.rollouts(loop)
            return [dataclasses.replace(stmt, trials=tuple(r.output for r in acting))]
        return [stmt]

    return _map_steps(program, trials)


def mark_through(program: P.Program) -> P.Program:
    """`through INNER`: the outer step differentiates a closure that replays the inner
    program on the same data (order 2 keeps the inner gradients in the graph). With
    `trace > 0` and a carried-over model, the meta-gradient trace dθ/dη is kept for it —
    where the step is a plain gradient step on scalar meta-parameters. An outer step is
    one step: epochs and minibatches other than 1 are not built for it."""
    carried = {s.model for l in program.loops for s in l.statements
               if isinstance(s, P.CarryOver)}
    scalar = {m.name for m in program.metas if "scalar" in R.REGISTRY[m.constructor].traits}
    unsupported = list(program.unsupported)

    def mark(loop: P.Loop, stmt):
        if not isinstance(stmt, P.Step) or stmt.through is None:
            return [stmt]
        args = []
        for name, value in stmt.rule.args:
            if name in ("epochs", "minibatches"):
                if isinstance(value, P.Const) and value.value != 1:
                    unsupported.append((f"`{name} = {value.value}` in an update through an "
                                        "inner loop (an outer step is one step)", stmt.loc))
                continue
            args.append((name, value))
        kept = [m for m in P.adapted_models(program.loop(stmt.through.loop)) if m in carried]
        traceable = "line_search" not in stmt.rule.traits and len(kept) == 1 and \
            all(isinstance(t, P.Meta) and t.name in scalar for t in stmt.targets)
        trace = stmt.through.trace
        wants = isinstance(trace, P.Const) and trace.value > 0
        if wants and not traceable:
            unsupported.append(("a meta-gradient trace (`trace > 0`) on anything but scalar "
                                "meta-parameters stepped by a gradient optimizer", stmt.loc))
        through = dataclasses.replace(stmt.through,
                                      traced_model=kept[0] if traceable else None)
        rule = dataclasses.replace(stmt.rule, args=tuple(args))
        return [dataclasses.replace(stmt, rule=rule, through=through)]

    program = _map_steps(program, mark)
    return program.replace(unsupported=tuple(unsupported))


def expand_population_steps(program: P.Program) -> P.Program:
    """`update X by es(...) maximizing F(inner)` runs a generation: Perturb X into the
    rule's population, Map the inner loop over the members (each computing F on the
    batch's tasks), then the rule's step from the members' fitnesses. The outer loop's
    Map over tasks becomes that Map over members."""
    unsupported = list(program.unsupported)
    loops = []
    for loop in program.loops:
        steps = [s for s in loop.statements if isinstance(s, P.Step) and
                 isinstance(s.objective, P.Maximize) and "evolutionary" in s.rule.traits]
        if not steps:
            loops.append(loop)
            continue
        step = steps[0]
        fitness = step.objective.fitness
        why = "two evolutionary updates in one loop" if len(steps) > 1 else \
            "an evolutionary update of anything but one model's parameters" \
            if len(step.targets) != 1 or not isinstance(step.targets[0], P.Params) else \
            "an evolutionary update in an outer loop without an inner loop" \
            if loop.over is None else \
            f"a fitness of another loop than `{loop.over}`, the one this loop runs" \
            if isinstance(fitness, P.Fitness) and fitness.loop != loop.over else None
        if why is not None or not isinstance(fitness, P.Fitness):
            if why is not None:
                unsupported.append((why, step.loc))
            loops.append(loop)
            continue
        model = step.targets[0].model
        body = []
        for stmt in loop.body:
            if isinstance(stmt, P.Map) and stmt.index == "tasks":
                body += [P.Perturb(step.targets[0], step.loc),
                         P.Map("members", stmt.loop, program.execution, model,
                               (("fitness", fitness),), stmt.loc)]
            elif stmt is step:
                body.append(dataclasses.replace(step, objective=P.Maximize(P.Local("fitness"))))
            else:
                body.append(stmt)
        loops.append(dataclasses.replace(loop, body=tuple(body)))
    return program.replace(loops=tuple(loops), unsupported=tuple(unsupported))


def mark_target_networks(program: P.Program) -> P.Program:
    """A step whose loss reads `target(...)` updates a target network with its model: the
    run state keeps one per such model (the loss's target parameters, as TorchRL's losses
    hold theirs)."""
    def mark(loop: P.Loop, s):
        if isinstance(s, P.Step) and isinstance(s.objective, P.Minimize) and any(
                isinstance(n, P.HeadCall) and n.target
                for n in P.loss_nodes(program, s.objective.loss)):
            return [dataclasses.replace(s, target_network=True)]
        return [s]

    return _map_steps(program, mark)


def plan_diagnostics(program: P.Program) -> P.Program:
    """An in-place update of a policy on data a policy collected reports the standard
    diagnostics: the approximate KL to the behaviour policy, the clip fraction where the
    objective has a `clip`, the value head's explained variance at its `gamma`."""
    functions = {f.name: f for f in program.functions}

    def plan(loop: P.Loop, s):
        if not (isinstance(s, P.Step) and P.in_place_gradient_step(s) and
                isinstance(s.targets[0], P.Params)):
            return [s]
        made_by = P.producer(program, s.objective.data)
        heads = dict(program.model(s.targets[0].model).heads) \
            if s.targets[0].model in {m.name for m in program.models} else {}
        if not isinstance(made_by, P.Rollout) or made_by.unit == "samples" or "pi" not in heads:
            return [s]
        loss = s.objective.loss
        given = dict(loss.kwargs) if isinstance(loss, P.Call) else {}
        params = dict(functions[loss.func].params) if isinstance(loss, P.Call) else {}
        names, args = ["approx_kl"], []
        for arg, stat in (("clip", "clip_fraction"), ("gamma", "explained_variance")):
            if stat == "explained_variance" and "v" not in heads:
                continue
            value = given.get(arg, params.get(arg))
            if isinstance(value, P.Lit):
                value = P.Const(value.value, "float")
            if isinstance(value, (P.Const, P.Setting)):
                names.append(stat)
                args.append((arg, value))
        return [dataclasses.replace(s, diagnostics=tuple(names), diagnostic_args=tuple(args))]

    return _map_steps(program, plan)


# what an evolutionary rule's step reports (runtime/learning/es.py)
EVOLUTIONARY_STATS = ("fitness_mean", "fitness_max", "sigma", "lr", "grad_norm")


def insert_logs(program: P.Program) -> P.Program:
    """Each outer iteration logs the return of the inner loop's first collect (before
    adaptation) and of every collect of its own (after it; the last inner round where
    there is none), each step's loss, each adaptation's inner loss, the statistics of
    the rule's step (TRPO's KL and improvement), and the scalar meta-parameters."""
    scalar = [m.name for m in program.metas if "scalar" in R.REGISTRY[m.constructor].traits]
    loops = []
    for loop in program.loops:
        if loop.kind != "outer" or loop.over is None:
            loops.append(loop)
            continue
        members = P.member_map(loop)
        if members is not None:  # a generation: its fitnesses, σ, lr, the estimate's norm
            metrics = [P.Metric(f"charts/{stat}", "step_stat", (members.target, stat))
                       for stat in EVOLUTIONARY_STATS]
            loops.append(dataclasses.replace(loop, body=loop.body + (
                P.Log(tuple(metrics), (P.Local("env_steps"),), loop.loc),)))
            continue
        inner = program.loop(loop.over)
        first = next(iter(P.rollouts(inner)), None)
        own = P.rollouts(loop)
        metrics: list[P.Metric] = []
        if first is not None and first.unit != "samples":
            metrics.append(P.Metric("charts/return", "score", (first.output, 0)))
            for r in own:
                name = "charts/adapted_return" if isinstance(r.policy, P.Adapted) else \
                    f"charts/{r.output.name}_return"
                metrics.append(P.Metric(name, "score", (r.output, -1)))
            if not own and inner.adapts:
                metrics.append(P.Metric("charts/last_round_return", "score", (first.output, -1)))
        for s in loop.statements:
            if isinstance(s, P.Step) and isinstance(s.objective, (P.Minimize, P.Maximize)):
                target = P.step_label(s)
                if P.in_place_gradient_step(s):  # the statistics rules.minimize returns
                    metrics += [P.Metric(f"losses/{target}" + (f"_{d}" if d != "loss" else ""),
                                         "step_stat", (target, d))
                                for d in ("loss", *s.diagnostics)]
                else:
                    metrics.append(P.Metric(f"losses/{target}", "loss", target))
                if "line_search" in s.rule.traits:
                    metrics.append(P.Metric(f"charts/{target}_kl", "rule_stat", (target, "kl")))
                    metrics.append(P.Metric(f"losses/{target}_improvement", "rule_stat",
                                            (target, "improvement")))
        for s in inner.statements:
            if isinstance(s, P.Step) and s.mode == "adapt":
                target = P.target_name(s.targets[0])
                metrics.append(P.Metric(f"losses/{target}_inner", "inner_loss", target))
        metrics += [P.Metric(f"charts/{m}", "meta", P.Meta(m)) for m in scalar]
        counted = tuple(r.output for r in ([first] if first is not None else []) + own)
        body = loop.body + (P.Log(tuple(metrics), counted, loop.loc),)
        loops.append(dataclasses.replace(loop, body=body))
    return program.replace(loops=tuple(loops))


# ---- Args extraction ---------------------------------------------------------------------------


class _Settings:
    """Collects Args fields; `make` turns a constant into a Setting (or keeps it)."""

    def __init__(self):
        self.fields: dict[str, P.ArgField] = {}

    def make(self, path: str, value, param: R.P | None, doc: str):
        if not isinstance(value, P.Const) or value.type not in ("int", "float", "bool", "str"):
            return value
        ptype = value.type
        if param is not None and param.type == "num":
            ptype = "float"
        default = float(value.value) if ptype == "float" else value.value
        bounds = ()
        if param is not None and (param.low is not None or param.high is not None):
            bounds = ((param.low, param.high, param.low_open, param.high_open),)
        if path not in self.fields:
            self.fields[path] = P.ArgField(path, "", ptype, default, doc, bounds)
        return P.Setting(path, ptype)

    def entry_args(self, prefix: str, args: tuple, entry: R.Entry) -> tuple:
        out = []
        for name, value in args:
            p = entry.param(name)
            doc = f"{entry.name}({name})" + (f": {p.doc}" if p is not None and p.doc else "")
            out.append((name, self.make(f"{prefix}.{name}", value, p, doc)))
        return tuple(out)


def extract_settings(program: P.Program) -> P.Program:
    """Every constant a run may override becomes a field of the generated Args, at the
    dotted path `--set` takes: `TASKS.param`, `MODEL.param` (its core), `META.param`,
    `LOOP.setting`, `LOOP.TARGET.param` (the rule), `LOOP.TARGET.LOSS.arg` (a loss's
    keyword argument), `LOOP.DATA.count`, `LOOP.through.order|trace`, `evaluate.…`, `seed`.
    Lists, dictionaries and symbols stay literals."""
    s = _Settings()
    params = {p.name: p for p in R.SETTINGS["schedule"]}
    s.make("seed", P.Const(program.seed, "int"), params["seed"], "schedule: the random seed")
    schedule = tuple((name, s.make(f"schedule.{name}", value, params[name],
                                   f"schedule: {params[name].doc}"))
                     for name, value in program.schedule)
    tasks = tuple(dataclasses.replace(t, args=s.entry_args(t.name, t.args, R.REGISTRY[t.source]))
                  for t in program.tasks)
    models = tuple(dataclasses.replace(m, core_args=s.entry_args(m.name, m.core_args,
                                                                 R.REGISTRY[m.core]))
                   for m in program.models)
    metas = tuple(dataclasses.replace(m, args=s.entry_args(m.name, m.args,
                                                           R.REGISTRY[m.constructor]))
                  for m in program.metas)
    memories = tuple(dataclasses.replace(m, args=s.entry_args(m.key, m.args,
                                                              R.REGISTRY[m.constructor]))
                     if m.constructor is not None else m for m in program.memories)

    def stmt_settings(loop: P.Loop, stmt):
        if isinstance(stmt, P.SampleTasks):  # the meta-batch: the loop's own setting
            return [dataclasses.replace(stmt, count=s.make(
                f"{loop.name}.meta_batch", stmt.count, R.setting("outer", "meta_batch"), ""))]
        if isinstance(stmt, (P.Rollout, P.SampleBuffer)):
            count = s.make(f"{loop.name}.{stmt.output.name}.count", stmt.count,
                           R.P("count", "int", low=1), f"collect N {stmt.unit} per task")
            stmt = dataclasses.replace(stmt, count=count)
            if isinstance(stmt, P.Rollout) and isinstance(stmt.policy, P.PolicyCall):
                policy = stmt.policy
                args = s.entry_args(f"{loop.name}.{stmt.output.name}.{policy.name}",
                                    policy.args, R.REGISTRY[policy.name])
                stmt = dataclasses.replace(stmt, policy=dataclasses.replace(policy, args=args))
            return [stmt]
        if isinstance(stmt, P.Repeat):
            return [dataclasses.replace(stmt, **{
                name: s.make(f"{loop.name}.{name}", getattr(stmt, name), R.setting("outer", name),
                             R.setting("outer", name).doc) for name in R.REPEAT_SETTINGS})]
        if not isinstance(stmt, P.Step):
            return [stmt]
        target = P.step_label(stmt)
        entry = R.REGISTRY.get(stmt.rule.name)
        rule = stmt.rule
        if entry is not None:
            rule = dataclasses.replace(rule, args=s.entry_args(f"{loop.name}.{target}",
                                                               rule.args, entry))
        objective, diagnostic_args = stmt.objective, stmt.diagnostic_args
        if isinstance(objective, P.Minimize) and isinstance(objective.loss, P.Call):
            call = objective.loss
            kwargs = tuple((k, s.make(f"{loop.name}.{target}.{call.func}.{k}",
                                      P.Const(v.value, _lit_type(v.value)), None,
                                      f"argument of {call.func}")
                            if isinstance(v, P.Lit) else v) for k, v in call.kwargs)
            objective = dataclasses.replace(objective,
                                            loss=dataclasses.replace(call, kwargs=kwargs))
            given = dict(kwargs)  # a diagnostic reads the objective's own setting
            diagnostic_args = tuple((k, given.get(k, v)) for k, v in diagnostic_args)
        through = stmt.through
        if through is not None:
            order = s.make(f"{loop.name}.through.order", through.order,
                           R.THROUGH.param("order"), R.THROUGH.param("order").doc)
            trace = s.make(f"{loop.name}.through.trace", through.trace,
                           R.THROUGH.param("trace"), R.THROUGH.param("trace").doc) \
                if through.traced_model else through.trace
            through = dataclasses.replace(through, order=order, trace=trace)
        return [dataclasses.replace(stmt, rule=rule, objective=objective, through=through,
                                    diagnostic_args=diagnostic_args)]

    loops = []
    for loop in program.loops:
        params = {p.name: p for p in R.SETTINGS[loop.kind]}
        settings = tuple((k, s.make(f"{loop.name}.{k}", v, params[k], params[k].doc))
                         for k, v in loop.settings)
        loops.append(dataclasses.replace(loop, settings=settings))
    program = program.replace(tasks=tasks, models=models, metas=metas, memories=memories,
                              loops=tuple(loops), schedule=schedule)
    program = _map_steps(program, stmt_settings)
    ev = program.evaluate
    if ev.kind != "none":
        instances = s.make("evaluate.instances", ev.instances, R.setting("evaluate", "instances"),
                           "held-out task instances")
        pretrain = None
        if ev.kind == "after_adaptation" and "pretrained" in ev.against and ev.outer:
            given = ev.pretrain_iterations
            explicit = isinstance(given, P.Const) and given.value
            budget = given.value if explicit else \
                program_default(program.loop(ev.outer).setting("iterations"), s)
            param = R.setting("evaluate", "pretrain_iterations")
            pretrain = s.make("evaluate.pretrain_iterations", P.Const(budget, "int"), param,
                              param.doc)
            if not explicit:
                s.fields["evaluate.pretrain_iterations"] = dataclasses.replace(
                    s.fields["evaluate.pretrain_iterations"], follows=f"{ev.outer}.iterations")
        ev = dataclasses.replace(ev, instances=instances, pretrain_iterations=pretrain)
    return program.replace(evaluate=ev, args=tuple(s.fields.values()))


def program_default(value, settings: _Settings):
    """The default of a value that may already be a Setting."""
    if isinstance(value, P.Setting):
        return settings.fields[value.path].default
    return value.value


def _lit_type(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


# ---- the symbol table ---------------------------------------------------------------------------

# Names the generated module defines or imports at its top level, and every runtime module
# it may import (read from the runtime's layout: a loop named `episodic` must not shadow it).
MODULE_NAMES = frozenset({
    "annotations", "dataclass", "functools", "torch", "Args", "SETTINGS",
    "SPEC", "SPEC_SHA256", "SPEC_SOURCE", "State", "build", "evaluate", "main"}) | \
    frozenset(runtime_modules())
# Attributes of the run state that are not spec names.
STATE_NAMES = frozenset({"gen", "replace", "state_dict", "load_state_dict"})
# Locals and parameters of the generated loop functions and losses.
LOCAL_NAMES = frozenset({
    "args", "state", "run", "instances", "params", "steps", "order", "replay",
    "later_lr_scale", "rounds", "k", "scale", "adapted", "outer", "iteration", "env",
    "batch", "heads", "progress", "_"})
# Python's own names. Builtins starting with `_` are left out: which of them exist depends
# on how Python runs (an interactive `_`), and the same spec must give the same module.
_RESERVED = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | \
    frozenset(n for n in dir(builtins) if not n.startswith("_"))


class Symbols:
    """Spec names → Python identifiers, injective per scope: a prime becomes `_prime`; a
    name that would collide with a keyword, a builtin, a generated name or another spec
    name's spelling gets a trailing `_` until it is free."""

    def __init__(self):
        self.table: dict[tuple[str, str], str] = {}
        self.taken: dict[str, set[str]] = {}

    def add(self, scope: str, name: str, reserved: frozenset = frozenset(),
            also: tuple[str, ...] = (), spelling: str | None = None) -> str:
        """Name `name` in `scope`; `also`: scopes whose names it must not collide with;
        `spelling`: the Python name wanted, where it is not the spec name's own."""
        if (scope, name) in self.table:
            return self.table[(scope, name)]
        base = (spelling or name).split(":")[-1].replace("'", "_prime").replace(".", "_")
        candidate = base
        taken = set().union(*(self.taken.get(s, set()) for s in (scope, *also)))
        while candidate in _RESERVED or candidate in reserved or candidate in taken or \
                not candidate.isidentifier() or candidate.startswith("__"):
            # private or dunder names mean something to Python: n__x
            candidate = "n" + candidate if candidate.startswith("__") else candidate + "_"
        self.table[(scope, name)] = candidate
        self.taken.setdefault(scope, set()).add(candidate)
        return candidate

    def as_tuple(self) -> tuple:
        return tuple((scope, name, py) for (scope, name), py in self.table.items())


def mangle_names(program: P.Program) -> P.Program:
    """Give every spec name its Python name (module functions, state attributes, locals,
    Args fields) so that no spec name can shadow or break the generated code."""
    sym = Symbols()
    module = MODULE_NAMES | LOCAL_NAMES  # functions are called where the locals are in scope
    for loop in program.loops:
        sym.add("module", loop.name, module)
    for loop in program.loops:
        if P.member_map(loop) is not None:  # the body one member of its generation runs
            sym.add("module", "member:" + loop.name, module, spelling=loop.name + "_member")
    for baseline in P.loss_baselines(program):  # an inner loop trained by a baseline's loss
        loop = program.evaluate.loop
        sym.add("module", f"{loop}:{baseline}", module, spelling=f"{loop}_{baseline}")
    for fn in program.functions:
        sym.add("module", fn.name, module)
        for name, _ in fn.params:
            sym.add(f"function:{fn.name}", name, LOCAL_NAMES | MODULE_NAMES, also=("module",))
        for name, _ in fn.lets:
            sym.add(f"function:{fn.name}", name, LOCAL_NAMES | MODULE_NAMES, also=("module",))
    # build() binds state parts as its locals: they must not shadow its own names
    state_reserved = STATE_NAMES | LOCAL_NAMES | MODULE_NAMES
    for decl in (*program.tasks, *program.models, *program.metas):
        sym.add("state", decl.name, state_reserved)
    for memory in program.memories:
        if memory.constructor is not None:
            sym.add("state", memory.key, state_reserved)
    for loop in program.loops:
        for stmt in loop.statements:
            if isinstance(stmt, P.Step) and P.has_optimizer(stmt):
                sym.add("state", P.optimizer_key(loop.name, P.step_label(stmt)),
                        state_reserved, spelling="opt_" + P.step_label(stmt))
            if isinstance(stmt, P.Step) and stmt.target_network:
                sym.add("state", P.target_network_key(P.target_name(stmt.targets[0])),
                        state_reserved, spelling="target_" + P.target_name(stmt.targets[0]))
            if isinstance(stmt, P.Step) and stmt.through is not None and \
                    stmt.through.traced_model:
                sym.add("state", "trace:" + stmt.through.traced_model, state_reserved,
                        spelling="trace_" + stmt.through.traced_model)
    for loop in program.loops:
        scope = f"loop:{loop.name}"
        visible = loop.statements + (program.loop(loop.over).statements if loop.over else ())
        for stmt in visible:
            if isinstance(stmt, (P.Rollout, P.SampleBuffer)):
                sym.add(scope, stmt.output.name, LOCAL_NAMES | MODULE_NAMES, also=("module",))
        for stmt in loop.statements:
            if isinstance(stmt, P.Step):
                label = P.step_label(stmt)
                sym.add(scope, "stats:" + label, LOCAL_NAMES | MODULE_NAMES, also=("module",),
                        spelling="stats_" + label)
                sym.add(scope, "loss:" + label, LOCAL_NAMES | MODULE_NAMES, also=("module",),
                        spelling="loss_" + label)
    args = []
    for field in program.args:
        name = sym.add("args", field.path, spelling=args_field_name(field.path))
        args.append(dataclasses.replace(field, name=name))
    return program.replace(symbols=sym.as_tuple(), args=tuple(args))


def args_field_name(path: str) -> str:
    """The readable base spelling of an Args field: `meta.tau'.count` → meta__tau_prime__count
    (the symbol table makes it unique)."""
    return "__".join(part.replace("'", "_prime") for part in path.split("."))


PASSES = (mark_target_networks, resolve_defaults, place_memories, expand_population_steps,
          schedule_rollouts,
          mark_through, plan_diagnostics,
          insert_logs, extract_settings, mangle_names)


def run_all(program: P.Program) -> P.Program:
    for p in PASSES:
        program = p(program)
    return program
