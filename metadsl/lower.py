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
from .formatter import format_arg, format_expr

# What the runtime implements today; everything else is reported as not built.
BUILT_TASKS = {"bernoulli_bandit", "dependent_bandit", "informative_arm_bandit", "tabular_mdp",
               "random_quadratic", "gym", "cheetah_vel", "cheetah_dir", "sine", "nav2d",
               "chain"}
BUILT_MODELS = {"recurrent", "policy", "regressor"}
BUILT_CORES = {"gru", "lstm", "mlp"}
BUILT_RULES = {"adam", "rmsprop", "trpo"}  # optimizers an update builds
INNER_RULES = {"sgd", "meta_sgd"}  # what `adapt` steps with
BUILT_METAS = {"bounded", "positive", "step_sizes"}
BUILT_OPS = {"exp", "log", "sqrt", "abs", "tanh", "sigmoid", "mean", "sum", "std", "stop_grad",
             "normalize", "min", "max", "clamp", "where", "scan_back", "shift", "stack",
             "log_prob", "entropy", "kl", "rsample", "normal", "unit_normal", "anneal",
             "linear_baseline"}
# take the batch as their first argument (episode ends, progress, the padding mask, obs)
TRAJECTORY_OPS = {"shift", "anneal", "mean", "sum", "std", "normalize", "linear_baseline"}
_BANDIT_BASELINES = {"bayes_optimal", "gittins", "ucb1", "thompson", "greedy", "epsilon_greedy",
                     "random"}
