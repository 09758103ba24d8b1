"""What Python supplies to the language: every primitive, with a typed signature.

Task sources, networks, memories, meta-parameter kinds, update rules, primitive
expression ops, fitness functions and evaluation baselines are all `Entry`s here:
name, kind, parameters (type, default, bounds, choices, doc), result type, traits.
The checker reads nothing else; docs/reference.md is generated from this table.
No torch here: `check` and `graph` must start fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

REQUIRED = object()

@dataclass(frozen=True)
class P:
    """One parameter of a registered entry."""

    name: str
    type: str
    default: object = REQUIRED
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # (low, ...] rather than [low, ...]
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    doc: str = ""
    built: bool = True  # False: the runtime has only the default (any other value: not built)
    item: str = "num"  # a list's items: num or int (bounded by low/high where given)
    # a rule parameter that only means something for a step with this fact (a `polyak`
    # rate: a loss that reads a target network); elsewhere it is neither set nor exposed
    applies_to: str | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def bounds_text(self) -> str:
        lo = "-inf" if self.low is None else _fmt(self.low)
        hi = "inf" if self.high is None else _fmt(self.high)
        return f"{'(' if self.low_open or self.low is None else '['}{lo}, {hi}" \
               f"{')' if self.high_open or self.high is None else ']'}"

    def in_bounds(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return False
        return True


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # tasks | core | model | memory | meta | rule | op | fitness | baseline
    params: tuple[P, ...]
    result: str
    doc: str
    variadic: bool = False  # extra positional arguments of the last parameter's type
    traits: frozenset[str] = field(default_factory=frozenset)
    # The runtime's implementation, `module.attribute`, the module by its short name in metadsl.runtime's packages (bound below);
    # "" where the PyTorch back end does not build the entry yet.
    impl: str = ""
    # For a task source: the evaluation baselines its implementation computes.
    provides: frozenset[str] = field(default_factory=frozenset)

    def param(self, name: str) -> P | None:
        return next((p for p in self.params if p.name == name), None)


def _gt0(name, type_, default=REQUIRED, doc=""):
    return P(name, type_, default, low=0, low_open=True, doc=doc)


def _unit(name, default=REQUIRED, doc=""):
    return P(name, "num", default, low=0, high=1, doc=doc)


# Sizes and counts have an upper bound: a typo of a few digits is an error at check time,
# not an allocation that fails (or a run that never ends) after training has started.
MAX_COUNT = 10 ** 7
MAX_UNITS = 16384  # units of one recurrent layer
# Numbers train in float32 (largest 3.4e38): a setting beyond this is a typo, and would
# overflow inside an optimizer rather than be refused.
MAX_MAGNITUDE = 1e30


def _count(name, default=REQUIRED, doc="", low=1, high=MAX_COUNT):
    return P(name, "int", default, low=low, high=high, doc=doc)


REGISTRY: dict[str, Entry] = {}


def _add(name, kind, params, result, doc, traits=(), variadic=False):
    REGISTRY[name] = Entry(name, kind, tuple(params), result, doc, variadic, frozenset(traits))


# ---- task distributions ------------------------------------------------------------
# Traits say what the tasks are (bandit / mdp / supervised / continuous ...); the
# checker uses them for baselines and memory scopes. `rows`: a batch of instances can be
# repeated as rows (`population.tile`), so a population's members can run stacked
# (execution = batched).

_add("bernoulli_bandit", "tasks", [
    P("arms", "int", 5, low=2, doc="number of arms k; each arm pays 1 with p ~ U(0, 1)"),
], "tasks", "k-armed Bernoulli bandits, p ~ U(0,1) per arm; each pull is a one-step episode "
   "(RL² Table 1).", traits={"bandit", "discrete"})
_add("dependent_bandit", "tasks", [
    P("difficulty", "symbol", "uniform", choices=("uniform", "easy", "medium", "hard",
                                                   "independent"),
      doc="p1 ~ U(0,1) (uniform), from {0.1,0.9} (easy), {0.25,0.75} (medium), {0.4,0.6} "
          "(hard), with p2 = 1 − p1; `independent` draws p1, p2 ~ U(0,1) separately"),
], "tasks", "Wang et al. 2016 two-armed bandits with dependent arms.", traits={"bandit", "discrete"})
_add("informative_arm_bandit", "tasks", [
    P("arms", "int", 11, low=3, doc="arms; one informative arm reveals which other arm pays"),
], "tasks", "Wang et al. 2016 11-armed task: one arm pays 5, one informative arm pays 0.1×index "
   "of the rewarding arm, the rest pay 1.", traits={"bandit", "discrete"})
_add("contextual_bandit", "tasks", [
    _count("arms", 10, "arms per bandit"),
    _count("contexts", 10, "distinct contexts per task; each is a bandit of its own"),
    _count("repeats", 2, "how often each context recurs within a task"),
    _count("context_dim", 16, "dimension of the random context vector"),
    _count("pulls", 10, "pulls per episode (one visit of a context)"),
], "tasks", "Ritter et al. 2018 recurring contextual bandits: each context (a ±1 barcode, the "
   "observation) is a bandit whose best arm pays with p 0.9 and the others with 0.1; an "
   "episode is one visit, and every context comes back later in the trial, so an episodic "
   "memory can recall what was found on it.", traits={"bandit", "discrete"})
_add("tabular_mdp", "tasks", [
    _count("states", 10, "|S|", low=1), _count("actions", 5, "|A|", low=2),
    _count("horizon", 10, "steps per episode"),
    P("reward_mean", "num", 1.0, doc="μ of the prior N(μ, 1) of each mean reward"),
    _gt0("reward_std", "num", 1.0, "std of the reward noise N(mean, std)"),
], "tasks", "Random tabular MDPs: rewards N(μ_sa, 1) with μ_sa ~ N(1, 1), transitions from a "
   "flat Dirichlet (RL² Table 2).", traits={"mdp", "discrete"})
_add("random_quadratic", "tasks", [
    P("coef_low", "num", -1.0, doc="coefficients a..f ~ U[coef_low, coef_high]"),
    P("coef_high", "num", 1.0),
    P("x_low", "num", -1.0, doc="inputs x ~ U[x_low, x_high]²"),
    P("x_high", "num", 1.0),
], "tasks", "Hochreiter et al. 2001: y = a·x1² + b·x2² + c·x1·x2 + d·x1 + e·x2 + f.",
     traits={"supervised"})
_add("sine", "tasks", [
    _gt0("amp_low", "num", 0.1), _gt0("amp_high", "num", 5.0, "amplitude a ~ U[amp_low, amp_high]"),
    P("phase_low", "num", 0.0), P("phase_high", "num", math.pi, doc="phase b ~ U[phase_low, phase_high]"),
    P("x_low", "num", -5.0), P("x_high", "num", 5.0, doc="inputs x ~ U[x_low, x_high]"),
], "tasks", "Sine regression y = a·sin(x + b) (MAML §5.1, Reptile).", traits={"supervised"})
_add("nav2d", "tasks", [
    P("goal_low", "num", -0.5), P("goal_high", "num", 0.5, doc="goal ~ U([goal_low, goal_high]²)"),
    _count("horizon", 100), _gt0("action_clip", "num", 0.1, "actions clipped to ±action_clip"),
    _gt0("action_scale", "num", 1.0, "the policy's action is multiplied by this before clipping "
                                      "(0.1 with clip 0.1 is rllab's normalize(): the policy acts "
                                      "in [−1, 1], as in MAML's point-env code)"),
    P("arc", "list", [], low=-360, high=360, item="num",
      doc="[from, to] degrees: goals on the circle of radius `arc_radius` between these "
          "angles (EPG's half-circle tasks); [] for the square"),
    _gt0("arc_radius", "num", 0.5, "the goal circle's radius"),
    P("sparse", "bool", False, built=False, doc="reward only inside goal_radius (MAESN)"),
    _gt0("goal_radius", "num", 0.2, "radius of the sparse reward region"),
], "tasks", "2-D point navigation from the origin, reward −‖pos − goal‖ (MAML §5.3).",
     traits={"mdp", "continuous", "rows"})
_add("cheetah_vel", "tasks", [
    P("low", "num", 0.0), P("high", "num", 2.0, doc="goal velocity ~ U[low, high]"),
    _count("horizon", 200),
], "tasks", "HalfCheetah-v5 (MuJoCo) running at a goal velocity (MAML §5.3).",
     traits={"mdp", "continuous", "gym", "rows"})
_add("cheetah_dir", "tasks", [_count("horizon", 200)], "tasks",
     "HalfCheetah-v5 running forward or backward, direction ±1 (MAML §5.3).",
     traits={"mdp", "continuous", "gym", "rows"})
_add("gym", "tasks", [
    P("id", "str", doc="a registered gymnasium environment id, e.g. \"CartPole-v1\""),
    P("horizon", "int", 0, low=0, doc="episode step limit; 0 keeps the env's own"),
    P("randomize", "dict", {}, doc="parameter → [low, high] scale ranges sampled per task "
                                 "(domain randomization)"),
], "tasks", "Any gymnasium environment as a task source, with parameters randomized per task.",
     traits={"mdp", "gym", "rows"})
_add("chain", "tasks", [
    _count("length", 30, low=2), _count("horizon", 60),
    P("near_reward", "num", 0.1, doc="paid at once for stepping back to the start"),
    P("far_reward", "num", 10.0, doc="paid at the far end of the chain"),
    _unit("slip", 0.1, "probability that an action is replaced by its opposite"),
], "tasks", "A chain MDP where a short-sighted discount prefers the near, small reward: "
   "γ matters (meta-gradient RL).", traits={"mdp", "discrete"})
_add("point2d", "tasks", [
    _count("horizon", 100), _gt0("bound", "num", 1.0, "positions clipped to ±bound"),
    _gt0("action_clip", "num", 0.1),
], "tasks", "A reward-free 2-D point environment (the smallest DIAYN setting).",
     traits={"mdp", "continuous", "reward_free"})
_add("bipedal_terrain", "tasks", [
    P("roughness", "list", [0.0, 0.0], doc="initial [low, high] ground roughness"),
    P("stump_height", "list", [0.0, 0.0], doc="initial [low, high] stump height"),
    P("gap_width", "list", [0.0, 0.0], doc="initial [low, high] gap width"),
    _count("horizon", 2000),
], "tasks", "POET's parameterized BipedalWalker terrains (Box2D); POET mutates the parameters.",
     traits={"mdp", "continuous", "gym", "evolvable"})
_add("skill_tasks", "tasks", [
    P("env", "tasks", doc="the reward-free environment"),
    P("discriminator", "model", doc="q(z|s); reward r_z(s) = log q(z|s)"),
    _count("skills", 50, low=2),
], "tasks", "Unsupervised meta-RL (Gupta et al. 2018): one task per skill z, rewarded by a "
   "discriminator.", traits={"mdp", "continuous"})
_add("held_out", "op", [
    P("tasks", "tasks"), _count("count", 1000, "how many task instances to draw"),
], "tasks", "Fresh task instances never seen in training, drawn with a separate seed.")

# ---- network cores, models and heads --------------------------------------------------

_ACT = ("relu", "tanh", "elu", "gelu")
_add("mlp", "core", [
    P("hidden", "list", [64, 64], low=1, high=MAX_UNITS, item="int",
      doc="units per hidden layer"),
    P("activation", "symbol", "tanh", choices=_ACT),
], "core", "A feed-forward network.")
_add("gru", "core", [_count("hidden", 256, high=MAX_UNITS)], "core", "A GRU; its hidden state is memory.",
     traits={"stateful"})
_add("lstm", "core", [_count("hidden", 256, high=MAX_UNITS), _count("layers", 1)], "core",
     "An LSTM; its hidden and cell state are memory.", traits={"stateful"})
_add("episodic_lstm", "core", [
    _count("hidden", 48, high=MAX_UNITS),
    _count("capacity", 1000, "stored (key, cell state) pairs per task; the oldest is replaced"),
    _count("k", 1, "neighbours recalled"),
], "core", "Ritter et al. 2018: an LSTM whose cell state at the end of each episode is stored "
   "under that episode's observation (a context) and reinstated, when it recurs, through a "
   "learned reinstatement gate r_t: c_t = f_t c_{t−1} + i_t g_t + r_t c_ep, where c_ep sums the "
   "k nearest stored cells weighted by exp(−‖key − key_i‖²), so a new context recalls "
   "(almost) nothing.", traits={"stateful", "episodic"})
_add("temporal_conv", "core", [
    P("channels", "list", [16, 32], low=1, high=MAX_UNITS, item="int",
      doc="channels of each 1-D convolution over time"),
    P("kernel", "list", [6, 4], low=1, high=4096, item="int", doc="each convolution's width"),
    P("stride", "list", [5, 2], low=1, high=4096, item="int", doc="each convolution's stride"),
    _count("context", 32, "units of the context vector the convolutions' mean gives", high=MAX_UNITS),
    P("hidden", "list", [16], low=1, high=MAX_UNITS, item="int",
      doc="hidden layers of the per-step MLP of (features, context)"),
    _count("signals", 1, "values per step the loss passes it besides its inputs, e.g. "
                         "log π(a|s)", high=64),
], "core", "EPG's loss network (openai/EPG's Conv1DLoss): strided 1-D convolutions over the "
   "window in time order, their mean over time a context vector, and an MLP of each step's "
   "features and the context giving the loss per step.")

_INPUTS = ("obs", "prev_action", "prev_reward", "prev_done", "timestep", "x", "prev_y", "z",
           "action", "context")

@dataclass(frozen=True)
class HeadKind:
    """What a model's head computes: a distribution or a tensor; built or not yet."""

    value: str  # dist | tensor
    doc: str
    built: bool = True
    bounded: bool = False  # its actions fill the task family's action box (action_bounds)


