"""Update rules: optimizers and the loop that minimises a loss over collected data."""

from __future__ import annotations

import collections
import math

import torch

from ..errors import NonFiniteLoss
from . import loss_view, models, ops


class Adam(torch.optim.Adam):
    """`adam(lr, epochs, minibatches, max_grad_norm, polyak, l2, schedule)`: Adam, with how
    many passes and minibatches an update makes, its gradient clipping, the rate its target
    network follows the model and its learning rate's schedule (`minimize` reads them)."""

    def __init__(self, params, lr: float = 3e-4, epochs: int = 1, minibatches: int = 1,
                 max_grad_norm: float = 0.0, polyak: float = 0.0, l2: float = 0.0,
                 schedule: str = "constant"):
        # fused: torch's one-kernel CPU step, ~3 times faster than the per-tensor loop on
        # a small model's dozen tensors
        super().__init__(params, lr=lr, weight_decay=l2, fused=True)
        self.epochs, self.minibatches, self.max_grad_norm = epochs, minibatches, max_grad_norm
        self.polyak, self.schedule = polyak, schedule
        _keep_initial_lr(self)


class RMSprop(torch.optim.RMSprop):
    """`rmsprop(lr, alpha, eps, max_grad_norm, schedule)` (A2C, Wang et al. 2016): one step
    per update."""

    def __init__(self, params, lr: float = 7e-4, alpha: float = 0.99, eps: float = 1e-5,
                 max_grad_norm: float = 0.0, schedule: str = "constant"):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, foreach=True)
        self.epochs, self.minibatches, self.max_grad_norm = 1, 1, max_grad_norm
        self.schedule = schedule
        _keep_initial_lr(self)


def _keep_initial_lr(opt: torch.optim.Optimizer) -> None:
    # in the groups, as torch's schedulers keep it: a resumed run's groups then take this
    # run's lr (runs.State.load_state_dict), and its schedule starts from it
    for group in opt.param_groups:
        group["initial_lr"] = group["lr"]


def _schedule_lr(opt: torch.optim.Optimizer, progress: float) -> None:
    """A `linear` schedule sets the rate to lr · (1 − progress) for this update (CleanRL's
    anneal_lr): lr at the loop's first iteration, lr / iterations at its last."""
    if getattr(opt, "schedule", "constant") == "linear":
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * (1 - progress)


def _check_parameters(opt: torch.optim.Optimizer) -> None:
    # one fused norm over every tensor: non-finite if any entry is (or past ~1e19)
    norm = torch.nn.utils.get_total_norm([p for g in opt.param_groups for p in g["params"]],
                                         foreach=True)
    if not torch.isfinite(norm):
        raise NonFiniteLoss("a parameter became NaN or infinite in the update")


# the discounted returns of an update's data at its loss's gamma, computed once by minimize
RETURNS = "discounted_return"


class Minibatch(dict):
    """Columns `chunk` (task instances, dim 1) of a batch's fields, each cut when first
    read: a loss and a model read a few of the dozen fields a rollout records."""

    def __init__(self, batch: dict, chunk: torch.Tensor):
        super().__init__()
        self.batch, self.chunk = batch, chunk

    def __missing__(self, key: str):
        value = self.batch[key]
        if isinstance(value, torch.Tensor) and value.dim() >= 2:
            value = value[:, self.chunk]
        self[key] = value
        return value

    def get(self, key: str, default=None):
        return self[key] if key in self else default

    def __contains__(self, key) -> bool:
        return key in self.batch


