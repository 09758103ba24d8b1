"""Networks built from a spec's `model` declarations: cores, inputs and named heads.

A model maps a trajectory batch (time-major fields, [T, B, ...]) to its heads: a
distribution for `categorical` and `gaussian` heads, a tensor [T, B] for `value` and
`regression` heads. The recurrent model also steps one time step at a time during
rollouts, carrying its hidden state. The feed-forward model is a function of explicit
parameters, called with one set per task under `vmap`, which is how gradient-based inner
loops hold their adapted copies θ′.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import vmap

from ..execution import keys


def input_size(name: str, obs_dim: int, n_actions: int) -> int:
    return {"obs": obs_dim, "x": obs_dim, "prev_action": n_actions,
            "action": n_actions}.get(name, 1)


def features(inputs: list[str], fields: dict, n_actions: int) -> torch.Tensor:
    """The model's input vector per step, from named trajectory fields ([T, B] or [B])."""
    parts = []
    for name in inputs:
        x = fields[name]
        if name in ("prev_action", "action") and x.is_floating_point():  # continuous
            parts.append(x)
        elif name in ("prev_action", "action"):  # one-hot; -1 before the first action matches no arm
            # (compared with the arms, not one_hot(), whose range check vmap cannot batch)
            parts.append((x.unsqueeze(-1) == torch.arange(n_actions)).float())
        elif name in ("obs", "x"):
            parts.append(x if x.is_floating_point() else x.float())
        else:
            parts.append(x.float().unsqueeze(-1))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


# A batch's input features computed once for a whole update (rules.minimize): its
# minibatches and epochs then slice them instead of rebuilding one-hots and concatenations.
MODEL_INPUTS = "model_inputs"


def inputs_of(model, fields: dict) -> torch.Tensor:
    """`model`'s input features on `fields`: the update's precomputed ones where present."""
    if MODEL_INPUTS in fields:
        return fields[MODEL_INPUTS]
    return features(model.inputs, fields, model.n_actions)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A linear layer under unbatched weights [out, in], or under one set per task
    [tasks, out, in] on inputs [tasks, rows, in] (a batched matrix product: under a rollout's
    per-step calls it costs a fraction of what vmap's bookkeeping does)."""
    if weight.dim() == 2:
        return nn.functional.linear(x, weight, bias)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


class Categorical:
    """A categorical distribution over actions from logits, normalised once. Plain tensor
    arithmetic like DiagGaussian: torch.distributions.Categorical's construction,
    broadcasting and validation cost ~6 % of an RL² iteration and are not needed for
    logits from a network and actions from its own samples."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits - logits.logsumexp(-1, keepdim=True)

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.exp()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.gather(-1, x.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        # a masked action's −inf logit contributes 0, not 0 · −inf
        logits = self.logits.clamp(min=torch.finfo(self.logits.dtype).min)
        return -(logits.exp() * logits).sum(-1)

    def kl(self, other: "Categorical") -> torch.Tensor:
        """KL(self ‖ other)."""
        return (self.probs * (self.logits - other.logits)).sum(-1)

    def sample(self, gen: torch.Generator) -> torch.Tensor:
        probs = self.probs
        flat = probs.reshape(-1, probs.shape[-1])
        return keys.multinomial(flat, gen).reshape(probs.shape[:-1])

    def detach(self) -> "Categorical":
        out = Categorical.__new__(Categorical)
        out.logits = self.logits.detach()
        return out


class DiagGaussian:
    """A diagonal Gaussian over action vectors; log-probabilities and entropies sum over the
    action dimensions. Plain tensor arithmetic (no argument validation), so it works under
    `vmap` and `grad`."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor):
        self.mean, self.log_std = mean, log_std.expand_as(mean)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) * torch.exp(-self.log_std)
        return (-0.5 * z ** 2 - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (self.log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)

    def kl(self, other: "DiagGaussian") -> torch.Tensor:
        """KL(self ‖ other)."""
        var, other_var = torch.exp(2 * self.log_std), torch.exp(2 * other.log_std)
        return (other.log_std - self.log_std + (var + (self.mean - other.mean) ** 2)
                / (2 * other_var) - 0.5).sum(-1)

    def sample(self, gen: torch.Generator) -> torch.Tensor:
        noise = keys.randn(self.mean.shape, gen)
        return self.mean + torch.exp(self.log_std) * noise

    def detach(self) -> "DiagGaussian":
        return DiagGaussian(self.mean.detach(), self.log_std.detach())


class TanhGaussian:
    """SAC's policy (Haarnoja et al. 2018, appendix C): u ~ N(mean, std) squashed into the
    task's action box, a = bias + scale·tanh(u). Its log-density is the Gaussian's less the
    change of variables, Σ log(scale·(1 − tanh²u)). The pre-squash u of each action it
    drew is kept, so log_prob of its own samples is exact; any other action is mapped
    back by atanh (clamped inside the box). Entropy and KL have no closed form: each is
    the one-sample estimate at a reparameterised draw."""

    EPS = 1e-6

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor, scale: torch.Tensor,
                 bias: torch.Tensor):
        self.mean, self.log_std, self.scale, self.bias = mean, log_std, scale, bias
        self._drawn: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _squash(self, u: torch.Tensor) -> torch.Tensor:
        action = self.bias + self.scale * torch.tanh(u)
        self._drawn.append((action, u))
        return action

    def sample(self, gen) -> torch.Tensor:
        return self._squash(self.mean + torch.exp(self.log_std) *
                            keys.randn(self.mean.shape, gen))

    def rsample(self) -> torch.Tensor:
        """A draw a + ∂a/∂(mean, log std): the reparameterisation the actor's loss needs.
        Its noise comes from torch's generator (seeded by the run), as `ops.rsample`'s does:
        a loss is given no key."""
        return self._squash(self.mean + torch.exp(self.log_std) * torch.randn_like(self.mean))

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        u = next((u for a, u in self._drawn if a is action), None)
        if u is None:
            y = ((action - self.bias) / self.scale).clamp(-1 + self.EPS, 1 - self.EPS)
            u = torch.atanh(y)
        z = (u - self.mean) * torch.exp(-self.log_std)
        gaussian = -0.5 * z ** 2 - self.log_std - 0.5 * math.log(2 * math.pi)
        squash = torch.log(self.scale * (1 - torch.tanh(u) ** 2) + self.EPS)
        return (gaussian - squash).sum(-1)

    def entropy(self) -> torch.Tensor:
        return -self.log_prob(self.rsample())

    def kl(self, other: "TanhGaussian") -> torch.Tensor:
        """KL(self ‖ other), estimated at one reparameterised draw from self."""
        action = self.rsample()
        return self.log_prob(action) - other.log_prob(action)

    def detach(self) -> "TanhGaussian":
        return TanhGaussian(self.mean.detach(), self.log_std.detach(), self.scale, self.bias)