HEAD_KINDS = {
    "categorical": HeadKind("dist", "a categorical over the task's actions"),
    "gaussian": HeadKind("dist", "a diagonal Gaussian with a state-independent log std"),
    "tanh_gaussian": HeadKind("dist", "a Gaussian with a state-dependent log std, squashed by "
                                      "tanh into the task's action box (SAC); log_prob "
                                      "includes the change of variables", bounded=True),
    "deterministic": HeadKind("tensor", "a deterministic action", built=False),
    "value": HeadKind("tensor", "a state value V(s)"),
    "normalized_value": HeadKind("tensor", "a state value V(s) learned in normalised units "
                                           "(PopArt, van Hasselt et al. 2016): the head's "
                                           "output is scaled by running statistics of the "
                                           "returns it is fitted to, its weights are "
                                           "rescaled when they move so its values are kept, "
                                           "and a squared error on it has the gradient of "
                                           "the normalised error, whatever the returns' "
                                           "scale"),
    "regression": HeadKind("tensor", "a scalar prediction"),
    "q_values": HeadKind("tensor", "one value per action, Q(s, ·); called as `q(s, a)` it "
                                   "gives Q(s, a)"),
    "q_value": HeadKind("tensor", "a state-action value Q(s, a): a network of its own, as "
                                  "deep as the model's net, on the model's inputs and the "
                                  "action (a recurrent model's: on its memory's output); "
                                  "`q(s, a)` evaluates it at a"),
    "embedding": HeadKind("tensor", "an embedding vector as wide as the network's last "
                                    "layer (NEC's keys)"),
}
_HEADS = tuple(HEAD_KINDS)
_add("recurrent", "model", [
    P("core", "core", doc="gru(...), lstm(...) or episodic_lstm(...)"),
    P("inputs", "list", ["obs"], choices=_INPUTS, doc="what the core sees each step"),
    P("heads", "dict", choices=_HEADS, doc="head name → head kind"),
    P("embed", "int", 0, low=0, doc="units of an input embedding layer; 0 for none"),
], "model", "A recurrent learner (RL², Wang 2016, Hochreiter 2001).", traits={"recurrent"})
_add("policy", "model", [
    P("net", "core", doc="mlp(...)"),
    P("inputs", "list", ["obs"], choices=_INPUTS),
    P("heads", "dict", choices=_HEADS),
], "model", "A feed-forward policy and/or value network.")
_add("regressor", "model", [
    P("net", "core"), P("inputs", "list", ["x"], choices=_INPUTS),
    P("heads", "dict", {"pred": "regression"}, choices=_HEADS),
], "model", "A feed-forward regression network (sine regression).")
_add("loss_net", "model", [
    P("net", "core", doc="temporal_conv(...)"),
    P("inputs", "list", ["obs", "action", "reward", "done"], choices=_INPUTS + ("reward", "done"),
      doc="the trajectory fields of each step it reads"),
], "model", "A learned loss L_φ (EPG): called in a loss on the data's steps in time order, "
   "`L(log_prob(pi, action))`, it gives a loss per step.", traits={"loss"})
