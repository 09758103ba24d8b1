"""Wang et al. 2016's informative-arm bandit: of k arms, k − 1 are ordinary and one of
them (the target) pays 5, the others 1; the last arm pays (index of the target + 1) /
(k − 1) — with 11 arms, a tenth of the target's number. Rewards are deterministic: the
task is to learn to pay for information first, then exploit it. Over 5 pulls the
optimum is 20.55 (informative arm first), blind search earns 11.0."""

from __future__ import annotations

from dataclasses import dataclass

import torch

TARGET_REWARD, OTHER_REWARD = 5.0, 1.0


@dataclass
class InformativeBatch:
    target: torch.Tensor  # [B] index of the paying arm, in 0..k−2
    arms: int
    pulls: int

    @property
    def size(self) -> int:
        return self.target.shape[0]

    def reward(self, t: int, action: torch.Tensor) -> torch.Tensor:
        informative = action == self.arms - 1
        cue = (self.target + 1).float() / (self.arms - 1)
        paid = torch.where(action == self.target, TARGET_REWARD, OTHER_REWARD)
        return torch.where(informative, cue, paid)

    def best_mean(self) -> torch.Tensor:
        return torch.full((self.size,), TARGET_REWARD)


def informative_bandits(batch: int, arms: int, pulls: int, gen: torch.Generator) -> InformativeBatch:
    return InformativeBatch(torch.randint(0, arms - 1, (batch,), generator=gen), arms, pulls)


def play(batch: InformativeBatch, name: str, gen: torch.Generator) -> torch.Tensor:
    """Total reward per instance [B] of a baseline: `oracle` pulls the target throughout;
    `bayes_optimal` reads the informative arm first (when two or more pulls remain, which
    is optimal for 11 arms) and then pulls the arm it names; `random` pulls uniformly."""
    if name not in ("oracle", "random", "bayes_optimal"):
        raise KeyError(name)
    reads_cue = name == "bayes_optimal" and batch.pulls >= 2
    total = torch.zeros(batch.size)
    decoded = None
    for t in range(batch.pulls):
        if name == "oracle":
            action = batch.target
        elif name == "random":
            action = torch.randint(0, batch.arms, (batch.size,), generator=gen)
        elif reads_cue:
            action = torch.full_like(batch.target, batch.arms - 1) if decoded is None else decoded
        else:  # one pull: an ordinary arm beats the cue's mean
            action = torch.zeros_like(batch.target)
        reward = batch.reward(t, action)
        if reads_cue and decoded is None:
            decoded = (reward * (batch.arms - 1)).round().long() - 1
        total += reward
    return total