class BoxUniform:
    """Uniform action vectors in [−1, 1]^d: the `random` baseline on continuous actions."""

    def __init__(self, batch: int, dim: int):
        self.shape = (batch, dim)

    def sample(self, gen: torch.Generator) -> torch.Tensor:
        return torch.rand(self.shape, generator=gen) * 2 - 1

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full(x.shape[:-1], -self.shape[1] * math.log(2.0))


class ReturnScale(nn.Module):
    """PopArt's statistics (van Hasselt et al. 2016) for one `normalized_value` head: the
    mean and standard deviation of the returns it is fitted to. The head computes
    v = μ + σ·y from its layer's output y; backward, ∂v/∂y is taken as 1/σ instead of σ, so
    that (v − G)² has the gradient of the normalised error (y − (G − μ)/σ)² and the
    critic's share of a clipped gradient does not grow with the returns' scale."""

    RATE = 0.1  # weight of each update's returns in the running statistics

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def value(self, y: torch.Tensor) -> torch.Tensor:
        fixed = y.detach()
        return self.mean + self.std * fixed + (y - fixed) / self.std

    @torch.no_grad()
    def track(self, returns: torch.Tensor) -> tuple[float, float, float, float] | None:
        """Move the statistics toward `returns`; gives (μ, σ) before and after, for the
        layer to keep its values. The first update takes the returns' statistics whole and
        gives None: an untrained head's values are not worth keeping, and starting at
        v = μ + σ·y makes the start the same for returns of any scale."""
        old = self.mean.item(), self.std.item()
        first = self.updates.item() == 0
        rate = 1.0 if first else self.RATE
        mean = (1 - rate) * old[0] + rate * returns.mean().item()
        second = (1 - rate) * (old[1] ** 2 + old[0] ** 2) + rate * (returns ** 2).mean().item()
        std = max(math.sqrt(max(second - mean ** 2, 0.0)), 1e-4)
        self.mean.fill_(mean), self.std.fill_(std), self.updates.add_(1)
        return None if first else (old[0], old[1], mean, std)