_add("encoder", "model", [
    P("net", "core"), P("inputs", "list", ["obs"], choices=_INPUTS),
    P("heads", "dict", {"h": "embedding"}, choices=_HEADS),
], "model", "An embedding network h = f(s) (NEC's keys).")
_add("discriminator", "model", [
    P("net", "core"), _count("skills", 50, low=2),
    P("inputs", "list", ["obs"], choices=_INPUTS),
], "model", "q(z|s) over skills; head `q_z` (categorical).", traits={"discriminator"})

# ---- memories -----------------------------------------------------------------------

_add("dnd", "memory", [
    P("key", "model", doc="the embedding network h = f(s)"),
    _count("actions", 2, low=1), _count("capacity", 50000), _count("k", 50),
    _gt0("delta", "num", 1e-3, "kernel 1/(‖h − h_i‖² + δ)"),
], "memory", "NEC's differentiable neural dictionary, one per action.",
     traits={"table", "differentiable", "stateful"})
_add("table", "memory", [
    _count("actions", 2, low=1), _count("capacity", 1000000, "entries per action"),
    _count("k", 11, "nearest neighbours for unseen states"),
    _count("projection", 64, "random projection dimension of the observation"),
], "memory", "MFEC's Q_EC table per action with kNN estimates and LRU eviction.",
     traits={"table", "stateful", "sized"})
