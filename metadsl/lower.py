"""Phase 4: a checked spec and its IR → one readable PyTorch module.

The module reads like a careful single-file implementation: a header naming the spec,
its hash and the metadsl version; an `Args` dataclass with a docstring per field
(defaults from the spec); every loss and return the spec uses, lowered from its `.mrl`
expression to torch ops; `build` (seeded); one function per loop; `evaluate`; `main`.
Same spec, same bytes. No torch here: this module writes text.

A construct with no back end yet raises `NotBuilt` naming each one.
"""

from __future__ import annotations

import hashlib
import keyword
from dataclasses import dataclass, field

from . import __version__
from . import ast as A
from . import registry as R
from .checker import Checked, bind_args
from .formatter import format_arg

# What the runtime implements today; everything else is reported as not built.
BUILT_TASKS = {"bernoulli_bandit", "dependent_bandit", "informative_arm_bandit", "tabular_mdp",
               "random_quadratic", "gym"}
BUILT_MODELS = {"recurrent"}
BUILT_CORES = {"gru", "lstm"}
BUILT_RULES = {"adam", "rmsprop"}
BUILT_OPS = {"exp", "log", "sqrt", "abs", "tanh", "sigmoid", "mean", "sum", "std", "stop_grad",
             "normalize", "min", "max", "clamp", "where", "scan_back", "shift", "stack",
             "log_prob", "entropy", "kl", "rsample", "normal", "unit_normal", "anneal"}
# take the batch as their first argument (episode ends, progress, the padding mask)
TRAJECTORY_OPS = {"shift", "anneal", "mean", "sum", "std", "normalize"}
_BANDIT_BASELINES = {"bayes_optimal", "gittins", "ucb1", "thompson", "greedy", "epsilon_greedy",
                     "random"}
BUILT_BASELINES = {  # task family -> the baselines the runtime computes for it
    "bernoulli_bandit": _BANDIT_BASELINES, "dependent_bandit": _BANDIT_BASELINES,
    "informative_arm_bandit": {"bayes_optimal", "oracle", "random"},
    "tabular_mdp": {"random", "oracle", "psrl"}, "random_quadratic": {"oracle"},
    "gym": {"random"},
}


class NotBuilt(Exception):
    def __init__(self, missing: list[str]):
        super().__init__("; ".join(missing))
        self.missing = missing


def py_name(name: str) -> str:
    """A language name as a Python identifier: primes become `_prime`, keywords get `_`."""
    out = name.replace("'", "_prime")
    return out + "_" if keyword.iskeyword(out) else out


@dataclass
class Hyper:
    """One field of the generated Args dataclass."""

    path: str  # dotted, as `--set` takes it: meta.agent.lr
    type: str  # int | float | bool | str
    default: str  # Python source
    doc: str
    bounds: R.P | None = None  # the registry parameter whose bounds the checker enforces

    @property
    def field(self) -> str:
        return "__".join(py_name(p) for p in self.path.split("."))


@dataclass
class Module:
    """The generated module, assembled section by section."""

    hypers: list[Hyper] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        """Record a construct the back end does not build (once)."""
        if what not in self.missing:
            self.missing.append(what)

    def hyper(self, path: str, value, type_: str, doc: str, bounds: R.P | None = None) -> str:
        existing = next((h for h in self.hypers if h.path == path), None)
        if existing is None:
            self.hypers.append(Hyper(path, type_, value, doc, bounds))
        return "args." + "__".join(py_name(p) for p in path.split("."))


def _value(expr: A.Expr) -> tuple[str, str] | None:
    """A constant argument as (Python source, type), or None."""
    if isinstance(expr, A.Number):
        return (expr.text if not expr.is_int else str(int(expr.value)),
                "int" if expr.is_int else "float")
    if isinstance(expr, A.UnaryOp) and expr.op == "-" and isinstance(expr.operand, A.Number):
        src, t = _value(expr.operand)
        return "-" + src, t
    if isinstance(expr, A.String):
        return repr(expr.value), "str"
    if isinstance(expr, A.Name) and expr.id in ("true", "false"):
        return ("True" if expr.id == "true" else "False"), "bool"
    return None


