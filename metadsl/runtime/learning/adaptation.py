"""Gradient-based inner loops (MAML, FO-MAML, Reptile, Meta-SGD, meta-gradient RL).

Parameters are explicit tensors, one set per task: θ expanded to [tasks, ...] views, so
that every gradient of an adapted copy θ′_i reaches θ. A data batch from `collect` is
time-major with the tasks' rows contiguous ([T, tasks·copies, ...]); `split_tasks` makes
it [tasks, T, copies, ...] and each task's loss and gradient are computed under
`torch.func.vmap`. Second order keeps the inner gradient in the graph (the outer
backward goes through it); first order treats it as a constant.
"""

from __future__ import annotations

import torch
from torch.func import grad_and_value, vmap

from . import loss_view
from ..errors import NonFiniteLoss


def split_tasks(batch: dict, tasks: int) -> tuple[dict, dict]:
    """(per-task tensors [tasks, T, copies, ...], everything else shared), from [T, B, ...]."""
    split, shared = {}, {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 2:
            steps, rows = value.shape[:2]
            split[key] = value.reshape(steps, tasks, rows // tasks, *value.shape[2:]).movedim(1, 0)
        else:
            shared[key] = value
    return split, shared


def _per_task(model, loss_fn, shared: dict, passed: dict):
    """One task's (loss, raw heads) under its parameters: the function vmapped over tasks.
    `passed`: the models the loss is passed (a learned loss), name → module; their
    parameters for the task come in with its own."""
    def one(params, data, passed_params):
        data = dict(data, **shared)
        raw = model.raw(params, data)
        view = loss_view.LossView(model.heads.wrap(raw), model, params, data,
                                  models={n: (m, passed_params[n]) for n, m in passed.items()})
        return loss_fn(data, view), raw
    return one


def _passed(models: dict | None, tasks: int) -> tuple[dict, dict]:
    """(name → module, name → per-task parameters [tasks, ...]) of the models a loss is
    passed: each (module, parameters or None for its own θ)."""
    modules, params = {}, {}
    for name, (module, p) in (models or {}).items():
        modules[name] = module
        params[name] = module.parameters_per_task(tasks) if p is None else p
    return modules, params


class Outer:
    """An outer loss, the adapted heads it was computed from, [tasks, T, copies, ...]
    (TRPO takes its KL over them), and the adapted parameters θ′ (a trace follows them)."""

    def __init__(self, loss: torch.Tensor, heads: dict, params: dict):
        self.loss, self.heads, self.params = loss, heads, params


def _losses(model, params: dict, batch: dict, loss_fn) -> tuple[torch.Tensor, dict]:
    tasks = next(iter(params.values())).shape[0]
    split, shared = split_tasks(batch, tasks)
    return vmap(_per_task(model, loss_fn, shared, {}))(params, split, {})


def objective(model, params: dict, batch: dict, loss_fn) -> Outer:
    """The outer objective: the mean over tasks of each task's loss under its adapted
    parameters."""
    losses, raw = _losses(model, params, batch, loss_fn)
    return Outer(losses.mean(), model.heads.wrap(raw), params)


@torch.no_grad()
def losses(model, params: dict, batch: dict, loss_fn) -> torch.Tensor:
    """Each task's loss under its own parameters [tasks] (a K-shot evaluation's score)."""
    return _losses(model, params, batch, loss_fn)[0]


class Trace:
    """The meta-gradient trace z ≈ dθ/dη of Xu, van Hasselt, Silver (2018), for a model
    whose adapted parameters carry over from update to update (`through INNER(trace = μ)`):
    z′ = μ(I + ∂f/∂θ) z + ∂f/∂η, so the meta-gradient ∂J/∂θ′ · z′ counts how η shaped
    earlier updates too. μ = 1 is the exact dθ′/dη; the paper drops the first term (μ = 0,
    the default: z′ = ∂f/∂η, nothing to keep). η are scalar meta-parameters (γ, λ): z holds
    one copy of θ per meta-parameter. The exact trace can grow without bound where
    I + ∂f/∂θ expands (a non-convex loss); μ < 1 damps it."""

    def __init__(self, model, metas: list, decay: float = 0.0):
        self.etas = [p for m in metas for p in m.parameters()]
        self.decay = decay
        self.z = {name: p.new_zeros(len(self.etas), *p.shape)
                  for name, p in model.named_parameters()}

    def theta(self, model, tasks: int) -> dict:
        """θ per task [tasks, ...]: valued θ, with gradient μz to η (θ + μz·(η − stop_grad η)),
        so differentiating the adapted θ′ by η takes the trace's term in."""
        shift = self.decay * torch.stack([e.reshape(()) - e.detach().reshape(())
                                          for e in self.etas])
        return {name: (p + torch.tensordot(shift, self.z[name], dims=1))
                .unsqueeze(0).expand(tasks, *p.shape) for name, p in model.named_parameters()}

    def advanced(self, adapted: dict) -> dict:
        """z′ = d(mean_i θ′_i)/dη, from the graph of θ′ (which must keep its second-order
        terms): one backward pass builds g(u) = uᵀ dθ′/dη, linear in a probe u, and one
        more per meta-parameter reads its column back, dg_j/du. With μ = 0 nothing
        carries over, and z stays 0."""
        if self.decay == 0:
            return self.z
        names = list(adapted)
        mean = [adapted[n].mean(0) for n in names]
        probes = [torch.zeros_like(m, requires_grad=True) for m in mean]
        g = torch.autograd.grad(mean, self.etas, grad_outputs=probes, create_graph=True,
                                allow_unused=True)
        columns = []
        for g_j in g:
            column = [None] * len(names)
            if g_j is not None and g_j.requires_grad:
                column = torch.autograd.grad(g_j, probes, retain_graph=True, allow_unused=True)
            columns.append([c if c is not None else torch.zeros_like(m)
                            for c, m in zip(column, mean)])
        z = {n: torch.stack([col[i] for col in columns]).detach() for i, n in enumerate(names)}
        if not all(torch.isfinite(v).all() for v in z.values()):
            raise NonFiniteLoss("the meta-gradient trace dθ/dη diverged; the exact trace (μ = 1) "
                                "grows where the update expands, a smaller `trace` damps it")
        return z

    def state_dict(self) -> dict:
        return {"z": self.z}

    def load_state_dict(self, saved: dict) -> None:
        self.z = saved["z"]


def sgd(model, params: dict, batch: dict, loss_fn, lr, order: int, scale: float = 1.0,
        steps: int = 1, models: dict | None = None) -> tuple[dict, torch.Tensor]:
    """`steps` gradient steps per task on the same data: θ′_i = θ_i − scale·α ∇ L_i(θ_i),
    and each task's loss before the first [tasks]. `lr` is a number, a learned scalar (a
    meta-parameter) or a dict of per-parameter step sizes (Meta-SGD); `scale` shrinks
    later steps at evaluation. With order 1 the gradient is a constant to whatever
    differentiates θ′ afterwards. `models`: the models the loss is passed, name →
    (module, per-task parameters or None), constants of this step."""
    tasks = next(iter(params.values())).shape[0]
    split, shared = split_tasks(batch, tasks)
    modules, passed = _passed(models, tasks)
    step = lr if isinstance(lr, dict) else {k: lr for k in params}
    first = None
    for _ in range(steps):
        grads, (losses, _) = vmap(grad_and_value(_per_task(model, loss_fn, shared, modules),
                                                 has_aux=True))(params, split, passed)
        if order == 1:
            grads = {k: g.detach() for k, g in grads.items()}
        params = {k: params[k] - scale * step[k] * grads[k] for k in params}
        first = losses.detach() if first is None else first
    return params, first


@torch.no_grad()
def carry_over(model, params: dict) -> None:
    """θ ← the tasks' mean θ′: the adapted parameters become the model's own (a memory
    that is never reset; the pretrained baseline's multi-task training)."""
    for name, p in model.named_parameters():
        p.copy_(params[name].mean(0))
        p.grad = None


@torch.no_grad()
def reptile(model, params: dict, lr: float, anneal: bool = False, progress: float = 0.0) -> None:
    """Reptile's outer step θ ← θ + ε (mean_i θ′_i − θ); with `anneal`, ε decays linearly
    to 0 over the run (`progress` in [0, 1])."""
    rate = lr * ((1 - progress) if anneal else 1)
    for name, p in model.named_parameters():
        p.add_(rate * (params[name].mean(0) - p))