def minimize(opt: torch.optim.Optimizer, model, batch: dict, loss_fn,
             gen: torch.Generator | None = None, clip: float | None = None,
             gamma: float | None = None,
             target: loss_view.TargetNetwork | None = None,
             memories: dict | None = None, diagnose: bool = True) -> dict:
    """`update M by RULE on LOSS over DATA`: the optimizer's epochs × minibatches gradient
    steps, split over task instances (dim 1) so each recurrent trajectory stays whole.
    A loss that reads a `target` network has it follow the model by the rule's Polyak
    rate after every step. A model's normalised value heads first move their statistics
    to the data's discounted returns (at the loss's `gamma`; 1 if it has none), and a
    `linear` schedule sets this update's rate. Every step's loss, and the parameters after
    the last step, must be finite. Returns the mean loss and, for a policy update, the
    standard diagnostics (see `diagnostics`) unless `diagnose` is False, taken as CleanRL does from
    the last epoch's minibatches, on the heads their steps computed anyway (no extra
    forward pass). `memories`: the episodic memories the loss reads (a dnd it may also
    train). Only the optimizer's parameters get gradients, and only those move the target
    network."""
    epochs, minibatches = getattr(opt, "epochs", 1), getattr(opt, "minibatches", 1)
    max_grad_norm = getattr(opt, "max_grad_norm", 0.0)
    width = batch["done"].shape[1]
    batch = dict(batch, **{models.MODEL_INPUTS: models.inputs_of(model, batch)})
    _schedule_lr(opt, batch.get("progress", 0.0))
    if "reward" in batch:  # once: normalised value heads and the diagnostics read them
        batch[RETURNS] = ops.scan_back(batch["reward"], (1.0 if gamma is None else gamma)
                                       * (1 - batch["done"]))
    if model.heads.scales and RETURNS in batch:  # normalised value heads follow the returns
        returns, valid = batch[RETURNS], batch.get("valid")
        model.heads.track_returns(returns if valid is None else returns[valid.bool()],
                                  () if target is None else (target.model.heads,))
    stepped = [p for g in opt.param_groups for p in g["params"]]
    losses, stats = [], []
    for epoch in range(epochs):
        order = torch.randperm(width, generator=gen)
        for chunk in order.chunk(minibatches):
            sub = Minibatch(batch, chunk)
            # heads are computed when the loss first reads them (a critic's step reads no
            # policy head on the batch)
            heads = loss_view.LossView({}, model, None, sub, target, memories=memories)
            loss = loss_fn(sub, heads)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"the loss is {loss.item()}")
            if diagnose and epoch == epochs - 1:  # before the step: the heads it was taken on
                stats.append((len(chunk), diagnostics(heads, sub, clip, gamma)))
            # gradients of the parameters the rule steps only: an actor's loss reaches
            # the critics it reads, which its update leaves as they are
            grads = torch.autograd.grad(loss, stepped, allow_unused=True)
            for p, g in zip(stepped, grads):
                p.grad = g
            if max_grad_norm > 0:  # every parameter the rule steps (a model's, a dnd's)
                torch.nn.utils.clip_grad_norm_(stepped, max_grad_norm, foreach=True)
            opt.step()
            if target is not None:
                target.follow(model, opt.polyak, stepped)
            losses.append(loss.item())
    # a step that made a parameter NaN or infinite makes the next step's loss so; the last
    # step's is caught here, before the update's result reaches a checkpoint
    _check_parameters(opt)
    out = {"loss": sum(losses) / len(losses) if losses else math.nan}
    for name in stats[0][1] if stats else ():  # the minibatches' mean, by their sizes
        out[name] = sum(n * s[name] for n, s in stats) / sum(n for n, _ in stats)
    return out


def skipped() -> dict:
    """The statistics of an update that did not run this iteration (a warm-up): NaN."""
    return collections.defaultdict(lambda: math.nan)


@torch.no_grad()
def diagnostics(heads: loss_view.LossView, batch: dict, clip: float | None = None,
                gamma: float | None = None) -> dict:
    """How far an update has moved a policy (`heads`, on `batch`) from the one that
    collected the data: the approximate KL E[(r − 1) − log r] (r the probability ratio),
    the fraction of steps whose ratio left [1 − clip, 1 + clip] (a clipped objective's
    `clip`), and the value head's explained variance of the discounted return at the
    objective's `gamma` (`batch[RETURNS]`, which `minimize` computes once per update)."""
    if "logp" not in batch or "action" not in batch or "pi" not in heads.model.heads.kinds:
        return {}
    log_ratio = heads["pi"].log_prob(batch["action"]) - batch["logp"]
    ratio = torch.exp(log_ratio)
    out = {"approx_kl": ops.mean(batch, (ratio - 1) - log_ratio).item()}
    if clip is not None:
        out["clip_fraction"] = ops.mean(batch, ((ratio - 1).abs() > clip).float()).item()
    if gamma is not None and "v" in heads.model.heads.kinds:
        returns = batch[RETURNS]
        variance = ops.std(batch, returns) ** 2
        residual = ops.std(batch, returns - heads["v"]) ** 2
        out["explained_variance"] = (1 - residual / variance).item() if variance > 0 \
            else math.nan
    return out