class Heads(nn.Module):
    """A model's named heads on its features h. A `tanh_gaussian` head's layer gives the
    mean and a state-dependent log std, the latter squashed into [LOG_STD_MIN,
    LOG_STD_MAX] (as SAC's reference implementations do), and its actions fill
    `action_bounds` (low, high per dimension). A `q_value` head is a network of its own,
    sharing no weights with the others: an MLP of `critic_hidden` layers on the model's
    input features x and the action (a recurrent model's, on its memory's output h)."""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    def __init__(self, hidden: int, heads: dict[str, str], n_actions: int,
                 critic_in: int | None = None, critic_hidden=(), activation: str = "relu",
                 action_bounds=None):
        super().__init__()
        self.kinds, self.n_actions = dict(heads), n_actions
        self.activation = _ACTIVATIONS[activation]
        sizes = {"categorical": n_actions, "gaussian": n_actions, "value": 1,
                 "normalized_value": 1, "regression": 1, "q_values": n_actions, "q_value": 1,
                 "embedding": hidden, "tanh_gaussian": 2 * n_actions}
        critic = [(critic_in or hidden) + n_actions, *critic_hidden]
        self.critics = nn.ModuleDict({
            name: nn.ModuleList(nn.Linear(a, b) for a, b in zip(critic, critic[1:]))
            for name, kind in heads.items() if kind == "q_value"})
        inputs = {"q_value": critic[-1]}
        self.layers = nn.ModuleDict({name: nn.Linear(inputs.get(kind, hidden), sizes[kind])
                                     for name, kind in heads.items()})
        # state-independent log standard deviations (MAML, TRPO), initialised to std 1
        self.log_std = nn.ParameterDict({name: nn.Parameter(torch.zeros(n_actions))
                                         for name, kind in heads.items() if kind == "gaussian"})
        self.scales = nn.ModuleDict({name: ReturnScale() for name, kind in heads.items()
                                     if kind == "normalized_value"})
        low, high = (torch.as_tensor(b, dtype=torch.float32) for b in
                     (action_bounds or ([-1.0] * n_actions, [1.0] * n_actions)))
        self.action_scale, self.action_bias = (high - low) / 2, (high + low) / 2
        self.critics_read_inputs = critic_in is not None

    def reads_trunk(self, name: str) -> bool:
        """Whether head `name` reads the model's features h (a feed-forward model's critic
        reads its inputs instead)."""
        return not (self.kinds[name] == "q_value" and self.critics_read_inputs)

    def computed_with(self, name: str) -> tuple[str, ...]:
        """The heads evaluated together with `name` when a loss first reads it: those on the
        trunk share its pass; a critic on the inputs is a pass of its own."""
        if not self.reads_trunk(name):
            return (name,)
        return tuple(n for n in self.kinds if self.reads_trunk(n))

    def own_parameters(self, name: str) -> list[nn.Parameter]:
        """Head `name`'s own parameters: its layer, a critic's hidden layers, a Gaussian
        head's log std (not the trunk's)."""
        parts = [self.layers[name], self.critics[name] if name in self.critics else None]
        own = [p for m in parts if m is not None for p in m.parameters()]
        return own + ([self.log_std[name]] if name in self.log_std else [])

    def raw(self, h: torch.Tensor | None, params: dict[str, torch.Tensor] | None = None,
            prefix: str = "", action: torch.Tensor | None = None,
            x: torch.Tensor | None = None, only=None) -> dict[str, torch.Tensor]:
        """The heads as plain tensors (what `vmap` can return): logits, means, values; a
        Gaussian head's log std under `NAME.log_std`. With `params` (named as the owning
        model names them, `prefix` + `layers.pi.weight`), those instead of the heads' own.
        A `q_value` head needs the `action` it values (and reads the input features `x`,
        or h); without an action (acting) it is left out. `only`: just those heads."""
        def weights(name):
            return (params[f"{prefix}{name}.weight"], params[f"{prefix}{name}.bias"]) \
                if params is not None else None

        out = {}
        for name, layer in self.layers.items():
            if only is not None and name not in only:
                continue
            weight, bias = weights(f"layers.{name}") or (layer.weight, layer.bias)
            features_in = h
            if self.kinds[name] == "q_value":
                if action is None:
                    continue
                features_in = torch.cat([h if x is None else x,
                                         features(["action"], {"action": action},
                                                  self.n_actions)], dim=-1)
                for i, hidden in enumerate(self.critics[name]):
                    w, b = weights(f"critics.{name}.{i}") or (hidden.weight, hidden.bias)
                    features_in = self.activation(linear(features_in, w, b))
            y = linear(features_in, weight, bias)
            if self.kinds[name] == "tanh_gaussian":
                mean, log_std = y.chunk(2, dim=-1)
                out[name] = mean
                out[name + ".log_std"] = self.LOG_STD_MIN + 0.5 * (
                    self.LOG_STD_MAX - self.LOG_STD_MIN) * (torch.tanh(log_std) + 1)
            else:
                out[name] = y
        for name, log_std in self.log_std.items():
            if name not in out:
                continue
            if params is not None:
                log_std = params[f"{prefix}log_std.{name}"]
            if log_std.dim() == 2:  # one per task, over its rows [tasks, rows, A]
                log_std = log_std.unsqueeze(1)
            out[name + ".log_std"] = log_std.expand_as(out[name])
        return out

    def wrap(self, raw: dict[str, torch.Tensor]) -> dict:
        """Plain tensors → heads: distributions for policy heads, [..] tensors for values."""
        out = {}
        for name, kind in self.kinds.items():
            if name not in raw:
                continue  # a q_value head with no action to value
            if kind == "categorical":
                out[name] = Categorical(raw[name])
            elif kind == "gaussian":
                out[name] = DiagGaussian(raw[name], raw[name + ".log_std"])
            elif kind == "tanh_gaussian":
                out[name] = TanhGaussian(raw[name], raw[name + ".log_std"], self.action_scale,
                                         self.action_bias)
            elif kind == "normalized_value":
                out[name] = self.scales[name].value(raw[name].squeeze(-1))
            elif kind in ("q_values", "embedding"):  # a vector per step
                out[name] = raw[name]
            else:
                out[name] = raw[name].squeeze(-1)
        return out

    def forward(self, h: torch.Tensor, action: torch.Tensor | None = None) -> dict:
        return self.wrap(self.raw(h, action=action))

    @torch.no_grad()
    def track_returns(self, returns: torch.Tensor, copies: tuple["Heads", ...] = ()) -> None:
        """Each normalised value head's statistics move toward `returns` (the valid steps'
        returns of an update's data); after the first update, its layer and the same head
        of each copy (a target network) are rescaled so that every value they give is
        unchanged."""
        for name, scale in self.scales.items():
            moved = scale.track(returns)
            for heads in (self, *copies):
                if moved is not None:
                    mean, std, new_mean, new_std = moved
                    layer = heads.layers[name]
                    layer.weight.mul_(std / new_std)
                    layer.bias.mul_(std).add_(mean - new_mean).div_(new_std)
                if heads is not self:
                    heads.scales[name].load_state_dict(scale.state_dict())


