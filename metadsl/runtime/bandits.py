"""Batched Bernoulli bandits as tensors, and the classical policies they are measured by.

A `BanditBatch` holds B task instances (arm probabilities `p`, [B, k]) and, for common
random numbers, one uniform draw per (pull, instance, arm): pulling arm a at step t pays
1 when u[t, b, a] < p[b, a]. Every method evaluated on a batch — the learner and each
baseline — therefore sees the same bandits and the same luck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

DEPENDENT_PAIRS = {"easy": (0.1, 0.9), "medium": (0.25, 0.75), "hard": (0.4, 0.6)}


@dataclass
class BanditBatch:
    p: torch.Tensor  # [B, k] success probabilities
    u: torch.Tensor  # [n, B, k] uniform draws: the rewards' common random numbers

    @property
    def size(self) -> int:
        return self.p.shape[0]

    @property
    def arms(self) -> int:
        return self.p.shape[1]

    @property
    def pulls(self) -> int:
        return self.u.shape[0]

    def reward(self, t: int, action: torch.Tensor) -> torch.Tensor:
        """Rewards [B] of pulling `action` [B] at step t."""
        u = self.u[t].gather(1, action[:, None]).squeeze(1)
        p = self.p.gather(1, action[:, None]).squeeze(1)
        return (u < p).float()

    def best_mean(self) -> torch.Tensor:
        return self.p.max(dim=1).values


def bernoulli_bandits(batch: int, arms: int, pulls: int, gen: torch.Generator) -> BanditBatch:
    p = torch.rand(batch, arms, generator=gen)
    return BanditBatch(p, torch.rand(pulls, batch, arms, generator=gen))


def dependent_bandits(batch: int, difficulty: str, pulls: int, gen: torch.Generator) -> BanditBatch:
    """Wang et al. 2016: two arms with p2 = 1 − p1 (or independent arms)."""
    if difficulty == "independent":
        p = torch.rand(batch, 2, generator=gen)
    else:
        if difficulty == "uniform":
            p1 = torch.rand(batch, generator=gen)
        else:
            low, high = DEPENDENT_PAIRS[difficulty]
            p1 = torch.where(torch.rand(batch, generator=gen) < 0.5, low, high)
        p = torch.stack([p1, 1 - p1], dim=1)
    return BanditBatch(p, torch.rand(pulls, batch, 2, generator=gen))


# ---- policies --------------------------------------------------------------------------
# A policy maps the posterior counts (successes s, failures f: [B, k]) at step t to
# actions [B]. Ties are broken uniformly at random, which moves greedy by about a point.


def _argmax_random_ties(score: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    noise = torch.rand(score.shape, generator=gen) * 1e-9
    best = score.max(dim=1, keepdim=True).values
    return torch.where(score >= best - 1e-12, 1.0 + noise, noise).argmax(dim=1)


def random_policy(s, f, t, n, gen):
    return torch.randint(0, s.shape[1], (s.shape[0],), generator=gen)


def greedy(s, f, t, n, gen):
    return _argmax_random_ties((s + 1) / (s + f + 2), gen)


def epsilon_greedy(epsilon: float):
    def policy(s, f, t, n, gen):
        explore = torch.rand(s.shape[0], generator=gen) < epsilon
        return torch.where(explore, random_policy(s, f, t, n, gen), greedy(s, f, t, n, gen))
    return policy


def thompson(s, f, t, n, gen):
    """Thompson sampling with Beta(1, 1) priors."""
    a = torch.distributions.Gamma(s + 1, 1.0).sample()  # torch's Gamma takes no generator:
    b = torch.distributions.Gamma(f + 1, 1.0).sample()  # seeded through torch.manual_seed
    return _argmax_random_ties(a / (a + b), gen)


def ucb1(c: float):
    """UCB1 (Auer et al. 2002) with exploration constant c: untried arms first."""
    def policy(s, f, t, n, gen):
        pulls = s + f
        mean = s / pulls.clamp(min=1)
        bonus = c * torch.sqrt(2 * math.log(max(t, 1)) / pulls.clamp(min=1))
        score = torch.where(pulls == 0, torch.full_like(mean, 1e9), mean + bonus)
        return _argmax_random_ties(score, gen)
    return policy


class BayesOptimal:
    """The exact finite-horizon Bayes-optimal policy for Beta(1,1) priors, by dynamic
    programming over posterior states. Arms are exchangeable, so a state is the sorted
    multiset of per-arm (successes, failures): k = 10, n = 10 has a few thousand."""

    def __init__(self, arms: int, pulls: int):
        self.arms, self.pulls = arms, pulls
        self.value = lru_cache(maxsize=None)(self._value)

    def _value(self, state: tuple, left: int) -> float:
        if left == 0:
            return 0.0
        return max(self._q(state, a, left) for a in range(len(state))
                   if a == 0 or state[a] != state[a - 1])

    def _q(self, state: tuple, a: int, left: int) -> float:
        s, f = state[a]
        mean = (s + 1) / (s + f + 2)
        win = tuple(sorted(state[:a] + ((s + 1, f),) + state[a + 1:]))
        lose = tuple(sorted(state[:a] + ((s, f + 1),) + state[a + 1:]))
        return mean * (1 + self.value(win, left - 1)) + (1 - mean) * self.value(lose, left - 1)

    def expected_total(self) -> float:
        return self.value(tuple([(0, 0)] * self.arms), self.pulls)

    def __call__(self, s, f, t, n, gen):
        actions = []
        for b in range(s.shape[0]):
            pairs = [(int(s[b, a]), int(f[b, a])) for a in range(s.shape[1])]
            state = tuple(sorted(pairs))
            left = n - t
            q = [self._q(state, state.index(pairs[a]), left) for a in range(len(pairs))]
            best = max(q)
            ties = [a for a, v in enumerate(q) if v >= best - 1e-12]
            actions.append(ties[int(torch.randint(len(ties), (1,), generator=gen))])
        return torch.tensor(actions)


def play(batch: BanditBatch, policy, gen: torch.Generator) -> torch.Tensor:
    """Run a policy on every instance; total reward per instance [B]."""
    s = torch.zeros_like(batch.p)
    f = torch.zeros_like(batch.p)
    total = torch.zeros(batch.size)
    for t in range(batch.pulls):
        action = policy(s, f, t, batch.pulls, gen)
        r = batch.reward(t, action)
        hit = torch.nn.functional.one_hot(action, batch.arms).float()
        s += hit * r[:, None]
        f += hit * (1 - r[:, None])
        total += r
    return total


def tune_ucb1(arms: int, pulls: int, seed: int, instances: int = 2000,
              grid=(0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)) -> float:
    """The exploration constant with the best mean total reward on separate instances, as
    Duan et al. tuned their baselines."""
    gen = torch.Generator().manual_seed(seed)
    tuning = bernoulli_bandits(instances, arms, pulls, gen)
    scores = {c: play(tuning, ucb1(c), torch.Generator().manual_seed(seed + 1)).mean().item()
              for c in grid}
    return max(scores, key=scores.get)
