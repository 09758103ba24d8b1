"""Supervised task families: random quadratics read as sequences (Hochreiter et al.
2001), and sine waves sampled in batches (MAML §5.1, Reptile).

A learner reads (x_t, y_{t-1}) and predicts y_t; within a sequence it can only learn by
its state. The reference is Bayes-optimal in the quadratic's six features: the posterior
mean of the coefficients given the points seen so far, under a Gaussian prior with the
coefficients' variance ((high − low)² / 12 for U[low, high]).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def features(x: torch.Tensor) -> torch.Tensor:
    """(x1², x2², x1·x2, x1, x2, 1) for x [..., 2]."""
    x1, x2 = x[..., 0], x[..., 1]
    return torch.stack([x1 * x1, x2 * x2, x1 * x2, x1, x2, torch.ones_like(x1)], -1)


@dataclass
class QuadraticBatch:
    coef: torch.Tensor  # [B, 6]
    x: torch.Tensor  # [T, B, 2]

    @property
    def size(self) -> int:
        return self.coef.shape[0]

    @property
    def y(self) -> torch.Tensor:
        return (features(self.x) * self.coef).sum(-1)


def random_quadratics(count: int, steps: int, gen: torch.Generator, coef_low=-1.0, coef_high=1.0,
                      x_low=-1.0, x_high=1.0) -> QuadraticBatch:
    coef = coef_low + (coef_high - coef_low) * torch.rand(count, 6, generator=gen)
    x = x_low + (x_high - x_low) * torch.rand(steps, count, 2, generator=gen)
    return QuadraticBatch(coef, x)


def bayes_predictions(batch: QuadraticBatch, prior_var: float) -> torch.Tensor:
    """Posterior-mean prediction of y_t from the t points before it, [T, B] (noise-free
    observations, a small jitter for numerical stability)."""
    phi = features(batch.x).transpose(0, 1).double()  # [B, T, 6]
    y = batch.y.transpose(0, 1).double()  # [B, T]
    steps = phi.shape[1]
    out = torch.zeros(batch.size, steps, dtype=torch.float64)
    for t in range(1, steps):
        seen = phi[:, :t]  # [B, t, 6]
        gram = prior_var * seen @ seen.transpose(1, 2) + 1e-9 * torch.eye(t, dtype=torch.float64)
        weights = torch.linalg.solve(gram, y[:, :t, None])  # [B, t, 1]
        mean_coef = prior_var * (seen.transpose(1, 2) @ weights).squeeze(-1)  # [B, 6]
        out[:, t] = (phi[:, t] * mean_coef).sum(-1)
    return out.transpose(0, 1).float()


class SequenceEnv:
    """The data of one batch of regression tasks, as a learner reads them."""

    def __init__(self, batch: QuadraticBatch):
        self.batch = batch
        self.horizon = 1

    def sequence(self, gen: torch.Generator | None = None) -> dict:
        """The batch's fixed sequences (drawn with the batch; `gen` is not needed)."""
        y = self.batch.y
        prev_y = torch.cat([torch.zeros(1, self.batch.size), y[:-1]])
        done = torch.zeros_like(y)
        done[-1] = 1.0
        return {"x": self.batch.x, "y": y, "prev_y": prev_y, "done": done}


@dataclass
class SineBatch:
    amplitude: torch.Tensor  # [B]
    phase: torch.Tensor  # [B]

    @property
    def size(self) -> int:
        return self.amplitude.shape[0]


class SineEnv:
    """`copies` fresh points x ~ U[x_low, x_high] per task and draw, y = a·sin(x + b); one
    draw is one step [1, B·copies] (rows task-major), as a feed-forward learner reads it."""

    horizon = 1

    def __init__(self, batch: SineBatch, copies: int, x_low: float, x_high: float):
        self.batch, self.copies, self.x_low, self.x_high = batch, copies, x_low, x_high

    def sequence(self, gen: torch.Generator | None = None) -> dict:
        rows = self.batch.size * self.copies
        x = self.x_low + (self.x_high - self.x_low) * torch.rand(1, rows, 1, generator=gen)
        a = self.batch.amplitude.repeat_interleave(self.copies)
        b = self.batch.phase.repeat_interleave(self.copies)
        y = a * torch.sin(x[..., 0] + b)
        return {"x": x, "y": y, "done": torch.ones(1, rows)}