def _literal(expr: A.Expr) -> str | None:
    """A constant list or dict argument (`{length: [0.5, 2.0]}`) as Python source, or None."""
    if isinstance(expr, A.ListExpr):
        items = [_literal(i) for i in expr.items]
        return None if None in items else "[" + ", ".join(items) + "]"
    if isinstance(expr, A.DictExpr):
        items = [(k.id, _literal(v)) for k, v in expr.items]
        return None if any(v is None for _, v in items) else \
            "{" + ", ".join(f"{k!r}: {v}" for k, v in items) + "}"
    const = _value(expr)
    return const[0] if const else None


# ---- expressions ----------------------------------------------------------------------

_PREC = {"or": 1, "and": 2, "not": 3, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
         "+": 5, "-": 5, "*": 6, "/": 6, "neg": 7, "^": 8}


class Expr:
    """Lowers one function body or objective: names to Python, ops to `ops.*`."""

    def __init__(self, checked: Checked, out: Module, local: set[str], funcs: dict):
        self.c, self.out, self.local, self.funcs = checked, out, local, funcs

    def prec(self, e) -> int:
        if isinstance(e, A.BinOp):
            return _PREC[e.op]
        if isinstance(e, A.UnaryOp):
            return _PREC["neg"]
        return 9

    def wrap(self, e, minimum: int) -> str:
        text = self.lower(e)
        return f"({text})" if self.prec(e) < minimum else text

    def lower(self, e) -> str:
        if isinstance(e, (A.Number, A.String)):
            return _value(e)[0]
        if isinstance(e, A.Name):
            return self.name(e)
        if isinstance(e, A.UnaryOp):
            if e.op != "-":
                self.out.note(f"operator `{e.op}`")
                return "None"
            return "-" + self.wrap(e.operand, _PREC["neg"])
        if isinstance(e, A.BinOp):
            if e.op in ("and", "or"):
                self.out.note(f"operator `{e.op}`")
                return "None"
            p = _PREC[e.op]
            if e.op == "^":
                return f"{self.wrap(e.left, 9)} ** {self.wrap(e.right, _PREC['neg'])}"
            return f"{self.wrap(e.left, p)} {e.op} {self.wrap(e.right, p + 1)}"
        if isinstance(e, A.Call):
            return self.call(e)
        self.out.note(f"expression `{type(e).__name__}`")
        return "None"

    def name(self, e: A.Name) -> str:
        n = e.id
        if n in self.local:
            return py_name(n)
        if n in ("true", "false"):
            return "True" if n == "true" else "False"
        if n in R.TRAJECTORY_FIELDS:
            return f'batch["{n}"]'
        if n in self.c.metas:
            self.out.note(f"meta-parameter '{n}' in a loss")
            return "None"
        heads = {h for m in self.c.models.values() for h in m.heads} | set(R.HEAD_SLOTS)
        if n in heads:
            return f'heads["{n}"]'
        self.out.note(f"name '{n}' in a loss")
        return "None"

    def call(self, e: A.Call) -> str:
        name = e.func_name
        args = [self.lower(a.value) if a.name is None else f"{a.name}={self.lower(a.value)}"
                for a in e.args]
        if name in self.funcs and name not in self.local:
            return f"{py_name(name)}(batch, heads{''.join(', ' + a for a in args)})"
        if name in R.REGISTRY and R.REGISTRY[name].kind == "op":
            if name not in BUILT_OPS:
                self.out.note(f"op '{name}'")
            first = ["batch"] if name in TRAJECTORY_OPS else []
            return f"ops.{name}({', '.join(first + args)})"
        self.out.note(f"call of '{name or '?'}' in a loss")
        return "None"


# ---- functions ----------------------------------------------------------------------------


def function_table(checked: Checked) -> dict:
    """Every function a spec can reach: its own and its imports, then the functions each
    stdlib function calls in its own module (gae calls td_error without the spec importing
    it). Names are unique across stdlib/, so one flat table serves the generated module."""
    from . import stdlib

    table = {}
    for name in stdlib.module_names():
        table.update(stdlib.load(name).funcs)
    table.update(checked.funcs)
    return table