_add("buffer", "memory", [_count("capacity", 100000)], "memory",
     "A replay buffer of transitions (first in, first out).", traits={"buffer", "stateful"})
_add("latent", "memory", [
    P("mu", "meta", doc="the per-task mean μ_i"), P("log_sigma", "meta", doc="the per-task log σ_i"),
], "memory", "MAESN's latent z ~ N(μ_i, σ_i), drawn when the memory resets and held until then.",
     traits={"latent", "stateful"})
_add("skill", "memory", [_count("count", 50, low=2)], "memory",
     "A skill z ~ Uniform{1..count}, drawn when the memory resets (DIAYN).",
     traits={"latent", "stateful"})

# ---- meta-parameters ------------------------------------------------------------------

_add("bounded", "meta", [
    P("init", "num"), P("low", "num", 0.0), P("high", "num", 1.0),
], "meta", "A scalar in (low, high), learned through a sigmoid (γ, λ in meta-gradient RL).",
     traits={"scalar"})
_add("positive", "meta", [_gt0("init", "num")], "meta",
     "A positive scalar, learned through its logarithm (learned step sizes).",
     traits={"scalar"})
_add("vector", "meta", [
    _count("dim"), P("init", "num", 0.0),
    P("per", "symbol", "global", choices=("global", "task"), doc="one vector, or one per task"),
], "meta", "A real vector (MAESN's μ_i and log σ_i with per = task).")
_add("step_sizes", "meta", [P("model", "model"), _gt0("init", "num", 0.1)], "meta",
     "One learned inner step size per parameter of a model (Meta-SGD).")

# ---- update rules -------------------------------------------------------------------
# gradient: minimises `on LOSS over DATA`; differentiable: an inner step the outer
# loop may differentiate through (second order); evolutionary: `maximizing FITNESS`.

_GRADIENT_STEPS = _count("steps", 1, "gradient steps per round of the inner loop, all on "
                                     "that round's data")
_add("sgd", "rule", [_gt0("lr", "num", 0.1, "step size α (may be a meta-parameter)"),
                     _GRADIENT_STEPS], "rule",
     "Plain gradient descent; differentiable, so an outer loop can go through it.",
     traits={"gradient", "differentiable"})
_add("meta_sgd", "rule", [P("lr", "meta", doc="a step_sizes(...) meta-parameter"),
                          _GRADIENT_STEPS], "rule",
     "Gradient descent with a learned step size per parameter (Meta-SGD).",
     traits={"gradient", "differentiable"})
_LR_SCHEDULE = P("schedule", "symbol", "constant", choices=("constant", "linear"),
                 doc="the learning rate over the loop's iterations: constant, or decayed "
                     "linearly from lr to 0 (CleanRL's anneal_lr)")
_add("adam", "rule", [
    _gt0("lr", "num", 3e-4), _count("epochs", 1, "passes over the data per update"),
    _count("minibatches", 1), P("max_grad_norm", "num", 0.0, low=0, doc="0: no clipping"),
    P("polyak", "num", 0.0, low=0, high=1,
      doc="rate τ of the target network's Polyak averaging after each step, θ⁻ ← (1 − τ)θ⁻ "
          "+ τθ, for a loss that reads `target(head)`", applies_to="target_network"),
    P("l2", "num", 0.0, low=0), _LR_SCHEDULE,
], "rule", "Adam (PPO-style epochs and minibatches optional).", traits={"gradient"})
_add("rmsprop", "rule", [
    _gt0("lr", "num", 7e-4), _unit("alpha", 0.99), _gt0("eps", "num", 1e-5),
    P("max_grad_norm", "num", 0.0, low=0), _LR_SCHEDULE,
], "rule", "RMSprop (A2C, Wang et al. 2016).", traits={"gradient"})
_add("trpo", "rule", [
    _gt0("max_kl", "num", 0.01), _count("cg_iters", 10), _gt0("damping", "num", 1e-5),
    P("backtrack", "num", 0.8, low=0, high=1, low_open=True, high_open=True),
    _count("line_search_steps", 15),
], "rule", "Trust-region policy optimisation: conjugate gradient on Fisher-vector products, "
   "KL line search (MAML's RL outer step).", traits={"gradient", "line_search"})
