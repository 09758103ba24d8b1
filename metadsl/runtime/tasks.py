"""Task distributions as batched environments: B task instances stepped as tensors.

An environment holds one batch of task instances: `reset()` gives observations [B, obs],
`step(action)` gives (observation, reward, episode_done), all [B]-batched, no Python loop
over tasks. Bandits are one-step episodes; their rewards come from common random numbers
so that learner and baselines see the same draws.
"""

from __future__ import annotations

import torch

from . import bandits


class BanditEnv:
    """A batch of bandits; each pull is a one-step episode with a constant observation."""

    obs_dim = 1
    horizon = 1

    def __init__(self, batch: bandits.BanditBatch):
        self.batch = batch
        self.n_actions = batch.arms
        self.t = 0

    def reset(self) -> torch.Tensor:
        return torch.ones(self.batch.size, 1)

    def step(self, action: torch.Tensor):
        reward = self.batch.reward(self.t, action)
        self.t += 1
        return self.reset(), reward, torch.ones(self.batch.size)


class BernoulliBandit:
    """`bernoulli_bandit(arms)`: p ~ U(0, 1) per arm."""

    kind = "bandit"

    def __init__(self, arms: int = 5):
        self.arms = arms
        self.n_actions = arms
        self.obs_dim = BanditEnv.obs_dim
        self.horizon = BanditEnv.horizon

    def sample(self, count: int, steps: int, gen: torch.Generator) -> bandits.BanditBatch:
        return bandits.bernoulli_bandits(count, self.arms, steps, gen)

    def env(self, instances: bandits.BanditBatch) -> BanditEnv:
        return BanditEnv(instances)


class DependentBandit(BernoulliBandit):
    """`dependent_bandit(difficulty)`: Wang et al. 2016's two arms with p2 = 1 − p1."""

    def __init__(self, difficulty: str = "uniform"):
        super().__init__(arms=2)
        self.difficulty = difficulty

    def sample(self, count: int, steps: int, gen: torch.Generator) -> bandits.BanditBatch:
        return bandits.dependent_bandits(count, self.difficulty, steps, gen)


FAMILIES = {"bernoulli_bandit": BernoulliBandit, "dependent_bandit": DependentBandit}


def make(source: str, **args):
    return FAMILIES[source](**args)
