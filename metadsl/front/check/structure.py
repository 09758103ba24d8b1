"""Pass 3, structure: what the loops can honour and reach — memory reset scopes,
RL²-style inputs, meta-parameter reachability, differentiability of `through`,
rule/target kinds, unused declarations and settings."""

from __future__ import annotations

from .. import ast as A
from ... import registry as R
from ...diagnostics import did_you_mean, one_of
from .facts import LoopInfo, ModelInfo, bind_args, ref


class Structure:
    """The structural pass, a part of the Checker (it shares the checker's tables)."""

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
                self.check_columns(loop, stmt, refs)
                self.check_rule_targets(loop, stmt, rule, [t for t in targets if t], refs)
                if not self.broken:
                    self.check_heads_exist(loop, stmt, refs, targets, through)
            if through is not None:
                self.check_through(stmt, through)
        self.check_metas()
        self.check_memories()
        self.evaluated = self.evaluated_loop()

    def evaluated_loop(self) -> str | None:
        """The inner loop `evaluate` measures, decided here once: the one it names, or the
        one the last outer loop runs (the last phase's); later phases read only this."""
        settings = getattr(self, "evaluate_settings", {})
        if "loop" in settings:
            name = self.expect_declared(settings["loop"].value, "loop", "`loop`")
            if name is not None and self.loops[name].decl.kind != "inner":
                self.error("E0209", f"`loop` names an inner loop; '{name}' is an outer loop",
                           settings["loop"].value.span, hint=one_of(
                               [n for n, l in self.loops.items() if l.decl.kind == "inner"]))
                return None
        else:
            run = [l.decl.over.id for l in self.loops.values()
                   if l.decl.kind == "outer" and l.decl.over is not None]
            inner = [n for n, l in self.loops.items() if l.decl.kind == "inner"]
            name = run[-1] if run else inner[-1] if inner else None
        return name if name in self.loops else None

    def carried_over(self) -> set[str]:
        """Models whose adapted parameters carry over into θ (`memory M' reset never`)."""
        return {d.target.parts[0].rstrip("'") for d in self.memories.values()
                if d.target.parts[0].endswith("'") and d.scope.id == "never"}

    def evaluation_kind(self) -> str:
        """How the evaluated loop is measured: after k inner steps where it adapts
        parameters per task; held out where it adapts none, or carries them over (online
        learning: its adaptation is the training itself)."""
        if self.evaluated is None or "evaluate" not in self.blocks:
            return "none"
        return "after_adaptation" if self.loops[self.evaluated].adapted - self.carried_over() \
            else "held_out"

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
                                    out.add(ref("meta", arg.value.id))
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
            for kind, name in targets:
                if kind == "model" and ref("model", name) not in reach and not any(
                        ref("head", h) in reach for h in self.models[name].heads):
                    self.error("E0403", f"the fitness does not depend on '{name}'",
                               obj.span, hint=f"evaluate a loop or policy that uses '{name}'")
            self.check_population(stmt, rule)
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
            writes = sorted(t.split(":", 1)[1] for t in traits if t.startswith("writes:"))
            for kind, name in targets:
                entry = self.memory_entry(name) if kind == "memory" else None
                if entry is None or entry.name not in writes:
                    self.error("E0406", f"'{rule_name}' writes to a {' or '.join(writes)} memory;"
                               f" '{name}' is not one", stmt.targets[0].span,
                               hint=f"declare `memory M = {writes[0]}(...)`, or write with the "
                               "rule of its kind (table_write, dnd_write)")
            if not isinstance(obj, A.Minimize):
                self.error("E0406", f"'{rule_name}' writes values computed `on EXPR over DATA`",
                           obj.span)
            return
        # gradient rules
        if not isinstance(obj, A.Minimize):
            self.error("E0406", f"'{rule_name}' minimises a loss `on LOSS over DATA`; "
                       "`maximizing` needs an evolutionary rule such as es", obj.span)
            return
        self.check_target_network(stmt, rule, refs)
        for (kind, name), target in zip(targets, stmt.targets):
            if kind == "memory":
                entry = self.memory_entry(name)
                if entry is None or "differentiable" not in entry.traits:
                    self.error("E0406", f"'{rule_name}' follows gradients; memory '{name}' has "
                               "no parameters", target.span)
                elif ref("memory", name) not in refs:
                    self.error("E0403", f"the loss does not reach memory '{name}'", obj.loss.span,
                               hint=f"read it in the loss, e.g. lookup({name}, ...)")
            elif kind == "tasks":
                self.error("E0406", f"'{rule_name}' cannot update tasks '{name}'", target.span)
            elif kind == "model" and name not in self.broken:
                info = self.models[name]
                reached = ref("model", name) in refs or any(
                    ref("head", h) in refs or ref("attr", f"{name}.{h}") in refs
                    for h in info.heads)
                if not reached:
                    used = sorted(h for k, h in refs if k == "head")
                    self.error("E0403", f"the loss does not reach the parameters of '{name}'",
                               obj.loss.span,
                               hint=(f"it uses heads {', '.join(used)}; '{name}' has "
                                     if used else f"it uses no head of '{name}', which has ")
                               + (", ".join(sorted(info.heads)) or "no heads"))

    def check_population(self, stmt, rule: R.Entry) -> None:
        """A population that its rule and the schedule can run: mirrored members come in
        pairs, and Ray workers beyond the members would sit idle."""
        if not isinstance(stmt.rule, A.Call):
            return
        given = bind_args(stmt.rule, rule)
        defaults = {p.name: p.default for p in rule.params}
        population = self.const(given.get("population"))
        if population is None:
            population = defaults.get("population")
        mirrored = given.get("mirrored")
        mirrored = mirrored.id == "true" if isinstance(mirrored, A.Name) else \
            defaults.get("mirrored", False)
        where = given.get("population", stmt.rule)
        if mirrored and population is not None and population >= 2 and int(population) % 2:
            self.error("E0207", f"population = {int(population)} is odd, and mirrored sampling "
                       "draws its members in pairs θ ± σε", where.span,
                       hint=f"population = {int(population) + 1}, or mirrored = false")
        workers = getattr(self, "schedule_settings", {}).get("workers")
        count = self.const(workers.value) if workers is not None else None
        if count is not None and population is not None and count > population:
            self.error("E0207", f"workers = {int(count)} is more than the population of "
                       f"{int(population)}: a member is the smallest piece of work",
                       workers.span, hint=f"workers = {int(population)} or fewer")

    def check_target_network(self, stmt, rule: R.Entry, refs: set) -> None:
        """A loss that reads `target(...)` needs a rule that moves the target network."""
        read = sorted(name for kind, name in refs if kind == "target")
        rate = bind_args(stmt.rule, rule).get("polyak") if rule.param("polyak") else None
        if not read:
            if rate is not None:
                self.error("E0213", "`polyak` has no effect: the loss reads no target network",
                           rate.span, hint="read one with `target(v)` or `target(q)(next_obs)`")
            return
        if rate is None or not self.const(rate):
            has = rule.param("polyak") is not None
            why = "is given no `polyak` rate" if has and rate is None else \
                "has `polyak = 0`" if has else "has no `polyak` rate"
            self.error("E0411", f"the loss reads {read[0]}, but '{rule.name}' {why}: the "
                       "target network would never move", stmt.rule.span,
                       hint=f"`{rule.name}(..., polyak = 0.01)`" if has else
                       "use a rule with a `polyak` rate, such as adam")

    def check_columns(self, loop: LoopInfo, stmt, refs: set) -> None:
        """A loss reads stored columns only over samples of the buffer that stores them."""
        read = sorted(name for kind, name in refs if kind == "column")
        if not read or not isinstance(stmt.objective, A.Minimize):
            return
        data = stmt.objective.data
        made = self.visible_data(loop).get(data.id)
        buffer = made[1].policy.id if made is not None and made[1].source == "from" and \
            isinstance(made[1].policy, A.Name) else None
        stored = {n for n, (store, _) in self.columns.items() if store.buffer.id == buffer}
        for name in read:
            if name not in stored:
                where = f"samples of '{buffer}'" if buffer else "collected by a policy"
                store = self.columns[name][0]
                self.error("E0412", f"the loss reads column '{name}', which '{data.id}' ("
                           f"{where}) does not have", stmt.objective.loss.span,
                           hint=f"it is stored in '{store.buffer.id}' (line {store.span.line}): "
                           f"minimise over `collect N samples from {store.buffer.id}`")

    def memory_entry(self, name: str) -> R.Entry | None:
        decl = self.memories.get(name)
        if decl is None or not isinstance(decl.value, A.Call):
            return None
        return R.REGISTRY.get(decl.value.func_name or "")

    def check_heads_exist(self, loop, stmt, refs, targets=(), through=None) -> None:
        """A loss's bare head slots are the heads of the model its step changes (the models
        it updates or adapts, or those adapted in the loop it differentiates through);
        another model's head is read by naming it (`disc.q_z(...)`)."""
        all_heads = {h for m in self.models.values() for h in m.heads}
        owners = [t[1] for t in targets if t and t[0] == "model" and t[1] in self.models]
        if through is not None and through in self.loops:
            owners += [n for n in self.loops[through].adapted if n in self.models]
        own = {h for m in owners for h in self.models[m].heads}
        for kind, name in sorted(refs):
            if kind != "head":
                continue
            span = stmt.objective.span
            if name not in all_heads:
                self.error("E0304", f"no model has a head '{name}', which the loss uses", span,
                           hint=f"add it to a model: `heads = {{..., {name}: "
                           f"{'categorical' if R.HEAD_SLOTS.get(name) == 'dist' else 'value'}}}`")
            elif owners and name not in own:
                others = sorted(m for m, info in self.models.items() if name in info.heads)
                self.error("E0304", f"the loss reads head '{name}', which "
                           f"{' and '.join(repr(m) for m in dict.fromkeys(owners))} (the model "
                           f"it changes) lacks; only {others[0]!r} has it", span,
                           hint=f"read that model's head by name: `{others[0]}.{name}(...)`")

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
        carried = self.carried_over()
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
                if refs is not None and ref("meta", name) not in self.influence(stmt, refs,
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
            if ref("memory", base) in loop.refs or base in loop.policies.values():
                users.append(loop)
                continue
            entry = self.memory_entry(base)
            if entry is not None and "latent" in entry.traits:
                if any("z" in self.models[m].inputs for m in loop.policies.values()
                       if m in self.models):
                    users.append(loop)
        return users

    def materialise_scopes(self) -> None:
        """Every stateful model's memory scope, written or not: one with no `memory M.core
        reset ...` line resets per task, and every memory check runs on that scope as if
        it were written (`defaulted` names the ones that were not)."""
        owned = {d.target.parts[0] for d in self.memories.values() if d.value is None}
        for name, info in self.models.items():
            if info.stateful and name not in owned and name not in self.broken:
                span = info.decl.name.span
                self.memories[f"{name}.core"] = A.MemoryDecl(
                    A.Ref((name, "core"), span), None, A.Name("task", span), span)
                self.defaulted.add(f"{name}.core")

    def check_memories(self) -> None:
        self.materialise_scopes()
        for key, decl in self.memories.items():
            target = decl.target
            base = target.parts[0]
            scope = decl.scope.id
            if decl.value is None and not self.memory_target_ok(decl):
                continue
            users = self.memory_users(key)
            if not users and key in self.defaulted:
                continue  # a model no loop acts with: its default scope is never exercised
            written = any(("memory", key) in targets for _, _, _, targets, _, _ in self.pending)
            if not users and written:
                self.error("E0213", f"memory '{key}' is written but never read", target.span,
                           hint=f"act on it (`collect ... with q_greedy({key})`) or read it "
                           f"in a loss (`lookup({key}, ...)`)")
            elif not users:
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
            elif decl.fresh and not (base.endswith("'") and scope == "task"):
                self.error("E0301", f"'{key}' reinit per {scope}: only adapted parameters "
                           "start each task from a fresh random draw", decl.scope.span,
                           hint=f"memory {base.rstrip(chr(39))}' reinit per task"
                           if base in self.models or base.endswith("'") else "reset per task")
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
            default = ", the default where no `memory` line says otherwise" \
                if decl.target.text in self.defaulted else ""
            self.error("E0303", f"'{info.decl.name.id}' adapts through its memory across a task "
                       f"(reset per task{default}) but does not see {' and '.join(missing)}",
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
            lib = self.library.load(imp.module.id)
            if lib and not any(n in self.used for n in lib.funcs):
                self.error("E0213", f"nothing from '{imp.module.id}' is used", imp.span)

    def check_settings_without_effect(self) -> None:
        schedule = getattr(self, "schedule_settings", {})
        backend = schedule.get("backend")
        on_ray = backend is not None and getattr(backend.value, "id", None) == "ray"
        if on_ray and not any(
                isinstance(s, A.Update) and isinstance(s.rule, A.Call) and
                R.REGISTRY.get(s.rule.func_name) is not None and
                R.REGISTRY[s.rule.func_name].traits & {"evolutionary", "population"}
                for info in self.loops.values() for s in info.decl.body):
            self.error("E0213", "`backend = ray` has no effect: Ray runs the members of a "
                       "population, and no update here has one", backend.span,
                       hint="update a model by an evolutionary rule such as es(...), or "
                            "remove it")
        if "workers" in schedule:
            if not on_ray:
                self.error("E0213", "`workers` has no effect unless backend = ray",
                           schedule["workers"].span, hint="set `backend = ray` or remove it")
        evaluate = getattr(self, "evaluate_settings", {})
        loop = getattr(self, "evaluated", None)
        for name in ("adapt_steps", "later_lr_scales", "pretrain_iterations"):
            if name in evaluate and loop is not None and self.evaluation_kind() != \
                    "after_adaptation":
                adapting = [n for n, l in self.loops.items() if l.adapted - self.carried_over()]
                self.error("E0213", f"`{name}` has no effect: the evaluated loop '{loop}' "
                           "adapts no parameters per task", evaluate[name].span,
                           hint=f"evaluate an adapting loop: `loop = {adapting[0]}`"
                           if adapting else "remove it")
        for loop in self.loops.values():
            if "meta_batch" in loop.settings and loop.decl.over is None:
                self.error("E0213", "`meta_batch` has no effect in an outer loop that runs no "
                           "inner loop", loop.settings["meta_batch"].span)


# ---- expression typing -------------------------------------------------------------------