_add("es", "rule", [
    _count("population", 256, "members per generation (even with mirrored sampling)", low=2),
    _gt0("sigma", "num", 0.01, "noise scale σ of the perturbations θ + σε"),
    _gt0("lr", "num", 1e-2, "Adam's step size on the NES estimate"),
    _unit("beta1", 0.9, "Adam's β₁ (EPG uses 0)"),
    P("l2", "num", 0.0, low=0, doc="weight decay: Adam steps on −ĝ + l2·θ"),
    _unit("lr_decay_at", 1.0, "fraction of training after which lr is ×0.1; 1: never"),
    P("lr_decay", "num", 1.0, low=0, high=1, low_open=True,
      doc="lr × this per generation (POET: 0.9999)"),
    P("sigma_decay", "num", 1.0, low=0, high=1, low_open=True,
      doc="σ × this per generation (POET: 0.999)"),
    P("ranks", "symbol", "centered", choices=("centered", "none"),
      doc="fitness shaping: centered ranks in [−0.5, 0.5], or the raw fitnesses"),
    P("mirrored", "bool", True, doc="members in pairs θ ± σε sharing one noise draw"),
    P("common_draws", "bool", False,
      doc="every member acts with the same random draws (actions, environment seeds, fresh "
          "networks): common random numbers, so fitnesses differ by the perturbations alone"),
], "rule", "Evolution strategies (Salimans et al. 2017): the NES gradient estimate over a "
   "population of perturbations, an Adam step.", traits={"evolutionary"})
_add("reptile", "rule", [
    _gt0("lr", "num", 0.1, "outer step ε"),
    P("anneal", "bool", True, doc="decay ε linearly to 0 over training"),
], "rule", "Reptile: θ ← θ + ε(θ′ − θ).", traits={"interpolate"})
_add("table_write", "rule", [
    P("mode", "symbol", "max", choices=("max", "replace", "average")),
], "rule", "Write (key, value) pairs into an episodic table: MFEC keeps the max return.",
     traits={"table", "writes:table"})
_add("dnd_write", "rule", [_unit("alpha", 0.1, "tabular learning rate for existing keys")],
     "rule", "NEC's DND write: append new keys, move existing values toward the target by α.",
     traits={"table", "writes:dnd"})
_add("poet", "rule", [
    _count("mutate_every", 25), _count("transfer_every", 25),
    P("admit_low", "num", 25.0), P("admit_high", "num", 340.0),
    P("reproduce_threshold", "num", 200.0), _count("max_active", 20),
    _count("children", 8, "mutated environments proposed per reproduction"),
], "rule", "POET: evolve a population of (environment, agent) pairs by mutation with a "
   "minimal criterion, ES optimisation and transfer.", traits={"population"})

THROUGH = Entry("through", "through", (
    P("order", "int", 2, choices=None, low=1, high=2,
      doc="2: differentiate through the inner update (create_graph); 1: first-order"),
    P("trace", "num", 0.0, low=0, high=1,
      doc="meta-gradients only: μ in z′ = μ(I + ∂f/∂θ)z + ∂f/∂η, the share of the "
          "accumulated dθ/dη carried into the next update: 0 drops it (Xu et al.), 1 is "
          "exact"),
), "none", "How an outer update differentiates through an inner loop.")

# ---- primitive expression ops ----------------------------------------------------------

_T = "tensor"
for _name, _doc in (("exp", "eˣ"), ("log", "natural log"), ("sqrt", "square root"),
                    ("abs", "|x|"), ("tanh", "tanh"), ("sigmoid", "1/(1+e⁻ˣ)"),
                    ("mean", "mean over all elements (time, batch)"),
                    ("sum", "sum over all elements"), ("std", "standard deviation"),
                    ("stop_grad", "the value, with no gradient flowing back"),
                    ("normalize", "(x − mean) / (std + 1e-8)")):
    _add(_name, "op", [P("x", _T)], _T, _doc)
_add("min", "op", [P("a", _T), P("b", _T)], _T, "elementwise minimum")
_add("max", "op", [P("a", _T), P("b", _T)], _T, "elementwise maximum")
_add("clamp", "op", [P("x", _T), P("low", _T), P("high", _T)], _T, "clamp into [low, high]")
_add("where", "op", [P("cond", _T), P("a", _T), P("b", _T)], _T, "a where cond else b")
_add("scan_back", "op", [P("x", _T), P("decay", _T), P("last", _T, 0.0)], _T,
     "a_t = x_t + decay_t · a_{t+1}, a_T = last: the one backward scan behind discounted "
     "sums, λ-returns and GAE")
_add("shift", "op", [P("x", _T), P("n", "int", low=1)], _T,
     "x_{t+n}, zero where an episode ends before t+n (n-step returns)")
_add("window", "op", [P("x", _T), P("size", "int", low=1)], _T,
     "the last `size` steps of x at every t, zero-padded (EPG's loss input)")
_add("stack", "op", [P("x", _T)], _T, "concatenate features along the last axis",
     variadic=True)
