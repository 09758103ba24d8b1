"""Meta-parameters: quantities an outer loop learns that the inner loop uses (learned γ
and λ, learned step sizes). Each is a module whose call gives its current value, so a
loss reads `state.gamma()` and the value stays differentiable in the meta-parameter."""

from __future__ import annotations

import math

import torch
from torch import nn


class Bounded(nn.Module):
    """`bounded(init, low, high)`: low + (high − low)·sigmoid(w), w learned."""

    def __init__(self, init: float, low: float = 0.0, high: float = 1.0):
        super().__init__()
        self.low, self.high = low, high
        frac = min(max((init - low) / (high - low), 1e-6), 1 - 1e-6)
        self.logit = nn.Parameter(torch.tensor(math.log(frac / (1 - frac))))

    def forward(self) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(self.logit)


class Positive(nn.Module):
    """`positive(init)`: exp(w), w learned."""

    def __init__(self, init: float):
        super().__init__()
        self.log = nn.Parameter(torch.tensor(math.log(init)))

    def forward(self) -> torch.Tensor:
        return torch.exp(self.log)


class StepSizes(nn.Module):
    """`step_sizes(model, init)`: one learned inner step size per parameter entry of a model
    (Meta-SGD, Li et al. 2017), used as θ′ = θ − α ⊙ ∇L."""

    def __init__(self, model: nn.Module, init: float):
        super().__init__()
        self.names = [name for name, _ in model.named_parameters()]
        self.sizes = nn.ParameterList([nn.Parameter(torch.full_like(p, init))
                                       for p in model.parameters()])

    def forward(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.sizes))
