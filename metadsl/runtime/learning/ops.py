"""The language's primitive expression ops in torch (registry kind `op`).

Trajectory tensors are time-major, [T, B, ...]. Ops that need the trajectory itself
(episode ends for `shift`, progress for `anneal`, the padding mask for the reductions)
take the batch as first argument; the lowering passes it.
"""

from __future__ import annotations

import builtins

import torch
from torch.distributions import Distribution, Normal

from . import models

exp, log, sqrt, abs, tanh, sigmoid = (torch.exp, torch.log, torch.sqrt, torch.abs, torch.tanh,
                                      torch.sigmoid)


def _t(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.tensor(float(x))


def _valid(batch, x: torch.Tensor) -> torch.Tensor | None:
    """The trajectory's `valid` mask shaped like x, where x is per step and the trajectory
    is padded (episodes of varying length); None otherwise."""
    valid = batch.get("valid")
    if valid is None or x.dim() < 2 or x.shape[:2] != valid.shape:
        return None
    return valid.reshape(valid.shape + (1,) * (x.dim() - 2)).expand_as(x)


def mean(batch, x):
    x = _t(x)
    w = _valid(batch, x)
    return x.mean() if w is None else (x * w).sum() / w.sum()


def sum(batch, x):  # noqa: A001 - the language's name
    x = _t(x)
    w = _valid(batch, x)
    return x.sum() if w is None else (x * w).sum()


def std(batch, x):
    x = _t(x)
    w = _valid(batch, x)
    if w is None:
        return x.std()
    centred = (x - mean(batch, x)) * w
    return torch.sqrt((centred ** 2).sum() / (w.sum() - 1).clamp(min=1))


def normalize(batch, x):
    x = _t(x)
    return (x - mean(batch, x)) / (std(batch, x) + 1e-8)


def min(a, b):  # noqa: A001
    return torch.minimum(_t(a), _t(b))


def max(a, b):  # noqa: A001
    return torch.maximum(_t(a), _t(b))


def clamp(x, low, high):
    return torch.clamp(_t(x), _t(low), _t(high)) if isinstance(low, torch.Tensor) or \
        isinstance(high, torch.Tensor) else torch.clamp(_t(x), float(low), float(high))


def where(cond, a, b):
    return torch.where(_t(cond).bool(), _t(a), _t(b))


def scan_back(x, decay, last=0.0):
    """a_t = x_t + decay_t · a_{t+1} over the time axis, with a_T = last. Out of place, so
    it runs under `vmap` and `grad` (and a decay with a learned γ is differentiated)."""
    x = _t(x)
    decay = torch.broadcast_to(_t(decay), x.shape)
    acc = torch.broadcast_to(_t(last), x.shape[1:]).to(x.dtype)
    out = []
    for t in range(x.shape[0] - 1, -1, -1):
        acc = x[t] + decay[t] * acc
        out.append(acc)
    return torch.stack(out[::-1])


def shift(batch, x, n):
    """x_{t+n}, zero where the episode ends before t+n or the trace does."""
    x = _t(x)
    steps = x.shape[0]
    out = torch.zeros_like(x)
    if n >= steps:
        return out
    not_done = 1 - batch["done"]
    alive = torch.ones_like(not_done[: steps - n])
    for k in range(n):  # no episode end at t, t+1, ..., t+n-1
        alive = alive * not_done[k: steps - n + k]
    ahead = x[n:] * alive.reshape(alive.shape + (1,) * (x.dim() - alive.dim()))
    return torch.cat([ahead, out[steps - n:]])


def stack(*xs):
    parts = [_t(x) if _t(x).dim() > 2 else _t(x).unsqueeze(-1) for x in xs]
    return torch.cat([p.float() for p in parts], dim=-1)


def log_prob(d: Distribution, x):
    return d.log_prob(_t(x))


def entropy(d: Distribution):
    return d.entropy()


def kl(p, q):
    return p.kl(q) if isinstance(p, (models.DiagGaussian, models.Categorical)) else \
        torch.distributions.kl_divergence(p, q)


def rsample(d: Distribution):
    return d.rsample()


def normal(mean_, log_std):
    return Normal(_t(mean_), torch.exp(_t(log_std)))


def unit_normal(like):
    like = _t(like)
    return Normal(torch.zeros_like(like), torch.ones_like(like))


def anneal(batch, start, end, over=1.0):
    """Linear from start to end over the first `over` of the run; `progress` is set by the
    loop that runs the update."""
    frac = builtins.min(1.0, float(batch["progress"]) / over) if over > 0 else 1.0
    return start + (end - start) * frac


def linear_baseline(batch, ret):
    """rllab's linear feature baseline, fitted per task by ridge regression to `ret` on
    (obs, obs², t, t², t³, 1) over all the task's steps (obs clipped to ±10, t the step's
    position in its episode); its predictions. One task's batch: vmap it over tasks."""
    ret = _t(ret).detach()
    obs = batch["obs"].reshape(*ret.shape, -1).clamp(-10, 10)
    t = batch["timestep"].reshape(ret.shape).unsqueeze(-1)
    feats = torch.cat([obs, obs ** 2, t, t ** 2, t ** 3, torch.ones_like(t)], -1)
    flat = feats.reshape(-1, feats.shape[-1]).double()
    gram = flat.T @ flat
    # rllab raises the ridge until the solve succeeds; one scaled ridge does it for every
    # task at once (vmap cannot branch per task)
    ridge = 1e-5 + 1e-6 * torch.diagonal(gram).mean()
    weights = torch.linalg.solve(gram + ridge * torch.eye(flat.shape[-1], dtype=gram.dtype),
                                 flat.T @ ret.reshape(-1, 1).double())
    return (feats.double() @ weights).squeeze(-1).to(ret.dtype)


def amax(x):
    return x.max(-1).values
