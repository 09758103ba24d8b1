"""Update rules: optimizers and the loop that minimises a loss over collected data."""

from __future__ import annotations

import math

import torch


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or infinite: the run stops, keeping its last good checkpoint."""


def optimizer(rule: str, params, lr: float, **options) -> torch.optim.Optimizer:
    if rule == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=options.get("l2", 0.0))
    if rule == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=options.get("alpha", 0.99),
                                   eps=options.get("eps", 1e-5))
    if rule == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"no optimizer for rule {rule}")


def minimize(opt: torch.optim.Optimizer, model, batch: dict, loss_fn, epochs: int = 1,
             minibatches: int = 1, max_grad_norm: float = 0.0,
             gen: torch.Generator | None = None) -> float:
    """`update M by RULE on LOSS over DATA`: epochs × minibatches gradient steps, split over
    task instances (dim 1) so each recurrent trajectory stays whole. Returns the mean loss."""
    width = batch["done"].shape[1]
    losses = []
    for _ in range(epochs):
        order = torch.randperm(width, generator=gen)
        for chunk in order.chunk(minibatches):
            sub = {k: (v[:, chunk] if isinstance(v, torch.Tensor) and v.dim() >= 2 else v)
                   for k, v in batch.items()}
            loss = loss_fn(sub, model.sequence(sub))
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"the loss is {loss.item()}")
            opt.zero_grad()
            loss.backward()
            if max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            opt.step()
            losses.append(loss.item())
    return sum(losses) / len(losses) if losses else math.nan
