"""The loop-program IR: what a spec runs, as typed statements in nested loops.

This is the contract between the middle end and the back end. `build` makes it from the
checked spec (the one place that reads the checker's results); the passes in
`middle.passes` rewrite it; `backend.lower` reads nothing else. Every node is a frozen
dataclass carrying the source location of the construct it came from, so a construct
the back end cannot build is reported where it was written.

References to state are typed (`Params`, `Adapted`, `Meta`, `Memory`, `Data`,
`Setting`), never strings to re-parse. Numbers a run can change become `Setting`s (the
fields of the generated `Args`) in the `extract_settings` pass; before it they are
`Const`s.

No torch here: `check --emit ir` must start fast.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Union

from ..registry import LOSS_BASELINES, REGISTRY

# ---- locations and references ------------------------------------------------------------


@dataclass(frozen=True)
class Loc:
    line: int = 0
    column: int = 0


NOWHERE = Loc()


@dataclass(frozen=True)
class Params:
    """θ of a model: its own parameters, updated in place; `part`: only those of one head
    (`agent.pi`: the head's layers and the trunk it reads; `agent.q1`: a critic's own
    network) or of the trunk (`agent.core`)."""

    model: str
    part: str | None = None


@dataclass(frozen=True)
class Adapted:
    """θ′ of a model: its per-task adapted parameters (a functional `adapt`'s result)."""

    model: str


@dataclass(frozen=True)
class Meta:
    """A meta-parameter (η, α, φ ...)."""

    name: str


@dataclass(frozen=True)
class Memory:
    """A `memory` declaration, by its key (`agent.core`, `agent'`, `M`)."""

    key: str


@dataclass(frozen=True)
class Population:
    """A task distribution as something an update changes (POET's evolving environments)."""

    name: str


@dataclass(frozen=True)
class Data:
    """Data a statement produced: trajectories or samples, named by the spec."""

    loop: str
    name: str


@dataclass(frozen=True)
class Const:
    """A constant argument; `type` is int | float | bool | str | symbol | list | dict."""

    value: object
    type: str


@dataclass(frozen=True)
class Setting:
    """A hyperparameter the run may override: the Args field at `path` (`meta.agent.lr`)."""

    path: str
    type: str


Target = Union[Params, Meta, Memory, Population]
Value = Union[Const, Setting, Meta, "Expr"]

# ---- expressions (losses, returns and their arguments) ---------------------------------------


@dataclass(frozen=True)
class Lit:
    value: object


@dataclass(frozen=True)
class Field:
    """A trajectory field of the batch a loss is evaluated on (`reward`, `done` ...)."""

    name: str


@dataclass(frozen=True)
class Head:
    """A head of the model being updated (`pi`, `v` ...); `detached`: no gradient to it."""

    slot: str
    detached: bool = False


@dataclass(frozen=True)
class HeadCall:
    """A head of the model being updated, called as an operation: on explicit inputs
    (`pi(next_obs)`, `q(obs, action)`: the first argument replaces the model's observation
    input, a `q_values`/`q_value` head takes the action second) and/or on the target
    network's parameters (`target(v)`, `target(q)(next_obs)`), which carry no gradient."""

    slot: str
    args: tuple = ()
    target: bool = False
    detached: bool = False


@dataclass(frozen=True)
class Local:
    """A function's parameter or `let`."""

    name: str


@dataclass(frozen=True)
class Op:
    """A primitive op; `batch`: it takes the batch first (episode ends, progress, mask)."""

    name: str
    args: tuple
    kwargs: tuple  # ((name, Expr), ...)
    batch: bool = False


@dataclass(frozen=True)
class Call:
    """A call of a `def`/`loss`; `detached`: inside `stop_grad`, it reads detached heads."""

    func: str
    args: tuple
    kwargs: tuple  # ((name, Expr), ...)
    detached: bool = False


@dataclass(frozen=True)
class ModelRef:
    """A model passed to a loss as a value (`epg(L_phi)`): an explicit reference, bound at
    the step to the parameters the step holds for it (a population member's φ_i)."""

    model: str


@dataclass(frozen=True)
class ModelCall:
    """A model called as an operation inside a loss (`L(log_prob(pi, action))`): `callee`
    is a ModelRef or a function's model parameter (a Local); it reads its input fields
    from the loss's batch, and `args` are the per-step signals it also takes."""

    callee: "Expr"
    args: tuple


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / ^ == != < <= > >=
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Negate:
    operand: "Expr"


@dataclass(frozen=True)
class Unsupported:
    """An expression the back end has no lowering for; `what` names it."""

    what: str
    loc: Loc


@dataclass(frozen=True)
class Fitness:
    """A fitness function (registry entry `name`) of a member's run of inner loop `loop`:
    the task family's score of `data`, the loop's last collect, in its last round."""

    name: str
    loop: str
    data: Data


# A `Memory` in an expression is an episodic memory the loss reads (`lookup(M, h, action)`).
Expr = Union[Lit, Field, Head, HeadCall, Local, Op, Call, Binary, Negate, Meta, Setting,
             Const, Memory, Fitness, ModelRef, ModelCall, Unsupported]


@dataclass(frozen=True)
class Function:
    """A `def` or `loss` a step's objective reaches (the spec's own or the stdlib's)."""

    name: str
    kind: str  # def | loss
    origin: str  # "the spec" or "stdlib/rl.mrl"
    params: tuple  # ((name, default Expr | None), ...)
    lets: tuple  # ((name, Expr), ...)
    body: Expr
    loc: Loc = NOWHERE


# ---- declarations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskDecl:
    name: str
    source: str  # the registry entry
    args: tuple  # ((param, Value), ...)
    traits: tuple
    loc: Loc


@dataclass(frozen=True)
class ModelDecl:
    name: str
    constructor: str  # registry entry: recurrent | policy | regressor | ...
    core: str  # registry entry of its core: gru | lstm | mlp | ...
    core_args: tuple  # ((param, Value), ...)
    inputs: tuple
    heads: tuple  # ((head, kind), ...)
    stateful: bool
    tasks: str | None  # the task family whose observations and actions size it
    reset: str | None  # scope of its hidden-state memory (task | episode), set by a pass
    loc: Loc
    # its adapted parameters start each task from a fresh random draw (`memory M' reinit
    # per task`, EPG's lifetimes), not from θ; set by a pass
    reinit: bool = False


@dataclass(frozen=True)
class MetaDecl:
    name: str
    constructor: str  # bounded | positive | step_sizes | ...
    args: tuple  # ((param, Value), ...); step_sizes' model is Params
    learner: str  # the loop that learns it
    loc: Loc


@dataclass(frozen=True)
class MemoryDecl:
    key: str
    target: Union[Params, Adapted, Memory]
    scope: str  # step | episode | task | iteration | never
    constructor: str | None
    args: tuple
    loc: Loc
    tasks: str | None = None  # the task family whose observations and actions size it
    written: bool = True  # False: the default scope of a stateful model no `memory` line names
    fresh: bool = False  # `reinit per SCOPE`: a fresh random draw, not θ, at each reset


# ---- statements -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleTasks:
    """Draw `count` task instances from `source` (the outer loop's meta-batch), with random
    draws (bandits' common random numbers) for the longest of the rollouts that will act
    in them: `trials`, the data those rollouts make (found by a pass)."""

    source: str
    count: Value | None = None
    trials: tuple = ()
    loc: Loc = NOWHERE


@dataclass(frozen=True)
class Rollout:
    """`collect COUNT UNIT with POLICY as OUTPUT`: act in the tasks' environments.

    `schedule` (a pass sets it from the policy's memory): `sequential` — the COUNT
    episodes follow each other in one environment per task, so a recurrent memory spans
    them; `parallel` — they are COUNT copies of the task stepped side by side. `memory`:
    returns stop at the end of the `trial` (a memory spanning it) or of each `episode`
    (a policy without memory)."""

    policy: Union[Params, Adapted, PolicyCall]
    tasks: str
    count: Value
    unit: str  # episodes | steps | samples
    output: Data
    schedule: str = ""
    memory: str = ""  # where the policy's memory, and so its returns, end: trial | episode
    loc: Loc = NOWHERE


@dataclass(frozen=True)
class PolicyCall:
    """A behaviour policy made by a registry entry (`q_greedy(M, epsilon = 0.1)`)."""

    name: str
    args: tuple  # ((param, Value | Memory | Params), ...)


@dataclass(frozen=True)
class Store:
    """`store DATA in BUFFER with {NAME: EXPR}`: the columns are computed over the whole
    trajectories as they are stored, and read as fields of samples of the buffer."""

    data: Data
    buffer: Memory
    columns: tuple = ()  # ((name, Expr), ...)
    loc: Loc = NOWHERE


@dataclass(frozen=True)
class SampleBuffer:
    """`collect COUNT UNIT from BUFFER as OUTPUT`."""

    buffer: Memory
    count: Value
    unit: str
    output: Data
    loc: Loc = NOWHERE


@dataclass(frozen=True)
class Minimize:
    loss: Expr
    data: Data


@dataclass(frozen=True)
class Maximize:
    fitness: Expr


@dataclass(frozen=True)
class Toward:
    target: Adapted


Objective = Union[Minimize, Maximize, Toward]


@dataclass(frozen=True)
class Through:
    """`through INNER(order, trace)`: the inner program replayed as a differentiable
    closure of θ (or η), so the outer gradient goes through its steps."""

    loop: str
    order: Value
    trace: Value
    traced_model: str | None = None  # set by a pass where a meta-gradient trace is kept


@dataclass(frozen=True)
class Rule:
    """An update rule as the registry binds it: its entry, traits and arguments."""

    name: str
    traits: tuple
    args: tuple  # ((param, Value), ...)

    def arg(self, name: str):
        return next((v for k, v in self.args if k == name), None)


@dataclass(frozen=True)
class Step:
    """`adapt` (functional, θ → θ′) or `update` (in place) of `targets` by `rule`."""

    mode: str  # adapt | update
    targets: tuple  # (Params | Meta, ...)
    rule: Rule
    objective: Objective
    through: Through | None = None
    text: str = ""  # the objective as the spec wrote it (drawings)
    # an in-place policy update's diagnostics (approx_kl, clip_fraction,
    # explained_variance) and the objective's arguments they need ((clip, v), (gamma, v))
    diagnostics: tuple = ()
    diagnostic_args: tuple = ()
    # the loss reads the updated model's target network (set by mark_target_networks)
    target_network: bool = False
    loc: Loc = NOWHERE


@dataclass(frozen=True)
class Repeat:
    """The outer loop's own statements run `updates` times per iteration (gradient steps
    on fresh replay samples), once every buffer they sample holds `warmup` transitions;
    until then they are skipped. Its fields are named as the settings they come from."""

    updates: Value
    warmup: Value
    body: tuple
    loc: Loc = NOWHERE


@dataclass(frozen=True)
class Reset:
    """Clear a memory; placed by the reset pass at the start of the loop its scope names."""

    memory: Memory
    scope: str
    loc: Loc = NOWHERE


@dataclass(frozen=True)
class CarryOver:
    """θ ← the tasks' mean θ′ (`memory M' reset never`): adapted parameters persist."""

    model: str
    loc: Loc = NOWHERE


@dataclass(frozen=True)
class Perturb:
    """The members of an evolutionary step's generation: θ_i = θ + σ·s_i·ε_j(i) of the
    model `target`, each ε_j drawn from the key (seed, phase, iteration, "eps", target, j)
    (mirrored pairs share j = i // 2), by the rule's optimizer in the run state."""

    target: Params
    loc: Loc = NOWHERE


@dataclass(frozen=True)
class Map:
    """Run inner loop `loop` once per value of an index set. `tasks`: every task instance
    of the batch, as the rows of one call. `members`: every member of the generation a
    `Perturb` of `target` made, each on the batch's tasks (common random numbers) with its
    own θ_i and its draws under the key ("member", i), giving `results` ((local name,
    Fitness), ...) per member and the environment steps of them all. How — `batched`
    rows, a `sequential` loop, `ray` workers — is the schedule's `execution`, never the
    spec's: each gives the same numbers for a seed."""

    index: str  # tasks | members
    loop: str
    execution: str = "batched"
    target: str | None = None  # members: the model whose θ_i each member acts with
    results: tuple = ()
    loc: Loc = NOWHERE


@dataclass(frozen=True)
class Metric:
    """One logged value: `charts/return` of some data, a step's loss, a meta-parameter."""

    name: str
    kind: str  # score | loss | step_stat | inner_loss | meta | rule_stat
    source: object  # Data | Step target name | Meta | (target, stat)


@dataclass(frozen=True)
class Log:
    metrics: tuple
    # (Data | Local, ...) whose steps count as environment steps: a Local is a count a
    # member Map made (all members' steps)
    env_steps: tuple
    loc: Loc = NOWHERE


Stmt = Union[SampleTasks, Rollout, Store, SampleBuffer, Step, Reset, CarryOver, Perturb, Map,
             Log, Repeat]


@dataclass(frozen=True)
class Loop:
    name: str
    kind: str  # inner | outer
    tasks: str | None  # the task family an inner loop runs on (the outer: its inner's)
    over: str | None  # the inner loop an outer loop runs
    settings: tuple  # ((name, Value), ...): iterations, meta_batch, steps
    body: tuple
    adapts: bool = False  # an inner loop with a functional `adapt` (set by build)
    loc: Loc = NOWHERE

    def setting(self, name: str):
        return next((v for k, v in self.settings if k == name), None)

    @property
    def statements(self) -> tuple:
        """Every statement of the body, those a `Repeat` holds in its place."""
        return tuple(flatten(self.body))


def flatten(body: tuple):
    for stmt in body:
        if isinstance(stmt, Repeat):
            yield from flatten(stmt.body)
        else:
            yield stmt


@dataclass(frozen=True)
class Evaluate:
    """The evaluate block: held-out tasks, baselines, metric; after k inner steps for an
    adapting inner loop."""

    kind: str  # held_out | after_adaptation | none
    loop: str | None  # the inner loop evaluated
    outer: str | None  # the outer loop that runs it (its meta-batch and budget)
    tasks: tuple  # ((label, TaskDecl-name or inline TaskDecl), ...)
    against: tuple
    metric: str
    instances: Value
    adapt_steps: tuple = ()
    later_lr_scales: tuple = ()
    pretrain_iterations: Value | None = None
    loc: Loc = NOWHERE
    baseline_args: tuple = ()  # ((baseline, ((param, value), ...)), ...): as written


@dataclass(frozen=True)
class ArgField:
    """One field of the generated Args: the dotted path `--set` takes, its Python field
    name (given by the symbol table), type, default, doc and the checker's bounds."""

    path: str
    name: str
    type: str
    default: object
    doc: str
    bounds: tuple = ()  # ((low, high, low_open, high_open),) or ()
    # the path whose value this field's default is (the pretrained baseline's budget is
    # the outer loop's): an override of that path moves this one too, unless it is set
    follows: str | None = None


@dataclass(frozen=True)
class Program:
    spec: str
    title: str
    source: str
    path: str
    seed: int
    # the run's schedule settings the runtime honours ((name, Const), ...): checkpoint_every,
    # log_every, threads (the seed is `seed`; device, envs and backend have only their
    # defaults built)
    schedule: tuple
    tasks: tuple  # (TaskDecl, ...)
    models: tuple  # (ModelDecl, ...)
    metas: tuple  # (MetaDecl, ...)
    memories: tuple  # (MemoryDecl, ...)
    functions: tuple  # (Function, ...), callees first
    loops: tuple  # (Loop, ...): inner loops first, then outer loops in run order
    evaluate: Evaluate
    execution: str = "sequential"  # how population Maps run (schedule.execution)
    unsupported: tuple = ()  # ((what, Loc), ...): constructs with no lowering
    args: tuple = ()  # (ArgField, ...), from extract_settings
    symbols: tuple = ()  # ((scope, spec name, Python name), ...), from mangle_names

    def loop(self, name: str) -> Loop:
        return next(l for l in self.loops if l.name == name)

    def model(self, name: str) -> ModelDecl:
        return next(m for m in self.models if m.name == name)

    def task(self, name: str) -> TaskDecl:
        return next(t for t in self.tasks if t.name == name)

    def python(self, scope: str, name: str) -> str:
        """The Python name the symbol table gave a spec name in a scope."""
        return next(p for s, n, p in self.symbols if s == scope and n == name)

    def replace(self, **changes) -> "Program":
        return dataclasses.replace(self, **changes)


# ---- dumping ------------------------------------------------------------------------------------


def to_json(node) -> object:
    """Any IR node as plain JSON data, each node tagged with its class."""
    if dataclasses.is_dataclass(node):
        out = {"node": type(node).__name__}
        for f in dataclasses.fields(node):
            if f.name == "source":
                continue  # the spec's text: not part of the program
            out[f.name] = to_json(getattr(node, f.name))
        return out
    if isinstance(node, (tuple, list)):
        return [to_json(x) for x in node]
    if isinstance(node, dict):
        return {str(k): to_json(v) for k, v in node.items()}
    return node


def dumps(program: Program) -> str:
    return json.dumps(to_json(program), indent=1, ensure_ascii=False)


def walk(node):
    """Every dataclass node under `node`, depth first (statements, expressions, refs)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if dataclasses.is_dataclass(n) and not isinstance(n, type):
            yield n
            stack.extend(reversed([getattr(n, f.name) for f in dataclasses.fields(n)]))
        elif isinstance(n, (tuple, list)):
            stack.extend(reversed(n))


# ---- queries every phase shares -----------------------------------------------------------------


def loss_nodes(program: Program, expr):
    """Every expression node a loss evaluates, through the functions it calls."""
    functions = {f.name: f for f in program.functions}
    seen: set[str] = set()
    stack = [expr]
    while stack:
        for node in walk(stack.pop()):
            yield node
            if isinstance(node, Call) and node.func in functions and node.func not in seen:
                seen.add(node.func)
                f = functions[node.func]
                stack.append((f.params, f.lets, f.body))


def models_passed(program: Program, expr) -> list[str]:
    """The models a loss is passed (`epg(L_phi)`), through its functions."""
    return sorted({n.model for n in loss_nodes(program, expr) if isinstance(n, ModelRef)})


def memories_read(program: Program, expr) -> list[str]:
    """The episodic memories a loss reads (`lookup(M, ...)`), through its functions."""
    return sorted({n.key for n in loss_nodes(program, expr) if isinstance(n, Memory)})


def target_name(target) -> str:
    """The name of a step's target: a model's, meta-parameter's, memory's or tasks'."""
    if isinstance(target, Params):
        return target.model
    return target.key if isinstance(target, Memory) else target.name


def target_label(target) -> str:
    """A target as the spec wrote it: its name, with the part of a model (`agent.q1`)."""
    if isinstance(target, Params) and target.part is not None:
        return f"{target.model}.{target.part}"
    return target_name(target)


def step_label(step: Step) -> str:
    """What names a step's optimizer, settings and logged losses: its first target."""
    return target_label(step.targets[0])


def acting_model(policy) -> str | None:
    """The model a rollout's policy is (θ or θ′), or None for a registry policy."""
    return policy.model if isinstance(policy, (Params, Adapted)) else None


def rollouts(loop: Loop) -> list:
    return [s for s in loop.statements if isinstance(s, Rollout)]


def adapted_models(loop: Loop) -> list[str]:
    """Models whose θ′ a loop's `adapt` steps make."""
    return [t.model for s in loop.statements if isinstance(s, Step) and s.mode == "adapt"
            for t in s.targets if isinstance(t, Params)]


def member_models(program: Program, loop: str) -> list[str]:
    """Models whose parameters a member Map hands inner loop `loop` per row (θ_i)."""
    return [s.target for l in program.loops for s in l.statements
            if isinstance(s, Map) and s.index == "members" and s.loop == loop]


def member_map(loop: Loop) -> Map | None:
    return next((s for s in loop.statements if isinstance(s, Map) and s.index == "members"),
                None)


def has_update(loop: Loop) -> bool:
    return any(isinstance(s, Step) and s.mode == "update" for s in loop.statements)


def loss_baselines(program: Program) -> list[str]:
    """The evaluation's baselines that train its inner loop with another loss
    (`ppo_baseline`), each lowered as a variant of that loop."""
    ev = program.evaluate
    return [b for b in ev.against if b in LOSS_BASELINES] \
        if ev.kind == "after_adaptation" else []


def reads_progress(program: Program, step) -> list[Op]:
    """The ops of a step's loss that read the progress of a loop (`anneal`)."""
    if not isinstance(step, Step) or not isinstance(step.objective, Minimize):
        return []
    return [n for n in loss_nodes(program, step.objective.loss)
            if isinstance(n, Op) and "progress" in REGISTRY[n.name].traits]


def adapt_reads_progress(program: Program, loop: Loop) -> bool:
    """Whether an inner loop's `adapt` losses read an outer loop's progress, which the
    outer loop then hands it."""
    return any(reads_progress(program, s) for s in loop.statements
               if isinstance(s, Step) and s.mode == "adapt")


def producer(program: Program, data: Data):
    """The statement that made some data (a Rollout or SampleBuffer)."""
    return next((s for s in program.loop(data.loop).statements
                 if isinstance(s, (Rollout, SampleBuffer)) and s.output == data), None)


def optimizer_key(loop: str, target: str) -> str:
    """The run state's key of the optimizer a loop's update of `target` steps."""
    return f"opt:{loop}.{target}"


def target_network_key(model: str) -> str:
    """The run state's key of a model's target network."""
    return f"target:{model}"


def has_optimizer(step: Step) -> bool:
    """A step the run state keeps an optimizer for: an in-place `update` by a gradient or
    evolutionary rule of models, meta-parameters and differentiable memories (a dnd)."""
    return step.mode == "update" and \
        bool({"gradient", "evolutionary"} & set(step.rule.traits)) and \
        all(isinstance(t, (Params, Meta, Memory)) for t in step.targets)


def in_place_gradient_step(step: Step) -> bool:
    """An `update ... on LOSS over DATA` without `through`: the optimizer's own steps on
    the data (`rules.minimize`), which report the loss and the policy diagnostics."""
    return step.mode == "update" and step.through is None and \
        isinstance(step.objective, Minimize) and "gradient" in step.rule.traits