_add("one_hot", "op", [P("x", _T), P("n", "int", low=1)], _T, "one-hot encoding")
_add("log_prob", "op", [P("d", "dist"), P("x", _T)], _T, "log-density of x under d")
_add("entropy", "op", [P("d", "dist")], _T, "entropy of d")
_add("kl", "op", [P("p", "dist"), P("q", "dist")], _T, "KL(p ‖ q)")
_add("rsample", "op", [P("d", "dist")], _T, "a reparameterised sample of d")
_add("normal", "op", [P("mean", _T), P("log_std", _T)], "dist", "a diagonal Gaussian")
_add("unit_normal", "op", [P("like", _T)], "dist", "N(0, I) shaped like `like`")
_add("detach_dist", "op", [P("d", "dist")], "dist", "d with no gradient (old policy π_old)")
_add("target", "op", [P("m", "any")], "same",
     "the target network's copy of a head, Polyak-averaged toward the updated model by the "
     "rule's `polyak` rate: `target(v)` on the batch, `target(q)(next_obs)` on other inputs",
     traits={"target_network"})
_add("lookup", "op", [P("m", "memory"), P("key", _T), P("action", _T)], _T,
     "the value an episodic memory gives `key` at `action`: a dnd's kernel-weighted mean of "
     "its k nearest keys' values (differentiable in the key, the keys and the values; the "
     "key is the embedding head), a table's stored return or mean of k neighbours (the key "
     "is the observation)")
_add("amax", "op", [P("x", _T)], _T,
     "the maximum over the last axis: max_a Q(s, a) of a q_values head's values")
_add("linear_baseline", "op", [P("ret", _T)], _T,
     "fit a linear value baseline per task on (obs, obs², t, t², t³, 1) to `ret`; its predictions")
_add("anneal", "op", [P("start", "num"), P("end", "num"), _unit("over", 1.0),
                     P("loop", "loop", None, doc="the outer loop whose progress it follows "
                                                 "(an `adapt` loss names it); by default "
                                                 "the loop that runs the update")], _T,
     "linear schedule from start to end over the first `over` of the loop")
_add("noise", "op", [P("x", _T)], _T, "standard normal noise shaped like x (ES perturbations)")

# ---- behaviour policies a `collect ... with` may use besides a model ---------------------

_add("q_greedy", "policy", [
    P("values", "any", doc="a model with a q_values head, or a table/dnd memory"),
    _unit("epsilon", 0.0, "probability of a uniformly random action"),
], "policy", "ε-greedy over action values (MFEC, NEC).")

# ---- fitness of a loop or a model (the `maximizing` side of evolutionary rules) -------

_add("final_return", "fitness", [P("loop", "loop")], "num",
     "a member's score on the data the last round of its run of `loop` collected: the task "
     "family's score (mean episode return), averaged over the member's tasks")
_add("episode_return", "fitness", [P("policy", "model"), _count("episodes", 1)], "num",
     "mean return of a policy on the current task")

# ---- evaluation baselines ---------------------------------------------------------------
# Trait: the task traits a baseline applies to.

_add("bayes_optimal", "baseline", [], "none",
     "exact finite-horizon Bayes-optimal policy by dynamic programming", traits={"bandit"})
_add("gittins", "baseline", [], "none", "Gittins-style index policy", traits={"bandit"})
_add("ucb1", "baseline", [P("c", "num", 0.0, low=0, built=False,
                           doc="exploration constant; 0: tune")],
     "none", "UCB1", traits={"bandit"})
_add("thompson", "baseline", [], "none", "Thompson sampling with Beta(1,1) priors",
     traits={"bandit"})
_add("greedy", "baseline", [], "none", "greedy on posterior means", traits={"bandit"})
_add("epsilon_greedy", "baseline", [replace(_unit("epsilon", 0.0, "0: tune"), built=False)],
     "none", "ε-greedy",
     traits={"bandit"})
_add("psrl", "baseline", [], "none", "posterior sampling RL", traits={"mdp", "discrete"})
_add("oracle", "baseline", [], "none", "the optimal policy of the known task",
     traits={"mdp", "bandit", "supervised"})
_add("random", "baseline", [], "none", "uniformly random actions",
     traits={"mdp", "bandit", "supervised"})
_add("pretrained", "baseline", [], "none", "multi-task pretrained, no meta-learning, same "
     "adaptation", traits={"mdp", "supervised", "adaptation"})
_add("random_init", "baseline", [], "none", "a random initialisation, same adaptation",
     traits={"mdp", "supervised", "adaptation"})
_add("ppo_baseline", "baseline", [
    P("lr", "list", [0.003, 0.01, 0.03, 0.1], low=0, item="num",
      doc="step sizes tried on validation tasks; the best one's lifetime is reported"),
], "none", "a fresh policy trained by PPO (stdlib rl's `ppo`) in place of the learned loss, "
     "for the same lifetime, network and data (EPG)", traits={"mdp", "adaptation", "lifetime"})
# Baselines that train the evaluated inner loop with another loss in place of its
# `adapt` loss: the standard-library function each trains with (its step size tried over
# the baseline's `lr` grid).
LOSS_BASELINES = {"ppo_baseline": "ppo"}
_add("random_phi", "baseline", [], "none", "the learned loss at its initialisation, "
     "same lifetime (EPG)", traits={"mdp", "adaptation", "lifetime"})
_add("nominal", "baseline", [], "none", "the spec's own training on the nominal, "
     "unrandomized tasks (Peng et al. 2018's comparison), evaluated on the same held-out "
     "tasks", traits={"mdp", "retrains"})

# ---- names every expression may use ----------------------------------------------------