BUILT_BASELINES = {  # task family -> the baselines the runtime computes for it
    "bernoulli_bandit": _BANDIT_BASELINES, "dependent_bandit": _BANDIT_BASELINES,
    "informative_arm_bandit": {"bayes_optimal", "oracle", "random"},
    "tabular_mdp": {"random", "oracle", "psrl"}, "random_quadratic": {"oracle"},
    "gym": {"random"}, "cheetah_vel": {"random"}, "cheetah_dir": {"random"},
    "chain": {"random"}, "nav2d": {"random"},
}
ADAPTATION_BASELINES = {"pretrained", "random_init"}  # for evaluations after k inner steps


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

    def __init__(self, checked: Checked, out: Module, local: set[str], funcs: dict,
                 metas: bool = False, heads: str = "heads"):
        self.c, self.out, self.local, self.funcs = checked, out, local, funcs
        self.metas = metas  # meta-parameters are readable (from `state`) where a loss is called
        self.heads = heads  # "ops.detached(heads)" inside stop_grad(...)

    def prec(self, e) -> int:
        if isinstance(e, A.Call) and e.func_name == "stop_grad" and len(e.args) == 1:
            return self.prec(e.args[0].value)  # lowered as its argument (see call)
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
            if self.metas:
                return f"state.{py_name(n)}()"
            self.out.note(f"meta-parameter '{n}' in a function body")
            return "None"
        heads = {h for m in self.c.models.values() for h in m.heads} | set(R.HEAD_SLOTS)
        if n in heads:
            return f'{self.heads}["{n}"]'
        self.out.note(f"name '{n}' in a loss")
        return "None"

    def call(self, e: A.Call) -> str:
        name = e.func_name
        if name == "stop_grad" and len(e.args) == 1:
            # no gradient to the model: its heads are read detached; a meta-parameter in
            # the expression (a learned γ) keeps its gradient, which meta-gradients need
            inner = Expr(self.c, self.out, self.local, self.funcs, self.metas,
                         "ops.detached(heads)")
            return inner.lower(e.args[0].value)
        args = [self.lower(a.value) if a.name is None else f"{a.name}={self.lower(a.value)}"
                for a in e.args]
        if name in self.funcs and name not in self.local:
            return f"{py_name(name)}(batch, {self.heads}{''.join(', ' + a for a in args)})"
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
                    rule = stmt.rule.func_name
                    if rule not in INNER_RULES or not isinstance(stmt.objective, A.Minimize):
                        self.out.note(f"`adapt` by {rule}")
                if isinstance(stmt, A.Store):
                    self.out.note("`store` (buffers)")
                if isinstance(stmt, A.Collect) and stmt.source == "from":
                    self.out.note("`collect ... from` (buffers)")
                if isinstance(stmt, A.Update) and isinstance(stmt.objective, A.Maximize):
                    self.out.note("evolutionary updates")
                if isinstance(stmt, A.Update) and isinstance(stmt.objective, A.Toward) and \
                        stmt.rule.func_name != "reptile":
                    self.out.note(f"interpolating update by {stmt.rule.func_name}")
                if isinstance(stmt, A.Update) and stmt.through is not None and \
                        through_setting(stmt, "trace", 0) and \
                        self.traced(loop.decl.name.id, stmt) is None:
                    self.out.note("a meta-gradient trace (`trace > 0`) on anything but "
                                  "scalar meta-parameters updated by adam or rmsprop")
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
            if mem.target.parts[0].endswith("'"):  # adapted parameters carried over
                if mem.scope.id != "never":
                    self.out.note(f"memory {mem.target.text} reset per {mem.scope.id}")
            elif mem.value is not None:
                self.out.note(f"memory {mem.target.text}")
            elif mem.scope.id not in ("task", "episode"):
                self.out.note(f"memory reset per {mem.scope.id}")
        for decl in c.metas.values():
            if decl.value.func_name not in BUILT_METAS:
                self.out.note(f"meta-parameter {decl.value.func_name}")
        build = self.build()
        loops = [self.loop(name) for name, l in c.loops.items() if l.decl.kind == "inner"]
        loops += [self.loop(name) for name, l in c.loops.items() if l.decl.kind == "outer"]
        evaluate = self.evaluate()
        roots = [s.objective.loss for l in c.loops.values() for s in l.decl.body
                 if isinstance(s, (A.Update, A.Adapt)) and isinstance(s.objective, A.Minimize)]
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
                f"from metadsl.runtime import {', '.join(self.runtime_modules())}"
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

    def runtime_modules(self) -> list[str]:
        base = ["evaluation", "models", "ops", "rollout", "rules", "runs", "tasks"]
        if any(self.adapts(name) for name in self.c.loops):
            base.append("adaptation")
        if self.c.metas:
            base.append("metaparams")
        return sorted(base)

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
            lines += self.model(name, info, py_name(family_of_model[name]))
            names.append(f"{py_name(name)}={py_name(name)}")
        for name, decl in c.metas.items():
            entry = R.REGISTRY.get(decl.value.func_name or "")
            if entry is None or entry.name not in BUILT_METAS:
                continue
            refs = self.entry_hypers(name, decl.value, entry)
            if entry.name == "step_sizes":
                model = bind_args(decl.value, entry)["model"].id
                lines.append(f"    {py_name(name)} = metaparams.StepSizes({py_name(model)}, "
                             f"init={refs['init']})")
            else:
                kwargs = ", ".join(f"{k}={v}" for k, v in refs.items())
                lines.append(f"    {py_name(name)} = metaparams.{_class_name(entry.name)}"
                             f"({kwargs})")
            names.append(f"{py_name(name)}={py_name(name)}")
        for loop_name, loop in c.loops.items():
            for stmt in loop.decl.body:
                if not isinstance(stmt, A.Update) or isinstance(stmt.objective, A.Toward):
                    continue
                rule = R.REGISTRY.get(stmt.rule.func_name or "")
                if rule is None or rule.name not in BUILT_RULES:
                    self.out.note(f"update rule {stmt.rule.func_name}")
                    continue
                target = stmt.targets[0].parts[0]
                polyak = bind_args(stmt.rule, rule).get("polyak")
                if polyak is not None and _value(polyak) not in (None, ("0", "int")) and \
                        float(_value(polyak)[0]) != 0:
                    self.out.note("target networks (polyak)")
                # an outer step after adaptation is one step on one batch: no epochs
                skip = ("polyak", "epochs", "minibatches") if self.adapts(loop_name) else \
                    ("polyak",)
                refs = self.entry_hypers(f"{loop_name}.{target}", stmt.rule, rule, skip=skip)
                opt = f"opt_{py_name(target)}"
                params = " + ".join(f"list({py_name(t.parts[0])}.parameters())"
                                    for t in stmt.targets) if len(stmt.targets) > 1 else \
                    f"{py_name(target)}.parameters()"
                if rule.name == "trpo":
                    options = "".join(f", {k}={v}" for k, v in refs.items())
                    lines.append(f"    {opt} = rules.optimizer({rule.name!r}, {params}{options})")
                else:
                    options = "".join(f", {k}={refs[k]}" for k in ("l2", "alpha", "eps")
                                      if k in refs)
                    lines.append(f"    {opt} = rules.optimizer({rule.name!r}, "
                                 f"{params}, lr={refs['lr']}{options})")
                names.append(f"{opt}={opt}")
                model = self.traced(loop_name, stmt)
                if model is not None:
                    metas = ", ".join(py_name(t.parts[0]) for t in stmt.targets)
                    decay = self.out.hyper(
                        f"{loop_name}.through.trace", repr(float(through_setting(stmt, "trace", 0))),
                        "float", R.THROUGH.params[1].doc, R.THROUGH.params[1])
                    lines.append(f"    trace_{py_name(model)} = adaptation.Trace("
                                 f"{py_name(model)}, [{metas}], decay={decay})")
                    names.append(f"trace_{py_name(model)}=trace_{py_name(model)}")
        lines.append(f"    return runs.State({', '.join(names)})")
        return "\n".join(lines)

    def model(self, name: str, info, family: str) -> list[str]:
        """The constructor lines of a model the loops use."""
        core_call = next(a.value for a in info.decl.value.args if a.name in ("core", "net"))
        refs = self.entry_hypers(name, core_call, info.core)
        heads = {h.id: k.id for h, k in _heads(info)}
        if info.core.name == "mlp":
            activation = bind_args(core_call, info.core).get("activation")
            activation = activation.id if isinstance(activation, A.Name) else "tanh"
            return [f"    {py_name(name)} = models.FeedForward(",
                    f"        {refs.get('hidden', '[64, 64]')}, {activation!r}, "
                    f"inputs={info.inputs!r}, heads={heads!r},",
                    f"        obs_dim={family}.obs_dim, n_actions={family}.n_actions)"]
        scope = next((m.scope.id for m in self.c.memories.values()
                      if m.value is None and m.target.parts[0] == name), "task")
        reset = ', reset="episode"' if scope == "episode" else ""
        return [f"    {py_name(name)} = models.Recurrent(",
                f"        {info.core.name!r}, {refs.get('hidden', '64')}, "
                f"inputs={info.inputs!r},",
                f"        heads={heads!r}, obs_dim={family}.obs_dim, "
                f"n_actions={family}.n_actions{reset})"]

    def loop(self, name: str) -> str:
        c = self.c
        loop = c.loops[name]
        d = loop.decl
        if self.adapts(name):
            return self.adapt_inner(name) if d.kind == "inner" else self.adapt_outer(name)
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
                        lines.append(f"    {py_name(stmt.output.id)} = rollout.samples(env, "
                                     "state.gen)")
                    elif not isinstance(stmt.policy, A.Name):
                        self.out.note(f"behaviour policy {stmt.policy.func_name}")
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
        """The loss call, its constant arguments made Args fields; meta-parameters among its
        arguments are read from the state."""
        if not isinstance(loss, A.Call) or loss.func_name not in self.funcs:
            return Expr(self.c, self.out, set(), self.funcs, metas=True).lower(loss)
        parts = []
        for a in loss.args:
            const = _value(a.value)
            if a.name is not None and const is not None:
                parts.append(f"{a.name}=" + self.out.hyper(
                    f"{loop}.{target}.{loss.func_name}.{a.name}", const[0], const[1],
                    f"argument of {loss.func_name}"))
            else:
                text = Expr(self.c, self.out, set(), self.funcs, metas=True).lower(a.value)
                parts.append(text if a.name is None else f"{a.name}={text}")
        return f"{py_name(loss.func_name)}(batch, heads{''.join(', ' + p for p in parts)})"

    # -- gradient-based adaptation (MAML, FO-MAML, Reptile, Meta-SGD, meta-gradients) --

    def adapts(self, loop_name: str) -> bool:
        """Whether a loop is (or runs) an inner loop that adapts parameters by gradient."""
        loop = self.c.loops[loop_name].decl
        inner = loop_name if loop.kind == "inner" else (loop.over.id if loop.over else None)
        return inner is not None and \
            any(isinstance(s, A.Adapt) for s in self.c.loops[inner].decl.body)

    def traced(self, loop_name: str, stmt: A.Update) -> str | None:
        """The model whose meta-gradient trace an outer update keeps (see adaptation.Trace),
        if it can keep one: the update steps scalar meta-parameters by a gradient
        optimizer through the inner loop, whose adapted model carries over (`memory M'
        reset never`, so that θ depends on η from earlier updates)."""
        decl = self.c.loops[loop_name].decl
        if stmt.through is None or decl.over is None or \
                stmt.rule.func_name not in ("adam", "rmsprop") or \
                any(t.parts[0] not in self.c.metas or
                    self.c.metas[t.parts[0]].value.func_name not in ("bounded", "positive")
                    for t in stmt.targets):
            return None
        carried = {m.target.parts[0].rstrip("'") for m in self.c.memories.values()
                   if m.target.parts[0].endswith("'") and m.scope.id == "never"}
        models = [m for m in self.adapted_models(decl.over.id) if m in carried]
        return models[0] if len(models) == 1 else None

    def adapted_models(self, inner: str) -> list[str]:
        return [s.targets[0].parts[0] for s in self.c.loops[inner].decl.body
                if isinstance(s, A.Adapt)]

    def theta(self, inner: str, tasks: str, state: str = "state") -> str:
        """θ per task, a dict of the inner loop's adapted models' parameters [tasks, ...]."""
        return "{" + ", ".join(f"{m!r}: {state}.{py_name(m)}.parameters_per_task({tasks})"
                               for m in self.adapted_models(inner)) + "}"

    def collect_lines(self, loop: str, stmt: A.Collect, params: str, indent: str) -> list[str]:
        """One `collect` with per-task parameters: episodes are parallel copies of each
        task (feed-forward policies have no memory to carry between them)."""
        decl = self.c.loops[loop].decl
        family = f"state.{py_name(self.task_family(decl.over.id if decl.over else loop))}"
        out = py_name(stmt.output.id)
        count = self.out.hyper(f"{loop}.{stmt.output.id}.count", str(int(stmt.count.value)),
                               "int", f"collect N {stmt.unit.id} per task",
                               R.P("count", "int", low=1))
        if not isinstance(stmt.policy, A.Name):
            self.out.note(f"behaviour policy {stmt.policy.func_name}")
            return []
        model = f"state.{py_name(stmt.policy.id.rstrip(chr(39)))}"
        if stmt.unit.id == "samples":
            return [f"{indent}{out} = rollout.samples({family}.env(instances, copies={count}), "
                    "state.gen)"]
        if stmt.unit.id == "episodes":
            return [f"{indent}env = {family}.env(instances, copies={count})",
                    f"{indent}{out} = rollout.collect({model}, env, env.horizon, state.gen, "
                    f"params={params})"]
        return [f"{indent}env = {family}.env(instances)",
                f"{indent}{out} = rollout.collect({model}, env, {count}, state.gen, "
                f"params={params})"]

    def inner_rate(self, loop: str, stmt: A.Adapt) -> str:
        """The step size of an `adapt`: a number (an Args field) or a meta-parameter."""
        rule = R.REGISTRY[stmt.rule.func_name]
        lr = bind_args(stmt.rule, rule).get("lr")
        if isinstance(lr, A.Name) and lr.id in self.c.metas:
            return f"state.{py_name(lr.id)}()"
        return self.entry_hypers(f"{loop}.{stmt.targets[0].parts[0]}", stmt.rule, rule)["lr"]

    def adapt_inner(self, name: str) -> str:
        loop = self.c.loops[name]
        steps = self.out.hyper(f"{name}.steps", str(loop_setting(loop, "steps")), "int",
                               "inner steps per task (collect, then adapt)",
                               R.SETTINGS["inner"][0])
        collects = [s for s in loop.decl.body if isinstance(s, A.Collect)]
        lines = [f"def {py_name(name)}(args: Args, state: runs.State, instances, params: dict, "
                 "steps: int, order: int, replay: list | None = None, "
                 "later_lr_scale: float = 1.0) -> tuple[dict, list]:",
                 f'    """inner loop {name}(task ~ {self.task_family(name)}): `steps` rounds of '
                 "collect-then-adapt per task, from `params` (one set per task, the tasks "
                 "vmapped); order 1 makes each gradient a constant. `replay` re-adapts on the "
                 "trajectories of an earlier call (the outer step recomputes θ′ from θ); "
                 'steps after the first take `later_lr_scale` times the step size."""',
                 f"    params, rounds = dict(params), []",
                 f"    for k in range(steps):",
                 f"        scale = 1.0 if k == 0 else later_lr_scale"]
        adapted = {m: f"params[{m!r}]" for m in self.adapted_models(name)}
        if collects:
            lines.append("        if replay is None:")
            for stmt in collects:
                lines += self.collect_lines(name, stmt, adapted.get(stmt.policy.id, "None"),
                                            " " * 12)
            lines.append("        else:")
            lines += [f"            {py_name(c.output.id)} = replay[k][{c.output.id!r}]"
                      for c in collects]
        losses = []
        for stmt in loop.decl.body:
            if not isinstance(stmt, A.Adapt) or not isinstance(stmt.objective, A.Minimize):
                continue
            target = stmt.targets[0].parts[0]
            loss = self.objective(name, target, stmt.objective.loss)
            lines += [f"        params[{target!r}], loss_{py_name(target)} = adaptation.sgd(",
                      f"            state.{py_name(target)}, params[{target!r}], "
                      f"{py_name(stmt.objective.data.id)},",
                      f"            lambda batch, heads: {loss},",
                      f"            lr={self.inner_rate(name, stmt)}, order=order, scale=scale)"]
            losses.append(f'"loss_{target}": loss_{py_name(target)}')
        record = [f"{c.output.id!r}: {py_name(c.output.id)}" for c in collects] + losses + \
            ['"params": dict(params)']
        lines += ["        rounds.append({" + ", ".join(record) + "})",
                  "    return params, rounds"]
        return "\n".join(lines)

    def adapt_outer(self, name: str) -> str:
        c = self.c
        loop = c.loops[name]
        inner = loop.decl.over.id
        family = f"state.{py_name(self.task_family(inner))}"
        settings = {p.name: p for p in R.SETTINGS["outer"]}
        iterations = self.out.hyper(f"{name}.iterations", str(loop_setting(loop, "iterations")),
                                    "int", "outer iterations", settings["iterations"])
        batch = self.out.hyper(f"{name}.meta_batch", str(loop_setting(loop, "meta_batch")),
                               "int", "task instances per iteration", settings["meta_batch"])
        inner_steps = f"args.{py_name(inner)}__steps"
        models = self.adapted_models(inner)
        lines = [f"def {py_name(name)}(args: Args, state: runs.State, run: runs.Run) -> None:",
                 f'    """outer loop {name} over {inner}: adapt θ to each task of the batch, '
                 'then update from the adapted θ′."""',
                 f"    for iteration in run.iterations({name!r}, {iterations}):",
                 f"        instances = {family}.sample({batch}, {family}.horizon, state.gen)",
                 f"        adapted, rounds = {py_name(inner)}(args, state, instances, "
                 f"{self.theta(inner, batch)}, {inner_steps}, order=1)"]
        outer_data = []
        for stmt in loop.decl.body:
            if isinstance(stmt, A.Collect):
                model = stmt.policy.id.rstrip("'")
                params = f'adapted["{model}"]' if stmt.policy.id.endswith("'") else "None"
                lines += self.collect_lines(name, stmt, params, " " * 8)
                outer_data.append(stmt.output.id)
        metrics = []
        for stmt in loop.decl.body:
            if not isinstance(stmt, A.Update):
                continue
            target = stmt.targets[0].parts[0]
            rule = R.REGISTRY[stmt.rule.func_name]
            refs = self.entry_hypers(f"{name}.{target}", stmt.rule, rule,
                                     skip=("polyak", "epochs", "minibatches"))
            if isinstance(stmt.objective, A.Toward):
                anneal = f" * ((1 - run.progress) if {refs['anneal']} else 1)" \
                    if "anneal" in refs else ""
                lines.append(f"        adaptation.reptile(state.{py_name(target)}, "
                             f"adapted[{target!r}], lr={refs['lr']}{anneal})")
                continue
            if stmt.through is None:
                self.out.note("an update without `through` after gradient adaptation")
                continue
            order = self.out.hyper(f"{name}.through.order",
                                   str(through_setting(stmt, "order", 2)), "int",
                                   "2: differentiate through the inner steps; 1: first order",
                                   R.THROUGH.params[0])
            loss = self.objective(name, target, stmt.objective.loss)
            data = stmt.objective.data.id
            model = models[0]
            options = "".join(f", {k}={refs[k]}" for k in ("max_grad_norm",) if k in refs)
            theta = self.theta(inner, batch)
            traced = self.traced(name, stmt)
            if traced is not None:  # θ whose gradient to η is the trace
                theta = (f"{{{traced!r}: state.trace_{py_name(traced)}.theta("
                         f"state.{py_name(traced)}, {batch})}}")
                options += f", trace=state.trace_{py_name(traced)}"
            lines += [
                "",
                "        def outer() -> adaptation.Outer:",
                '            """θ′ recomputed from θ on the same trajectories, so that the outer '
                'gradient goes through the inner steps."""',
                f"            adapted, _ = {py_name(inner)}(args, state, instances, "
                f"{theta},",
                f"                {inner_steps}, order={order}, replay=rounds)",
                f"            return adaptation.objective(state.{py_name(model)}, "
                f"adapted[{model!r}], {py_name(data)},",
                f"                lambda batch, heads: {loss})",
                "",
                f"        loss_{py_name(target)} = rules.outer_step(state.opt_{py_name(target)}, "
                f"outer{options})"]
            metrics.append(f'"losses/{target}": loss_{py_name(target)}')
            if rule.name == "trpo":  # the step it took: KL and surrogate improvement
                metrics += [f'"charts/{target}_kl": state.opt_{py_name(target)}.kl',
                            f'"losses/{target}_improvement": '
                            f"state.opt_{py_name(target)}.improvement"]
        for mem in c.memories.values():  # `memory agent' reset never`: θ ← θ′, online
            model = mem.target.parts[0].rstrip("'")
            if mem.target.parts[0].endswith("'") and model in models:
                lines.append(f"        adaptation.carry_over(state.{py_name(model)}, "
                             f"adapted[{model!r}])")
        for meta_name, decl in c.metas.items():
            if decl.value.func_name in ("bounded", "positive"):
                metrics.append(f'"charts/{meta_name}": state.{py_name(meta_name)}().item()')
        first = self.first_collect(inner)
        if first is not None and first.unit.id != "samples":
            metrics.insert(0, f'"charts/return": {family}.score(rounds[0][{first.output.id!r}])'
                              ".mean().item()")
            for data in outer_data:
                metrics.insert(1, f'"charts/adapted_return": {family}.score({py_name(data)})'
                                  ".mean().item()")
            if not outer_data:  # Reptile: the last inner round is the most adapted one
                metrics.insert(1, f'"charts/last_round_return": {family}.score(rounds[-1]'
                                  f'[{first.output.id!r}]).mean().item()')
            steps = [f'rounds[0][{first.output.id!r}]["done"].numel() * {inner_steps}'] + \
                [f'{py_name(d)}["done"].numel()' for d in outer_data]
        else:
            metrics += [f'"losses/{m}_inner": rounds[0]["loss_{m}"].mean().item()'
                        for m in models]
            steps = ["0"]
        lines.append(f"        run.log(iteration, {{{', '.join(metrics)}}}, "
                     f"env_steps={' + '.join(steps)})")
        return "\n".join(lines)

    def adapt_evaluate(self, settings: dict, against: list[str], label: str,
                       metric: str) -> str:
        """After k inner steps on held-out tasks: the meta-learned θ, a θ pretrained on the
        task mixture, and the initial θ, each adapted on the same tasks and draws. `label`
        names the held-out family; the results name the run's instance count."""
        inner = next(n for n, l in self.c.loops.items() if l.decl.kind == "inner")
        outer = next(n for n, l in self.c.loops.items() if l.decl.kind == "outer")
        family = f"state.{py_name(self.task_family(inner))}"
        steps = [int(i.value) for i in getattr(settings.get("adapt_steps"), "items", ())] or \
            [0, 1, 2, 3]
        for name in against:
            if name not in ADAPTATION_BASELINES:
                self.out.note(f"baseline {name} for an adaptation evaluation")
        self.out.hyper("evaluate.instances", str(held_out_count(settings)), "int",
                       "held-out task instances", R.P("instances", "int", low=1))
        scales = [float(_value(i)[0]) for i in getattr(settings.get("later_lr_scales"),
                                                         "items", ()) if _value(i)] or [1.0]
        if "pretrained" in against:
            self.out.hyper("evaluate.pretrain_iterations",
                           str(loop_setting(self.c.loops[outer], "iterations")), "int",
                           "iterations of the pretrained baseline's multi-task training",
                           R.P("iterations", "int", low=0))
        first = self.first_collect(inner)
        models = self.adapted_models(inner)
        learners = [f"SPEC: state"] + [f"{b!r}: pretrain(args)" if b == "pretrained" else
                                       f"{b!r}: build(args)" for b in against]
        pretrain = [
            "def pretrain(args: Args) -> runs.State:",
            '    """The `pretrained` baseline: θ from the same initialisation, trained on the '
            "task mixture by the inner loop's own rule (θ ← the tasks' mean θ′ each "
            'iteration): multi-task learning, no meta-learning."""',
            "    state = build(args)",
            "    for _ in range(args.evaluate__pretrain_iterations):",
            f"        instances = {family}.sample(args.{py_name(outer)}__meta_batch, "
            f"{family}.horizon, state.gen)",
            f"        adapted, _ = {py_name(inner)}(args, state, instances, "
            f"{self.theta(inner, f'args.{py_name(outer)}__meta_batch')}, 1, order=1)",
        ] + [f"        adaptation.carry_over(state.{py_name(m)}, adapted[{m!r}])" for m in models] \
            + ["    return state"]
        theta = self.theta(inner, "args.evaluate__instances", "learner")
        if first.unit.id == "samples":  # K-shot: every step re-reads the first K samples
            model = models[0]
            adapt = next(s for s in self.c.loops[inner].decl.body
                         if isinstance(s, A.Adapt) and s.targets[0].parts[0] == model)
            loss = self.objective(inner, model, adapt.objective.loss)
            count = f"args.{py_name(inner)}__{py_name(first.output.id)}__count"
            what = ("K-shot: from the meta-learned θ and from each baseline, k inner steps on "
                    "the same K samples of a task, each θ′_k scored on fresh samples of it")
            body = [
                f"        params = {theta}",
                f"        _, shots = {py_name(inner)}(args, learner, instances, params, 1, "
                "order=1)",
                f"        test = rollout.samples({family}.env(instances, copies={count}), "
                "learner.gen)",
                f"        _, rounds = {py_name(inner)}(args, learner, instances, params, "
                "max(steps), order=1,",
                "            replay=shots * max(steps), later_lr_scale=scale)",
                f"        thetas = [params[{model!r}]] + [r[\"params\"][{model!r}] for r in rounds]",
                f"        return [adaptation.losses(learner.{py_name(model)}, theta, test,",
                f"            lambda batch, heads: {loss}) for theta in thetas]"]
        else:  # RL: every step collects fresh trajectories with the policy it adapted
            what = ("the score after k inner steps from the meta-learned θ and from each "
                    "baseline")
            body = [
                f"        _, rounds = {py_name(inner)}(args, learner, instances, {theta},",
                "            max(steps) + 1, order=1, later_lr_scale=scale)",
                f"        return [{family}.score(r[{first.output.id!r}]) for r in rounds]"]
        lines = [
            "def evaluate(args: Args, state: runs.State, run: runs.Run) -> None:",
            f'    """Held-out tasks, {what}; the same tasks and random draws for every method. '
            "Each method's step size after the first step is the candidate that scores best "
            'on separate validation tasks."""',
            "    learners = {" + ", ".join(learners) + "}",
            f"    test_tasks = {family}.sample(args.evaluate__instances, {family}.horizon, "
            "torch.Generator().manual_seed(args.seed + 1))",
            f"    validation_tasks = {family}.sample(args.evaluate__instances, {family}.horizon, "
            "torch.Generator().manual_seed(args.seed + 3))",
            f"    steps = {steps!r}",
            "",
            "    def scores_of(learner: runs.State, instances, scale: float) -> list:",
            '        """Each task\'s score after k = 0, 1, ... inner steps, steps after the first '
            'scaled by `scale`."""',
            "        learner = learner.replace(gen=torch.Generator().manual_seed(args.seed + 2))",
        ] + body + [
            "",
            f"    scales = {{method: evaluation.best_scale({scales!r}, "
            f"lambda s: scores_of(learner, validation_tasks, s), steps, {metric!r})",
            "              for method, learner in learners.items()}",
            "    scores = {method: scores_of(learner, test_tasks, scales[method])",
            "              for method, learner in learners.items()}",
            "    run.write_eval(evaluation.after_adaptation(",
            f"        SPEC, scores, steps, tasks=args.evaluate__instances, metric={metric!r},",
            f'        label=f"held_out({label}, count = {{args.evaluate__instances}})", '
            "scales=scales))"]
        if "pretrained" not in against:
            return "\n".join(lines)
        return "\n".join(pretrain) + "\n\n\n" + "\n".join(lines)

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
        against = [item.func_name if isinstance(item, A.Call) else item.id
                   for item in getattr(settings.get("against"), "items", ())]
        metric = getattr(settings.get("metric"), "id", "total_reward")
        if self.adapts(inner) and "adapt_steps" in settings:
            held_out = settings.get("tasks")
            family = held_out.args[0].value if isinstance(held_out, A.Call) else held_out
            name = format_expr(family) if family is not None else self.task_family(inner)
            return self.adapt_evaluate(settings, against, name, metric)
        instances = self.out.hyper("evaluate.instances", str(held_out_count(settings)), "int",
                                   "held-out task instances", R.P("instances", "int", low=1))
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
        model = next(iter(self.c.loops[inner].policies.values()), None)
        if model is None:  # the missing behaviour policy is already noted
            model = "None"
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


def held_out_count(settings: dict) -> int:
    """An evaluate block's instance count: `held_out(tasks, count = N)`, or `instances`."""
    count = _count(settings, "instances", 1000)
    held_out = settings.get("tasks")
    if isinstance(held_out, A.Call) and held_out.func_name == "held_out":
        count = next((int(a.value.value) for a in held_out.args if a.name == "count"), count)
    return count


def through_setting(stmt: A.Update, name: str, default):
    """A constant argument of an update's `through INNER(order = 1, trace = 0.5)`."""
    if isinstance(stmt.through, A.Call):
        for arg in stmt.through.args:
            if arg.name == name:
                const = _value(arg.value)
                if const is not None:
                    return int(const[0]) if const[1] == "int" else float(const[0])
    return default


def _class_name(entry: str) -> str:
    """The runtime class of a registry entry: step_sizes → StepSizes."""
    return "".join(part.title() for part in entry.split("_"))


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