def outer_step(opt: torch.optim.Optimizer, closure, trace=None) -> float:
    """`update M by RULE on LOSS over DATA through INNER`: one outer step on the loss that
    `closure()` recomputes from θ (re-adapting θ′ on the same trajectories, so that TRPO's
    line search can evaluate candidate θ). A meta-gradient `trace` (adaptation.Trace) is
    advanced from the same graph, at the meta-parameters the step started from. Returns
    the loss before the step."""
    if isinstance(opt, TRPO):
        return opt.step(closure)
    out = closure()
    if not torch.isfinite(out.loss):
        raise NonFiniteLoss(f"the loss is {out.loss.item()}")
    advanced = trace.advanced(out.params) if trace is not None else None
    opt.zero_grad()
    out.loss.backward()
    max_grad_norm = getattr(opt, "max_grad_norm", 0.0)
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]],
                                       max_grad_norm)
    opt.step()
    _check_parameters(opt)
    if trace is not None:
        trace.z = advanced
    return out.loss.item()


def conjugate_gradient(matvec, b: torch.Tensor, iters: int, tol: float = 1e-10) -> torch.Tensor:
    """x ≈ A⁻¹ b for a symmetric positive definite A given as a matrix-vector product."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x, r = x + alpha * p, r - alpha * ap
        rr_new = r @ r
        if rr_new < tol:
            break
        p, rr = r + (rr_new / rr) * p, rr_new
    return x


class TRPO(torch.optim.Optimizer):
    """Trust-region policy optimisation (Schulman et al. 2015) as MAML's outer step: the
    natural-gradient direction by conjugate gradient on Fisher-vector products (Hessians
    of the mean KL(π_old ‖ π) on the outer batch, through the inner adaptation), scaled
    to the KL radius, then a backtracking line search that accepts the first step with
    KL ≤ max_kl and a lower loss. `step(closure)`: the closure returns the outer loss and
    the policy heads it was computed from (see adaptation.Outer)."""

    def __init__(self, params, max_kl: float = 0.01, cg_iters: int = 10, damping: float = 1e-5,
                 backtrack: float = 0.8, line_search_steps: int = 15):
        super().__init__(params, dict(max_kl=max_kl, cg_iters=cg_iters, damping=damping,
                                      backtrack=backtrack, line_search_steps=line_search_steps))
        self.kl = self.improvement = 0.0  # of the last step taken (0 when none was kept)

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def step(self, closure) -> float:  # noqa: D102 - see the class

        opts = self.param_groups[0]
        params = self._params()
        out = closure()
        if not torch.isfinite(out.loss):
            raise NonFiniteLoss(f"the loss is {out.loss.item()}")
        old = out.heads["pi"].detach()
        kl = ops.kl(old, out.heads["pi"]).mean()
        g = _flat(torch.autograd.grad(out.loss, params, retain_graph=True))
        kl_grad = _flat(torch.autograd.grad(kl, params, create_graph=True))

        def fisher(v: torch.Tensor) -> torch.Tensor:
            return _flat(torch.autograd.grad(kl_grad @ v, params, retain_graph=True)) + \
                opts["damping"] * v

        direction = conjugate_gradient(fisher, -g, opts["cg_iters"])
        curvature = direction @ fisher(direction)
        self.kl = self.improvement = 0.0
        if not torch.isfinite(curvature) or curvature <= 0:
            return out.loss.item()
        full = direction * torch.sqrt(2 * opts["max_kl"] / curvature)
        start = _flat(params).detach()
        with torch.no_grad():
            for k in range(opts["line_search_steps"]):
                _assign(params, start + opts["backtrack"] ** k * full)
                trial = closure()
                trial_kl = ops.kl(old, trial.heads["pi"]).mean()
                if trial_kl <= opts["max_kl"] and trial.loss < out.loss:
                    self.kl, self.improvement = trial_kl.item(), (out.loss - trial.loss).item()
                    break
            else:
                _assign(params, start)  # no step kept the policy in the trust region
        return out.loss.item()


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _assign(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    offset = 0
    for p in params:
        p.copy_(flat[offset: offset + p.numel()].view_as(p))
        offset += p.numel()