TRAJECTORY_FIELDS = {
    "obs": "observation s_t", "next_obs": "s_{t+1}", "action": "a_t", "reward": "r_t",
    "done": "1 where returns stop at t: the end of the learner's memory (a trial for a "
            "memory reset per task, else the episode)",
    "terminated": "1 where the environment's episode ended at t by its own dynamics, not "
                  "by a time limit: where a one-step target stops bootstrapping",
    "logp": "log π_old(a_t|s_t), as collected",
    "value": "V_old(s_t), as collected",
    "timestep": "t / T, the step's place in the collected trajectory (a trial), in [0, 1)",
    "x": "regression input", "y": "regression target", "z": "the latent or skill in use",
    "progress": "fraction of the enclosing loop done, in [0, 1]",
}
# What a replay buffer keeps of each step, besides its stored columns: a sample has these.
TRANSITION_FIELDS = ("obs", "next_obs", "action", "reward", "done", "terminated", "logp",
                     "value")
# Head names a standard-library loss may use before it knows the model: bound at the
# update site to the updated model's heads of the same name.
HEAD_SLOTS = {"pi": "dist", "v": "tensor", "q": "tensor", "q1": "tensor", "q2": "tensor",
              "pred": "tensor", "q_z": "dist"}
CONSTANTS = {"true": "bool", "false": "bool"}
# Outer-loop settings that a written `updates`/`warmup` turns into a Repeat of the loop's own
# statements; a loop that writes neither has no such settings.
REPEAT_SETTINGS = ("updates", "warmup")

# ---- loop, evaluate and schedule settings ----------------------------------------------

SETTINGS: dict[str, tuple[P, ...]] = {
    "inner": (
        _count("steps", 1, "times the body runs per task: k adaptation steps, or updates "
                           "per lifetime"),
    ),
    "outer": (
        _count("iterations", 1000, "outer iterations"),
        _count("meta_batch", 1, "tasks sampled per iteration (each runs the inner loop)"),
        _count("updates", 1, "times the loop's own statements (its replay samples and "
               "updates) run per iteration, after the inner loop: gradient steps per "
               "iteration (SAC: the inner loop's environment steps, one step each)"),
        _count("warmup", 0, "transitions every buffer the loop samples must hold before its "
               "statements run; until then they are skipped (their losses log NaN)", low=0),
    ),
    "evaluate": (
        P("loop", "any", None, doc="the inner loop evaluated (default: the one the last outer "
                             "loop runs, the last phase's)"),
        P("tasks", "any", doc="held-out task source(s)"),
        _count("instances", 1000, "task instances evaluated"),
        P("against", "list", [], doc="baselines run on the same tasks and random draws"),
        P("adapt_steps", "list", [0, 1, 2, 3], low=0, high=1000, item="int",
          doc="returns reported after these inner steps"),
        P("later_lr_scales", "list", [1.0], low=0, low_open=True,
          doc="inner step size of the steps after the first, as a fraction of the inner "
              "rule's (MAML's evaluation halves it: [0.5]); with several, each method takes "
              "the one that scores best on separate validation tasks"),
        P("metric", "symbol", "total_reward", choices=("total_reward", "regret", "return",
                                                       "mse", "success")),
        _count("pretrain_iterations", 0, "iterations of the `pretrained` baseline's "
               "multi-task training (the inner loop's own rule on the task mixture, θ ← mean "
               "θ′); 0: as many as the outer loop's", low=0),
    ),
    "schedule": (
        P("backend", "symbol", "local", choices=("local", "ray")),
        P("device", "symbol", "cpu", choices=("cpu", "cuda", "auto")),
        P("seed", "int", 0, low=0),
        _count("envs", 1, "vectorized environments per task"),
        _count("workers", 1, "Ray tasks in flight at once, and the CPUs of a local Ray "
                             "instance (backend = ray)"),
        P("address", "str", "", doc="the Ray cluster to join (backend = ray); empty: "
                                    "RAY_ADDRESS, else a new local instance"),
        P("execution", "symbol", "sequential", choices=("sequential", "batched"),
          doc="how a Map over population members runs on one machine (backend = local): one "
              "member after another, or all stacked as rows of one batch (each member's "
              "rows drawing from its own key); each gives the same fitnesses for a seed, to "
              "floating-point rounding"),
        _count("checkpoint_every", 25, "most outer iterations between checkpoints; any "
                                       "iteration that took 10 checkpoints' time or more is "
                                       "checkpointed (a kill loses at most that iteration)"),
        P("log_every", "int", 0, low=0,
          doc="outer iterations between progress lines; 0: ten per phase"),
        P("threads", "int", 1, low=0, high=1024,
          doc="torch threads for the run (`--threads N`); 0: torch's default, one per core. "
              "One is as fast as two for small models and is not slowed down by other work "
              "on the machine; a 256-unit GRU trains ~20 % faster on two free cores"),
    ),
}



def setting(block: str, name: str) -> P:
    """A block's setting by name."""
    return next(p for p in SETTINGS[block] if p.name == name)


MEMORY_SCOPES = ("step", "episode", "task", "iteration", "never")
COLLECT_UNITS = ("episodes", "steps", "samples")


# ---- what the PyTorch runtime implements -------------------------------------------------
# Each entry the back end builds, bound to its implementation in metadsl.runtime; the
# lowering dispatches on these bindings and the entries' traits, never on names, and names
# an entry without a binding as not built. tests/test_registry.py resolves every binding.

_BANDIT_BASELINES = ("bayes_optimal", "gittins", "ucb1", "thompson", "greedy",
                     "epsilon_greedy", "random")
_IMPLEMENTATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    # task sources: (class, baselines its held-out evaluation computes)
    "bernoulli_bandit": ("families.BernoulliBandit", _BANDIT_BASELINES),
    "dependent_bandit": ("families.DependentBandit", _BANDIT_BASELINES),
    "informative_arm_bandit": ("families.InformativeArmBandit", ("bayes_optimal", "oracle",
                                                              "random")),
    "tabular_mdp": ("families.TabularMDP", ("random", "oracle", "psrl")),
    "contextual_bandit": ("families.ContextualBandit", ("thompson", "ucb1", "random")),
    "random_quadratic": ("families.RandomQuadratic", ("oracle",)),
    "sine": ("families.Sine", ()),
    "nav2d": ("families.Nav2D", ("random",)),
    "chain": ("families.Chain", ("random",)),
    "gym": ("gym_tasks.GymTasks", ("random", "nominal")),
    "cheetah_vel": ("gym_tasks.CheetahVelocity", ("random",)),
    "cheetah_dir": ("gym_tasks.CheetahDirection", ("random",)),
    # models: the class is the core's (a recurrent core steps a memory; an mlp is a
    # function of explicit parameters, one set per task under vmap)
    "recurrent": ("models.Recurrent", ()), "policy": ("models.FeedForward", ()),
    "regressor": ("models.FeedForward", ()),
    "gru": ("models.Recurrent", ()), "lstm": ("models.Recurrent", ()),
    "episodic_lstm": ("models.EpisodicLSTM", ()),
    "mlp": ("models.FeedForward", ()),
    "loss_net": ("models.LossNet", ()), "temporal_conv": ("models.LossNet", ()),
    # meta-parameters
    "bounded": ("metaparams.Bounded", ()), "positive": ("metaparams.Positive", ()),
    "step_sizes": ("metaparams.StepSizes", ()),
    # update rules: optimizers (in place), differentiable steps (functional), interpolation
    "adam": ("rules.Adam", ()), "rmsprop": ("rules.RMSprop", ()), "trpo": ("rules.TRPO", ()),
    "sgd": ("adaptation.sgd", ()), "meta_sgd": ("adaptation.sgd", ()),
    "reptile": ("adaptation.reptile", ()), "es": ("es.EvolutionStrategy", ()),
    "final_return": ("es.final_return", ()),
    # evaluation after k inner steps
    "pretrained": ("evaluation.pretrained", ()), "random_init": ("evaluation.adaptation", ()),
    "nominal": ("evaluation.nominal", ()),
    # episodic control: memories, the policy acting on their values, their writes
    "encoder": ("models.FeedForward", ()),
    "table": ("episodic.Table", ()), "dnd": ("episodic.DND", ()),
    "buffer": ("replay.Buffer", ()), "q_greedy": ("episodic.QGreedy", ()),
    "table_write": ("episodic.write", ()), "dnd_write": ("episodic.write", ()),
    "lookup": ("episodic.lookup", ()),
}
for _name in ("exp", "log", "sqrt", "abs", "tanh", "sigmoid", "mean", "sum", "std",
              "normalize", "min", "max", "clamp", "where", "scan_back", "shift",
              "stack", "log_prob", "entropy", "kl", "rsample", "normal", "unit_normal",
              "anneal", "linear_baseline", "amax"):
    _IMPLEMENTATIONS[_name] = (f"ops.{_name}", ())
# stop_grad(x) is lowered as x read from detached heads (meta-parameters keep their gradient)
_IMPLEMENTATIONS["stop_grad"] = ("loss_view.LossView.detached", ())
# target(head) is lowered as a read of the update's target network
_IMPLEMENTATIONS["target"] = ("loss_view.LossView.target", ())
# held-out draws and `through` are built by the evaluation and the outer step themselves
_IMPLEMENTATIONS["held_out"] = ("evaluation.held_out", ())
for _name, (_impl, _provides) in _IMPLEMENTATIONS.items():
    REGISTRY[_name] = replace(REGISTRY[_name], impl=_impl, provides=frozenset(_provides))
THROUGH = replace(THROUGH, impl="adaptation.Outer")


def built(entry: Entry) -> bool:
    """Whether the PyTorch back end builds `entry`: the one predicate the builder, the
    lowering and docgen read. An entry is built where it is bound to an implementation;
    a baseline, where a built task family's evaluation computes it."""
    if entry.impl:
        return True
    return entry.kind == "baseline" and any(entry.name in e.provides
                                            for e in REGISTRY.values() if e.impl)


def choice_built(param: P, value) -> bool:
    """Whether a parameter's value is built: any value of a built parameter (a head kind
    by its own flag), only the default of one that is not."""
    if param.choices is _HEADS:
        return all(HEAD_KINDS[k].built for k in
                   (value.values() if isinstance(value, dict) else [value]) if k in HEAD_KINDS)
    return param.built or value == param.default
# Ops whose implementation reads the batch (episode ends for `shift`, progress for
# `anneal`, the padding mask for reductions): the batch is their first argument.
for _name in ("shift", "anneal", "mean", "sum", "std", "normalize", "linear_baseline"):
    REGISTRY[_name] = replace(REGISTRY[_name], traits=REGISTRY[_name].traits | {"batch"})
# Ops that read the outer loop's progress through the run (an in-place update's batch has
# it; an inner `adapt` step has no run to read it from).
REGISTRY["anneal"] = replace(REGISTRY["anneal"], traits=REGISTRY["anneal"].traits | {"progress"})