class Parts:
    """The parameter sets an update may target (`update agent.pi`, `update agent.q1`)."""

    def part_parameters(self, part: str) -> list[nn.Parameter]:
        """`core`/`net`: the trunk's; a head: its own and, where it reads it, the trunk's
        (a policy head trains its trunk; a critic on the inputs has none)."""
        trunk = [p for name, p in self.named_parameters() if not name.startswith("heads.")]
        if part in ("core", "net"):
            return trunk
        return self.heads.own_parameters(part) + (trunk if self.heads.reads_trunk(part)
                                                  else [])


class Recurrent(Parts, nn.Module):
    """`recurrent(core = gru(...)|lstm(...), inputs = [...], heads = {...})`."""

    def __init__(self, core: str, inputs: list[str], heads: dict[str, str], obs_dim: int,
                 n_actions: int, hidden: int = 256, layers: int = 1, reset: str = "task",
                 action_bounds=None):
        super().__init__()
        self.inputs, self.n_actions = list(inputs), n_actions
        self.reset = reset  # "task": one trial is one memory; "episode": cleared at prev_done
        size = sum(input_size(i, obs_dim, n_actions) for i in inputs)
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[core]
        self.core = rnn(size, hidden, num_layers=layers)
        self.heads = Heads(hidden, heads, n_actions, action_bounds=action_bounds)

    def initial_state(self, batch: int):
        return None  # torch's zero state

    def step(self, fields: dict, state, params: dict | None = None):
        """One time step for a batch: fields are [B]-shaped; returns (heads, state). With
        `params` (one set per task, the tasks' rows contiguous), each task's rows step
        under its own parameters."""
        if params is not None:
            return self._step_per_task(params, fields, state)
        x = features(self.inputs, fields, self.n_actions).unsqueeze(0)
        if self.reset == "episode" and state is not None:
            state = self._cleared(state, fields["prev_done"])
        h, state = self.core(x, state)
        return self.heads(h.squeeze(0)), state

    @staticmethod
    def _cleared(state, done: torch.Tensor):
        keep = (1 - done.float())[None, :, None]  # [layers, B, hidden]
        return tuple(s * keep for s in state) if isinstance(state, tuple) else state * keep

    # -- the core as a function of explicit parameters: per-task θ′ under vmap (MAML) --

    def parameters_per_task(self, tasks: int) -> dict[str, torch.Tensor]:
        return {name: p.unsqueeze(0).expand(tasks, *p.shape)
                for name, p in self.named_parameters()}

    def _zero_state(self, rows: int, like: torch.Tensor):
        zeros = like.new_zeros(self.core.num_layers, rows, self.core.hidden_size)
        return (zeros, zeros) if isinstance(self.core, nn.LSTM) else zeros

    def _cell(self, p: dict, x: torch.Tensor, state):
        """One step of the core, layer by layer, under parameters `p` (torch's names):
        the same equations as nn.GRU / nn.LSTM, written so that vmap can batch them."""
        lstm = isinstance(self.core, nn.LSTM)
        hs, cs = [], []
        for layer in range(self.core.num_layers):
            gi = nn.functional.linear(x, p[f"core.weight_ih_l{layer}"], p[f"core.bias_ih_l{layer}"])
            h = state[0][layer] if lstm else state[layer]
            gh = nn.functional.linear(h, p[f"core.weight_hh_l{layer}"], p[f"core.bias_hh_l{layer}"])
            if lstm:
                i, f, g, o = (gi + gh).chunk(4, -1)
                c = torch.sigmoid(f) * state[1][layer] + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                cs.append(c)
            else:
                i_r, i_z, i_n = gi.chunk(3, -1)
                h_r, h_z, h_n = gh.chunk(3, -1)
                r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
                h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
            hs.append(h)
            x = h
        new = torch.stack(hs)
        return x, ((new, torch.stack(cs)) if lstm else new)

    def raw(self, params: dict[str, torch.Tensor] | None, fields: dict) -> dict:
        """Heads as plain tensors over one task's trajectories [T, copies, ...] from a
        fresh state, under `params` (θ if None): what the adaptation vmaps over tasks."""
        p = dict(self.named_parameters()) if params is None else params
        x = features(self.inputs, fields, self.n_actions)
        state, outputs = self._zero_state(x.shape[1], x), []
        for t in range(x.shape[0]):
            if self.reset == "episode" and t > 0:
                state = self._cleared(state, fields["prev_done"][t])
            h, state = self._cell(p, x[t], state)
            outputs.append(h)
        return self.heads.raw(torch.stack(outputs), p, prefix="heads.",
                              action=fields.get("action"))

    def _step_per_task(self, params: dict, fields: dict, state):
        tasks = next(iter(params.values())).shape[0]
        x = features(self.inputs, fields, self.n_actions)
        rows = x.shape[0]
        if state is None:
            state = self._zero_state(rows, x)
        if self.reset == "episode":
            state = self._cleared(state, fields["prev_done"])

        def per_task(s):  # [layers, rows, H] → [tasks, layers, rows / tasks, H]
            return s.reshape(s.shape[0], tasks, rows // tasks, -1).movedim(1, 0)

        def merged(s):
            return s.movedim(0, 1).reshape(s.shape[1], rows, -1)

        split = tuple(per_task(s) for s in state) if isinstance(state, tuple) else per_task(state)
        h, new = vmap(self._cell)(params, x.reshape(tasks, rows // tasks, -1), split)
        new = tuple(merged(s) for s in new) if isinstance(new, tuple) else merged(new)
        raw = vmap(lambda p, h: self.heads.raw(h, p, prefix="heads."))(params, h)
        return self.heads.wrap({k: v.reshape(rows, *v.shape[2:]) for k, v in raw.items()}), new

    def sequence(self, batch: dict, only=None) -> dict:
        """Heads over whole trajectories [T, B] from a fresh state: one trajectory is one
        task's trial; a memory reset per episode is cleared where an episode ended. All
        heads share the core's pass (`only` is not needed to save one)."""
        x = inputs_of(self, batch)
        if self.reset != "episode":
            h, _ = self.core(x)
            return self.heads(h, batch.get("action"))
        state, outputs = None, []
        for t in range(x.shape[0]):  # step by step: clearing needs the state between steps
            if state is not None:
                state = self._cleared(state, batch["prev_done"][t])
            h, state = self.core(x[t:t + 1], state)
            outputs.append(h)
        return self.heads(torch.cat(outputs), batch.get("action"))


class UniformPolicy(nn.Module):
    """The `random` baseline as a model: uniform over actions (discrete, or vectors in
    [−1, 1]^n_actions where `continuous`), no memory."""

    def __init__(self, n_actions: int, continuous: bool = False):
        super().__init__()
        self.n_actions, self.continuous = n_actions, continuous

    def initial_state(self, batch: int):
        return None

    def step(self, fields: dict, state, params: dict | None = None):
        batch = fields["prev_reward"].shape[0]
        if self.continuous:
            return {"pi": BoxUniform(batch, self.n_actions)}, state
        uniform = Categorical(torch.zeros(batch, self.n_actions))
        return {"pi": uniform}, state


_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "elu": nn.functional.elu,
                "gelu": nn.functional.gelu}


class FeedForward(Parts, nn.Module):
    """`policy(net = mlp(...), heads = {...})` and `regressor(...)`: no memory.

    `parameters_per_task(n)` gives θ as a dict of [n, ...] tensors (views of θ, so
    gradients reach it); `per_task(params, fields)` then evaluates task i's rows with its
    own parameters (fields [B, ...], the tasks' rows contiguous along B), and
    `raw(params, fields)` one task's fields with unbatched parameters (under an outer
    `vmap` over tasks)."""

    def __init__(self, core: str, inputs: list[str], heads: dict[str, str], obs_dim: int,
                 n_actions: int, hidden: list[int] = (64, 64), activation: str = "tanh",
                 action_bounds=None):
        super().__init__()
        self.init_args = dict(core=core, inputs=inputs, heads=heads, obs_dim=obs_dim,
                              n_actions=n_actions, hidden=hidden, activation=activation,
                              action_bounds=action_bounds)
        self.inputs, self.n_actions = list(inputs), n_actions
        self.activation = _ACTIVATIONS[activation]
        sizes = [sum(input_size(i, obs_dim, n_actions) for i in inputs)] + list(hidden)
        self.net = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        # a critic head is a network of the same shape as the trunk, on the same inputs
        self.heads = Heads(sizes[-1], heads, n_actions, critic_in=sizes[0],
                           critic_hidden=hidden, activation=activation,
                           action_bounds=action_bounds)

    def parameters_per_task(self, tasks: int) -> dict[str, torch.Tensor]:
        return {name: p.unsqueeze(0).expand(tasks, *p.shape)
                for name, p in self.named_parameters()}

    def fresh_per_task(self, tasks: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """A freshly initialised θ per task [tasks, ...] (`memory M' reinit per task`: a
        lifetime that starts from a new random network, EPG): the model's own
        initialisation, each task's seeded from `gen`, so a draw depends only on its key."""
        seeds = keys.randint(2 ** 62, (tasks,), gen).tolist()
        drawn = []
        for seed in seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                drawn.append(dict(type(self)(**self.init_args).named_parameters()))
        return {name: torch.stack([d[name].detach() for d in drawn])
                for name, _ in self.named_parameters()}

    def forward(self, fields: dict) -> dict[str, torch.Tensor]:
        return self.raw(None, fields)

    def raw(self, params: dict[str, torch.Tensor] | None, fields: dict, only=None) -> dict:
        """Heads as plain tensors for one task's fields (any leading shape) under `params`
        (θ if None); `only`: just those heads, and no trunk if none of them reads it. The
        layers are applied as functions of the parameters given, not by swapping them into
        the modules (torch.func.functional_call costs more than the small matrix products
        of a rollout step)."""
        p = dict(self.named_parameters()) if params is None else params
        x = h = inputs_of(self, fields)
        if only is not None and not any(self.heads.reads_trunk(n) for n in only):
            h = None
        for i in range(len(self.net) if h is not None else 0):
            h = self.activation(linear(h, p[f"net.{i}.weight"], p[f"net.{i}.bias"]))
        return self.heads.raw(h, p, prefix="heads.", action=fields.get("action"), x=x,
                              only=only)

    def apply(self, params: dict[str, torch.Tensor] | None, fields: dict, only=None) -> dict:
        return self.heads.wrap(self.raw(params, fields, only))

    def sequence(self, batch: dict, only=None) -> dict:
        """Heads over whole trajectories [T, B] (an in-place update's training pass)."""
        return self.apply(None, batch, only)

    def per_task(self, params: dict[str, torch.Tensor], fields: dict) -> dict:
        """Heads of B = tasks × rows fields [B, ...], task i's rows under params[i]."""
        tasks = next(iter(params.values())).shape[0]
        split = {k: v.reshape(tasks, v.shape[0] // tasks, *v.shape[1:])
                 for k, v in fields.items() if k in self.inputs}  # what the net reads
        raw = self.raw(params, split)  # [tasks, rows, ...]: batched matrix products
        return self.heads.wrap({k: v.reshape(-1, *v.shape[2:]) for k, v in raw.items()})

    # -- the rollout interface shared with the recurrent model --
    def initial_state(self, batch: int):
        return None

    def action_values(self, fields: dict) -> torch.Tensor:
        """Q(s, ·) from the `q_values` head: what `q_greedy(model)` acts on."""
        head = next(n for n, kind in self.heads.kinds.items() if kind == "q_values")
        return self.apply(None, fields)[head]

    def step(self, fields: dict, state, params: dict | None = None):
        heads = self.apply(None, fields) if params is None else self.per_task(params, fields)
        return heads, state


class EpisodicLSTM(nn.Module):
    """`recurrent(core = episodic_lstm(hidden, capacity, k))` (Ritter et al. 2018): an LSTM
    whose cell state at the end of each episode is stored with that episode's observation
    (its context) as key, in a store of its own per task instance, and reinstated through
    a learned gate when a key recurs:

        i, f, o, r = σ(W [x, h] + b),  g = tanh(W_g [x, h] + b_g)
        c_t = f ⊙ c_{t−1} + i ⊙ g + r ⊙ c_ep,  h_t = o ⊙ tanh(c_t)

    c_ep sums the k nearest stored cells weighted by exp(−‖key − key_i‖²): a context seen
    before recalls its cell whole, a new one (almost) nothing — the gate sees x and h, not
    how well the recall matched. The working memory (h, c) is cleared at episode ends
    where `reset` is "episode"; the store spans the trial (a task). Stored cells keep their
    graph, so the training pass backpropagates through reinstatement into the episode that
    wrote them. The store is a tensor per row, searched exactly: it holds one entry per
    episode of a trial (tens), where an index would cost more than the search."""

    def __init__(self, core: str, inputs: list[str], heads: dict[str, str], obs_dim: int,
                 n_actions: int, hidden: int = 48, capacity: int = 1000, k: int = 1,
                 reset: str = "episode"):
        super().__init__()
        self.inputs, self.n_actions, self.reset = list(inputs), n_actions, reset
        self.hidden, self.capacity, self.k = hidden, capacity, k
        size = sum(input_size(i, obs_dim, n_actions) for i in inputs)
        self.gates = nn.Linear(size + hidden, 5 * hidden)  # i, f, g, o and r
        self.heads = Heads(hidden, heads, n_actions)

    def initial_state(self, batch: int):
        return None

    def _fresh(self, x: torch.Tensor, key: torch.Tensor):
        rows, start = x.shape[0], min(self.capacity, 8)
        zeros = x.new_zeros(rows, self.hidden)
        return (zeros, zeros, x.new_zeros(rows, start, key.shape[-1]),
                x.new_zeros(rows, start, self.hidden), torch.zeros(rows, dtype=torch.long), key,
                zeros)

    def _stored(self, state, done: torch.Tensor):
        """The ended episodes' (key, final cell) written into their rows' stores (the
        oldest replaced at capacity), and their working memory cleared."""
        h, c, keys, cells, count, last_key, recalled = state
        ended = done.bool()
        if not bool(ended.any()):
            return state
        if int(count.max()) >= keys.shape[1] and keys.shape[1] < self.capacity:
            grow = min(keys.shape[1], self.capacity - keys.shape[1])  # double, up to capacity
            keys = torch.cat([keys, keys.new_zeros(keys.shape[0], grow, keys.shape[2])], 1)
            cells = torch.cat([cells, cells.new_zeros(cells.shape[0], grow, cells.shape[2])], 1)
        slot = torch.arange(keys.shape[1]) == (count % keys.shape[1])[:, None]
        write = (slot & ended[:, None]).unsqueeze(-1)
        keys = torch.where(write, last_key.unsqueeze(1), keys)
        cells = torch.where(write, c.unsqueeze(1), cells)
        count = count + ended.long()
        if self.reset == "episode":
            keep = (~ended).float().unsqueeze(-1)
            h, c = h * keep, c * keep
        return h, c, keys, cells, count, last_key, None

    def _recall(self, keys: torch.Tensor, cells: torch.Tensor, count: torch.Tensor,
                key: torch.Tensor) -> torch.Tensor:
        filled = torch.arange(keys.shape[1]) < count.clamp(max=keys.shape[1])[:, None]
        d2 = ((keys - key.unsqueeze(1)) ** 2).sum(-1).masked_fill(~filled, math.inf)
        d2, slot = d2.topk(min(self.k, keys.shape[1]), dim=1, largest=False)
        recalled = cells.gather(1, slot.unsqueeze(-1).expand(-1, -1, cells.shape[2]))
        return (torch.exp(-d2).unsqueeze(-1) * recalled).sum(1)

    def _cell(self, x: torch.Tensor, key: torch.Tensor, done: torch.Tensor, state):
        state = self._fresh(x, key) if state is None else self._stored(state, done)
        h, c, keys, cells, count, last_key, recalled = state
        # the recall changes only with the store or the key (once per episode in
        # contextual bandits): reuse it otherwise
        if recalled is None or count.max() == 0 or not torch.equal(key, last_key):
            recalled = self._recall(keys, cells, count, key)
        i, f, g, o, r = self.gates(torch.cat([x, h], -1)).chunk(5, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(r) * recalled
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c, keys, cells, count, key, recalled)

    def step(self, fields: dict, state, params: dict | None = None):
        x = features(self.inputs, fields, self.n_actions)
        h, state = self._cell(x, fields["obs"].float(), fields["prev_done"], state)
        return self.heads(h), state

    def sequence(self, batch: dict, only=None) -> dict:
        """Heads over whole trials [T, B] from an empty store, step by step (all heads)."""
        x, state, outputs = inputs_of(self, batch), None, []
        for t in range(x.shape[0]):
            h, state = self._cell(x[t], batch["obs"][t].float(), batch["prev_done"][t], state)
            outputs.append(h)
        return self.heads(torch.stack(outputs), batch.get("action"))


class LossNet(nn.Module):
    """`loss_net(net = temporal_conv(...), inputs = [...], signals = n)`: EPG's learned loss
    L_φ (Houthooft et al. 2018; openai/EPG's Conv1DLoss). Its features per step are the
    trajectory fields `inputs` and the `signals` values the loss passes it (log π(a|s):
    the policy's gradient flows through them). Two strided 1-D convolutions run over the
    whole window in time order; their mean over time, through a linear layer, is a context
    vector shared by every step; an MLP of (features, context) gives the loss per step
    [T, B]. A function of explicit parameters, like the feed-forward model, so ES members
    and vmapped tasks call it with their own φ."""

    def __init__(self, core: str, inputs: list[str], heads: dict, obs_dim: int,
                 n_actions: int, signals: int = 1, channels: list[int] = (16, 32), kernel: list[int] = (6, 4),
                 stride: list[int] = (5, 2), context: int = 32, hidden: list[int] = (16,)):
        super().__init__()
        self.inputs, self.n_actions, self.signals = list(inputs), n_actions, signals
        self.stride = list(stride)
        self.heads = dict(heads)  # none: a loss network is called, not read by head
        width = sum(input_size(i, obs_dim, n_actions) for i in inputs) + signals
        sizes = [width] + list(channels)
        self.conv = nn.ModuleList(nn.Conv1d(a, b, k, s) for a, b, k, s in
                                  zip(sizes, sizes[1:], kernel, stride))
        self.span = 1  # the fewest steps the convolutions accept
        for k, s in reversed(list(zip(kernel, stride))):
            self.span = (self.span - 1) * s + k
        self.context = nn.Linear(sizes[-1], context)
        dims = [width + context] + list(hidden) + [1]
        self.out = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))

    def parameters_per_task(self, tasks: int) -> dict[str, torch.Tensor]:
        return {name: p.unsqueeze(0).expand(tasks, *p.shape)
                for name, p in self.named_parameters()}

    def apply(self, params: dict | None, fields: dict, *signals) -> torch.Tensor:
        """The loss per step [T, B] of trajectories [T, B, ...] in time order."""
        if len(signals) != self.signals:
            raise TypeError(f"the loss network takes {self.signals} signal(s) per step, "
                            f"the loss passes {len(signals)}")
        p = dict(self.named_parameters()) if params is None else params
        x = features(self.inputs, fields, self.n_actions)
        x = torch.cat([x] + [s.unsqueeze(-1).to(x.dtype) for s in signals], -1)
        h = x.permute(1, 2, 0)  # [B, F, T]: features are channels, time the axis
        if h.shape[-1] < self.span:  # a window shorter than the convolutions: zeros before it
            h = nn.functional.pad(h, (self.span - h.shape[-1], 0))
        for i, s in enumerate(self.stride):
            h = nn.functional.leaky_relu(nn.functional.conv1d(
                h, p[f"conv.{i}.weight"], p[f"conv.{i}.bias"], stride=s))
        c = nn.functional.linear(h.mean(-1), p["context.weight"], p["context.bias"])
        h = torch.cat([x, c.unsqueeze(0).expand(x.shape[0], *c.shape)], -1)
        for i in range(len(self.out)):
            h = nn.functional.linear(h, p[f"out.{i}.weight"], p[f"out.{i}.bias"])
            h = nn.functional.leaky_relu(h) if i < len(self.out) - 1 else h
        return h.squeeze(-1)


class Bound:
    """A model passed to a loss (`epg(L_phi)`), bound to the parameters the calling step
    holds for it (a member's φ_i; None: the model's own), with the batch it reads its
    input fields from. Calling it is calling the model: `L(x)` in the language."""

    def __init__(self, model, params: dict | None, batch: dict):
        self.model, self.params, self.batch = model, params, batch

    def __call__(self, *signals):
        return self.model.apply(self.params, self.batch, *signals)