def used_functions(table: dict, roots: list[A.Expr]) -> list[str]:
    """Functions the roots call, callees first (a stable order: same spec, same bytes)."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name not in table:
            return
        decl = table[name].decl
        local = {p.name.id for p in decl.params} | {l.name.id for l in decl.lets}
        for node in A.walk((decl.params, decl.lets, decl.body)):
            if isinstance(node, A.Call) and node.func_name in table and \
                    node.func_name not in local:
                visit(node.func_name)
        order.append(name)

    for root in roots:
        for node in A.walk(root):
            if isinstance(node, A.Call) and node.func_name:
                visit(node.func_name)
    return order


def lower_function(checked: Checked, out: Module, funcs: dict, name: str) -> str:
    info = funcs[name]
    decl = info.decl
    local = {p.name.id for p in decl.params} | {l.name.id for l in decl.lets}
    ex = Expr(checked, out, local, funcs)
    params, setup = [], []
    for p in decl.params:
        const = _value(p.default) if p.default is not None else None
        if p.default is None:
            params.append(py_name(p.name.id))
        elif const is not None:
            params.append(f"{py_name(p.name.id)}={const[0]}")
        else:  # a default over the trajectory (r = reward) is computed per call
            params.append(f"{py_name(p.name.id)}=None")
            setup.append(f"    if {py_name(p.name.id)} is None:\n"
                         f"        {py_name(p.name.id)} = {ex.lower(p.default)}")
    where = f"stdlib/{info.module}.mrl" if info.module else "the spec"
    lines = [f"def {py_name(name)}(batch, heads, {', '.join(params)}):" if params else
             f"def {py_name(name)}(batch, heads):",
             f'    """`{decl.kind} {name}` from {where}."""']
    lines += setup
    lines += [f"    {py_name(l.name.id)} = {ex.lower(l.value)}" for l in decl.lets]
    lines.append(f"    return {ex.lower(decl.body)}")
    return "\n".join(lines)


# ---- the module -------------------------------------------------------------------------


def _py_type(p: R.P) -> str:
    return {"int": "int", "num": "float", "bool": "bool", "str": "str"}.get(p.type, "")


class Lowering:
    def __init__(self, checked: Checked, spec_path: str):
        self.c = checked
        self.path = spec_path
        self.out = Module()
        self.funcs = function_table(checked)

    def entry_hypers(self, prefix: str, call: A.Call, entry: R.Entry, skip=()) -> dict[str, str]:
        """Args fields for a registry call's numeric/bool/str parameters, and Python literals
        for its constant lists and dicts (not overridable); name → source."""
        refs = {}
        bound = bind_args(call, entry)
        for p in entry.params:
            given = bound.get(p.name)
            if p.name in skip:
                continue
            if not _py_type(p):
                literal = _literal(given) if p.type in ("list", "dict") and given else None
                if literal is not None:
                    refs[p.name] = literal
                continue
            const = _value(given) if given is not None else None
            if given is not None and const is None:
                self.out.note(f"a non-constant `{p.name}` of {entry.name}")
                continue
            if const is None:
                if p.required:
                    continue
                default = p.default
                const = (repr(default) if not isinstance(default, bool) else str(default),
                         _py_type(p))
            value = const[0] if _py_type(p) != "float" or "." in const[0] or "e" in const[0] \
                else const[0] + ".0"
            refs[p.name] = self.out.hyper(f"{prefix}.{p.name}", value, _py_type(p),
                                          f"{entry.name}({p.name}): {p.doc}".rstrip(": "), p)
        return refs

    def generate(self) -> str:
        c = self.c
        sections = []
        seed = 0
        schedule = c.blocks.get("schedule")
        if schedule:
            for s in schedule.body:
                if isinstance(s, A.Setting) and s.name.id == "seed":
                    seed = int(_value(s.value)[0])
                elif isinstance(s, A.Setting) and s.name.id == "backend" and \
                        getattr(s.value, "id", "") != "local":
                    self.out.note(f"backend {s.value.id}")
        self.out.hyper("seed", str(seed), "int", "schedule: the random seed")
        for loop in c.loops.values():
            for stmt in loop.decl.body:
                if isinstance(stmt, A.Adapt):
                    self.out.note("`adapt` (gradient-based inner loops)")
                if isinstance(stmt, A.Store):
                    self.out.note("`store` (buffers)")
                if isinstance(stmt, A.Collect) and stmt.source == "from":
                    self.out.note("`collect ... from` (buffers)")
                if isinstance(stmt, A.Update) and not isinstance(stmt.objective, A.Minimize):
                    self.out.note("evolutionary and interpolating updates")
            if loop.decl.kind == "outer" and loop.decl.over is None:
                self.out.note(f"an outer loop without an inner loop ('{loop.decl.name.id}')")
        for decl, entry in c.tasks.values():
            if entry and entry.name not in BUILT_TASKS:
                self.out.note(f"tasks {entry.name}")
        for name, info in c.models.items():
            if info.entry and info.entry.name not in BUILT_MODELS:
                self.out.note(f"model {info.entry.name}")
            if info.core and info.core.name not in BUILT_CORES:
                self.out.note(f"core {info.core.name}")
        for mem in c.memories.values():
            if mem.value is not None or mem.target.parts[0].endswith("'"):
                self.out.note(f"memory {mem.target.text}")
            elif mem.scope.id not in ("task", "episode"):
                self.out.note(f"memory reset per {mem.scope.id}")
        if c.metas:
            self.out.note("meta-parameters")
        build = self.build()
        loops = [self.loop(name) for name, l in c.loops.items() if l.decl.kind == "inner"]
        loops += [self.loop(name) for name, l in c.loops.items() if l.decl.kind == "outer"]
        evaluate = self.evaluate()
        roots = [s.objective.loss for l in c.loops.values() for s in l.decl.body
                 if isinstance(s, A.Update) and isinstance(s.objective, A.Minimize)]
        functions = [lower_function(c, self.out, self.funcs, f)
                     for f in used_functions(self.funcs, roots)]
        if self.out.missing:
            raise NotBuilt(sorted(self.out.missing))
        sections = [self.header(), self.args_class(), "\n\n\n".join(functions), build,
                    "\n\n\n".join(loops), evaluate, self.spec_source(), self.main()]
        return "\n\n\n".join(s for s in sections if s) + "\n"

    # -- sections --

    def header(self) -> str:
        c = self.c
        digest = hashlib.sha256(c.source.encode()).hexdigest()[:16]
        title = c.module.title.value if c.module.title else ""
        return (f'"""{c.module.name.id}: {title}\n\n'
                f"Generated by metadsl {__version__} from {self.path} (sha256 {digest}).\n"
                "Edit the spec, not this file. Run: python train.py [--seed N] [--iterations N]"
                "\n[--set path=value ...] [--out DIR] [--resume DIR]\n"
                '"""\n\n'
                "from __future__ import annotations\n\n"
                "from dataclasses import dataclass\n\n"
                "import torch\n\n"
                "from metadsl.runtime import evaluation, models, ops, rollout, rules, runs, tasks"
                f"\n\nSPEC = {c.module.name.id!r}\nSPEC_SHA256 = {digest!r}")

    def args_class(self) -> str:
        lines = ["@dataclass", "class Args:",
                 f'    """Hyperparameters of {self.c.module.name.id}; defaults from the spec. '
                 '`--set path=value` overrides one."""', ""]
        for h in self.out.hypers:
            lines.append(f"    {h.field}: {h.type} = {h.default}")
            doc = f"{h.path}: {h.doc}".replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'    """{doc}"""')
        bounded = [h for h in self.out.hypers
                   if h.bounds is not None and (h.bounds.low is not None or h.bounds.high is not None)]
        lines += ["", "", "# The bounds the spec's checker enforces; `--set` overrides are held to them.",
                  "BOUNDS = {"]
        for h in bounded:
            b = h.bounds
            given = {"low": b.low, "high": b.high, "low_open": b.low_open or None,
                     "high_open": b.high_open or None}
            keywords = ", ".join(f"{k}={v!r}" for k, v in given.items() if v is not None)
            lines.append(f"    {h.path!r}: runs.Bounds({keywords}),")
        lines.append("}")
        return "\n".join(lines)

    def task_family(self, loop_name: str) -> str:
        return self.c.loops[loop_name].decl.task_source.id

    def build(self) -> str:
        c = self.c
        lines = ["def build(args: Args) -> runs.State:",
                 '    """Tasks, models and optimizers, seeded from args.seed."""',
                 "    torch.manual_seed(args.seed)",
                 "    gen = torch.Generator().manual_seed(args.seed)"]
        names = ["gen=gen"]
        family_of_model = {}
        for loop in c.loops.values():
            for stmt in loop.decl.body:
                if isinstance(stmt, A.Collect) and isinstance(stmt.policy, A.Name):
                    owner = loop.decl.name.id if loop.decl.kind == "inner" else \
                        (loop.decl.over.id if loop.decl.over else None)
                    if owner:
                        family_of_model.setdefault(stmt.policy.id.rstrip("'"),
                                                   self.task_family(owner))
        for name, (decl, entry) in c.tasks.items():
            refs = self.entry_hypers(name, decl.value, entry)
            kwargs = ", ".join(f"{k}={v}" for k, v in refs.items())
            lines.append(f"    {py_name(name)} = tasks.make({entry.name!r}"
                         f"{', ' + kwargs if kwargs else ''})")
            names.append(f"{py_name(name)}={py_name(name)}")
        for name, info in c.models.items():
            if info.core is None or name not in family_of_model:
                continue
            core_call = next(a.value for a in info.decl.value.args if a.name in ("core", "net"))
            refs = self.entry_hypers(name, core_call, info.core)
            family = py_name(family_of_model[name])
            lines.append(f"    {py_name(name)} = models.Recurrent(")
            lines.append(f"        {info.core.name!r}, {refs.get('hidden', '64')}, "
                         f"inputs={info.inputs!r},")
            heads = {h.id: k.id for h, k in _heads(info)}
            scope = next((m.scope.id for m in c.memories.values()
                          if m.value is None and m.target.parts[0] == name), "task")
            reset = ', reset="episode"' if scope == "episode" else ""
            lines.append(f"        heads={heads!r}, obs_dim={family}.obs_dim, "
                         f"n_actions={family}.n_actions{reset})")
            names.append(f"{py_name(name)}={py_name(name)}")
        for loop_name, loop in c.loops.items():
            for stmt in loop.decl.body:
                if isinstance(stmt, A.Update):
                    rule = R.REGISTRY.get(stmt.rule.func_name or "")
                    if rule is None or rule.name not in BUILT_RULES:
                        self.out.note(f"update rule {stmt.rule.func_name}")
                        continue
                    target = stmt.targets[0].parts[0]
                    polyak = bind_args(stmt.rule, rule).get("polyak")
                    if polyak is not None and _value(polyak) not in (None, ("0", "int")) and \
                            float(_value(polyak)[0]) != 0:
                        self.out.note("target networks (polyak)")
                    refs = self.entry_hypers(f"{loop_name}.{target}", stmt.rule, rule,
                                             skip=("polyak",))
                    opt = f"opt_{py_name(target)}"
                    options = "".join(f", {k}={refs[k]}" for k in ("l2", "alpha", "eps")
                                      if k in refs)
                    lines.append(f"    {opt} = rules.optimizer({rule.name!r}, "
                                 f"{py_name(target)}.parameters(), lr={refs['lr']}{options})")
                    names.append(f"{opt}={opt}")
        lines.append(f"    return runs.State({', '.join(names)})")
        return "\n".join(lines)

    def loop(self, name: str) -> str:
        c = self.c
        loop = c.loops[name]
        d = loop.decl
        if d.kind == "inner":
            family = py_name(self.task_family(name))
            lines = [f"def {py_name(name)}(args: Args, state: runs.State, instances) -> dict:",
                     f'    """inner loop {name}(task ~ {self.task_family(name)}): one task batch;'
                     ' the learner\'s memory spans it."""',
                     f"    env = state.{family}.env(instances)"]
            outputs = []
            for stmt in d.body:
                if isinstance(stmt, A.Collect):
                    count = self.out.hyper(f"{name}.{stmt.output.id}.count",
                                           str(int(stmt.count.value)), "int",
                                           f"collect N {stmt.unit.id} per task",
                                           R.P("count", "int", low=1))
                    if stmt.unit.id == "samples":  # supervised: read in order, not acted
                        lines.append(f"    {py_name(stmt.output.id)} = rollout.samples(env)")
                    else:
                        steps, episodes = (f"{count} * env.horizon", f", episodes={count}") \
                            if stmt.unit.id == "episodes" else (count, "")
                        lines.append(f"    {py_name(stmt.output.id)} = rollout.collect("
                                     f"state.{py_name(stmt.policy.id)}, env, {steps}, "
                                     f"state.gen{episodes})")
                    outputs.append(stmt.output.id)
            lines.append("    return {" + ", ".join(f'"{o}": {py_name(o)}' for o in outputs) + "}")
            return "\n".join(lines)
        inner = d.over.id
        family = py_name(self.task_family(inner))
        settings = {p.name: p for p in R.SETTINGS["outer"]}
        iterations = self.out.hyper(f"{name}.iterations", str(loop_setting(loop, "iterations")),
                                    "int", "outer iterations", settings["iterations"])
        batch = self.out.hyper(f"{name}.meta_batch", str(loop_setting(loop, "meta_batch")),
                               "int", "task instances per iteration", settings["meta_batch"])
        steps = self.steps_of(inner)
        lines = [f"def {py_name(name)}(args: Args, state: runs.State, run: runs.Run) -> None:",
                 f'    """outer loop {name} over {inner}."""',
                 f"    for iteration in run.iterations({name!r}, {iterations}):",
                 f"        instances = state.{family}.sample({batch}, {steps}, state.gen)",
                 f"        data = {py_name(inner)}(args, state, instances)"]
        metrics = []
        for stmt in d.body:
            if isinstance(stmt, A.Update) and isinstance(stmt.objective, A.Minimize):
                target = stmt.targets[0].parts[0]
                rule = R.REGISTRY[stmt.rule.func_name]
                refs = self.entry_hypers(f"{name}.{target}", stmt.rule, rule, skip=("polyak",))
                loss = self.objective(name, target, stmt.objective.loss)
                data = stmt.objective.data.id
                source = f'data["{data}"]' if data in c.loops[inner].data else py_name(data)
                source = f"dict({source}, progress=run.progress)"  # for anneal(...)
                options = "".join(f", {k}={refs[k]}" for k in ("epochs", "minibatches",
                                                                "max_grad_norm") if k in refs)
                lines.append(f"        loss_{py_name(target)} = rules.minimize(")
                lines.append(f"            state.opt_{py_name(target)}, state.{py_name(target)}, "
                             f"{source},")
                lines.append(f"            lambda batch, heads: {loss}{options}, gen=state.gen)")
                metrics.append(f'"losses/{target}": loss_{py_name(target)}')
        first = next(iter(c.loops[inner].data.values()), None)
        if first is not None and first.unit.id != "samples":
            metrics.insert(0, f'"charts/return": state.{family}.score('
                              f'data["{first.output.id}"]).mean().item()')
        env_steps = f'data["{first.output.id}"]["done"].numel()' if first is not None else "0"
        lines.append(f"        run.log(iteration, {{{', '.join(metrics)}}}, env_steps={env_steps})")
        return "\n".join(lines)

    def objective(self, loop: str, target: str, loss: A.Expr) -> str:
        """The loss call, its constant arguments made Args fields."""
        if not isinstance(loss, A.Call) or loss.func_name not in self.funcs:
            return Expr(self.c, self.out, set(), self.funcs).lower(loss)
        parts = []
        for a in loss.args:
            const = _value(a.value)
            if a.name is not None and const is not None:
                parts.append(f"{a.name}=" + self.out.hyper(
                    f"{loop}.{target}.{loss.func_name}.{a.name}", const[0], const[1],
                    f"argument of {loss.func_name}"))
            else:
                text = Expr(self.c, self.out, set(), self.funcs).lower(a.value)
                parts.append(text if a.name is None else f"{a.name}={text}")
        return f"{py_name(loss.func_name)}(batch, heads{''.join(', ' + p for p in parts)})"

    def first_collect(self, inner: str) -> A.Collect | None:
        return next((s for s in self.c.loops[inner].decl.body if isinstance(s, A.Collect)), None)

    def steps_of(self, inner: str) -> str:
        collect = self.first_collect(inner)
        if collect is None:
            return "1"
        count = f"args.{py_name(inner)}__{py_name(collect.output.id)}__count"
        if collect.unit.id == "steps":
            return count
        return f"{count} * state.{py_name(self.task_family(inner))}.horizon"

    def episodes_of(self, inner: str) -> str:
        """The trial's episode count, where the inner loop collects episodes."""
        collect = self.first_collect(inner)
        if collect is None or collect.unit.id != "episodes":
            return "None"
        return f"args.{py_name(inner)}__{py_name(collect.output.id)}__count"

    def evaluate(self) -> str:
        c = self.c
        block = c.blocks.get("evaluate")
        inner = next((n for n, l in c.loops.items() if l.decl.kind == "inner"), None)
        if block is None or inner is None:
            return ("def evaluate(args: Args, state: runs.State, run: runs.Run) -> None:\n"
                    '    """The spec has no evaluate block."""')
        settings = {s.name.id: s.value for s in block.body if isinstance(s, A.Setting)}
        held_out = settings.get("tasks")
        count = _count(settings, "instances", 1000)
        if isinstance(held_out, A.Call) and held_out.func_name == "held_out":
            count = next((int(a.value.value) for a in held_out.args if a.name == "count"), count)
        instances = self.out.hyper("evaluate.instances", str(count), "int",
                                   "held-out task instances", R.P("instances", "int", low=1))
        against = [item.func_name if isinstance(item, A.Call) else item.id
                   for item in getattr(settings.get("against"), "items", ())]
        families = []
        tasks_value = settings.get("tasks")
        items = tasks_value.items if isinstance(tasks_value, A.ListExpr) else \
            ([tasks_value] if tasks_value is not None else [A.Name(self.task_family(inner),
                                                                  A.NOWHERE)])
        for item in items:
            if isinstance(item, A.Call) and item.func_name == "held_out":
                item = item.args[0].value
            entry = None
            if isinstance(item, A.Name):
                families.append((item.id, f"state.{py_name(item.id)}"))
                entry = c.tasks[item.id][1] if item.id in c.tasks else None
            elif isinstance(item, A.Call):
                entry = R.REGISTRY[item.func_name]
                args = ", ".join(f"{k}={v}" for k, v in
                                 ((a.name, _literal(a.value) or repr(a.value.id))
                                  for a in item.args))
                label = f"{item.func_name}({', '.join(format_arg(a) for a in item.args)})"
                families.append((label, f"tasks.make({entry.name!r}, {args})"))
            for name in against:
                if entry is not None and name not in BUILT_BASELINES.get(entry.name, ()):
                    self.out.note(f"baseline {name} on {entry.name} tasks")
        metric = getattr(settings.get("metric"), "id", "total_reward")
        model = next(iter(self.c.loops[inner].policies.values()), None)
        lines = ["def evaluate(args: Args, state: runs.State, run: runs.Run) -> None:",
                 '    """Held-out tasks: the learner and each baseline on the same instances and '
                 'reward draws."""',
                 "    held_out = [" + ", ".join(f"({label!r}, {family})" for label, family in families)
                 + "]",
                 "    results = []",
                 "    for label, family in held_out:",
                 "        results += evaluation.held_out(",
                 f"            SPEC, state.{py_name(model)}, family, label,",
                 f"            steps={self.steps_of(inner)}, episodes={self.episodes_of(inner)},",
                 f"            instances={instances},",
                 f"            against={against!r}, metric={metric!r}, seed=args.seed + 1)",
                 "    run.write_eval(results)"]
        return "\n".join(lines)

    def spec_source(self) -> str:
        """The spec itself, so that every run folder (python train.py too) keeps it."""
        text = self.c.source.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
        return ("# The spec this module was generated from; each run folder keeps it as spec.mrl.\n"
                f'SPEC_SOURCE = """\\\n{text}"""')

    def main(self) -> str:
        outer = [n for n, l in self.c.loops.items() if l.decl.kind == "outer"]
        calls = "\n".join(f"        {py_name(n)}(args, state, run)" for n in outer)
        return ("def main(argv: list[str] | None = None) -> None:\n"
                f"    args, options = runs.parse(Args, argv, iterations={outer[-1] + '.iterations'!r}, "
                "bounds=BOUNDS)\n"
                "    with runs.Run(SPEC, SPEC_SHA256, args, options, source=__file__, "
                "spec_source=SPEC_SOURCE) as run:\n"
                "        state = build(args)\n"
                "        run.restore(state)\n"
                f"{calls}\n"
                "        evaluate(args, state, run)\n\n\n"
                'if __name__ == "__main__":\n'
                "    main()")


def _heads(info):
    for a in info.decl.value.args:
        if a.name == "heads" and isinstance(a.value, A.DictExpr):
            return list(a.value.items)
    return []


def _count(settings: dict, name: str, default: int) -> int:
    value = settings.get(name)
    return int(value.value) if isinstance(value, A.Number) else default


def loop_setting(loop, name: str):
    stmt = loop.settings.get(name)
    if stmt is not None:
        return int(stmt.value.value)
    return next(p.default for p in R.SETTINGS[loop.decl.kind] if p.name == name)


def lower(checked: Checked, spec_path: str) -> str:
    """The generated module, formatted by black (deterministic: same spec, same bytes)."""
    import black

    source = Lowering(checked, spec_path).generate()
    return black.format_str(source, mode=black.Mode(line_length=100))
