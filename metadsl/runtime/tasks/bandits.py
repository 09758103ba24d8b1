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


class Gittins:
    """Finite-horizon Gittins index policy. An arm with posterior Beta(s+1, f+1) and h pulls
    left gets the retirement rate λ at which pulling it and retiring for good (λ per pull)
    are equally good. Backward induction over h computes the value for every (s, f) and every
    λ on a grid at once, so the whole index table costs O(grid · n³) tensor work."""

    def __init__(self, pulls: int, grid: int = 200):
        n = pulls
        lam = torch.linspace(0, 1, grid + 1, dtype=torch.float64)
        s = torch.arange(n + 1, dtype=torch.float64)[:, None]
        f = torch.arange(n + 1, dtype=torch.float64)[None, :]
        mean = (s + 1) / (s + f + 2)
        value = torch.zeros(grid + 1, n + 2, n + 2, dtype=torch.float64)  # h = 0 pulls left
        self.index = torch.zeros(n + 1, n + 1, n + 1, dtype=torch.float64)  # [h, s, f]
        for h in range(1, n + 1):
            pull = mean * (1 + value[:, 1: n + 2, : n + 1]) + (1 - mean) * value[:, : n + 1, 1: n + 2]
            gap = pull - lam[:, None, None] * h  # falls as λ grows; its root is the index
            i = ((gap >= 0).sum(dim=0) - 1).clamp(0, grid - 1)
            below, above = gap.gather(0, i[None]).squeeze(0), gap.gather(0, i[None] + 1).squeeze(0)
            frac = (below / (below - above).clamp(min=1e-12)).clamp(0, 1)
            self.index[h] = lam[i] + frac / grid
            value[:, : n + 1, : n + 1] = torch.maximum(pull, lam[:, None, None] * h)
        self.pulls = n

    def __call__(self, s, f, t, n, gen):
        left = n - t
        score = self.index[left][s.long().clamp(max=self.pulls), f.long().clamp(max=self.pulls)]
        return _argmax_random_ties(score.float(), gen)


class DependentBayesOptimal:
    """The exact Bayes-optimal policy for Wang et al.'s dependent arms (p2 = 1 − p1). An arm-1
    success and an arm-2 failure are the same evidence about p1, so the posterior is a
    function of two counts, (heads, tails), and the DP is over those: tiny even at n = 100."""

    def __init__(self, difficulty: str, pulls: int):
        self.difficulty, self.pulls = difficulty, pulls
        self.value = lru_cache(maxsize=None)(self._value)

    def mean_p1(self, heads: int, tails: int) -> float:
        if self.difficulty == "uniform":
            return (heads + 1) / (heads + tails + 2)
        low, high = DEPENDENT_PAIRS[self.difficulty]
        w_low = low ** heads * (1 - low) ** tails
        w_high = high ** heads * (1 - high) ** tails
        return (w_low * low + w_high * high) / (w_low + w_high)

    def _q(self, heads: int, tails: int, arm: int, left: int) -> float:
        p = self.mean_p1(heads, tails) if arm == 0 else 1 - self.mean_p1(heads, tails)
        win = (heads + 1, tails) if arm == 0 else (heads, tails + 1)
        lose = (heads, tails + 1) if arm == 0 else (heads + 1, tails)
        return p * (1 + self.value(*win, left - 1)) + (1 - p) * self.value(*lose, left - 1)

    def _value(self, heads: int, tails: int, left: int) -> float:
        if left == 0:
            return 0.0
        return max(self._q(heads, tails, a, left) for a in (0, 1))

    def expected_regret(self) -> float:
        if self.difficulty == "uniform":
            best = 0.75  # E[max(p1, 1 − p1)] for p1 ~ U(0, 1)
        else:
            best = DEPENDENT_PAIRS[self.difficulty][1]
        return self.pulls * best - self.value(0, 0, self.pulls)

    def __call__(self, s, f, t, n, gen):
        heads = (s[:, 0] + f[:, 1]).long().tolist()
        tails = (f[:, 0] + s[:, 1]).long().tolist()
        actions = []
        for h, k in zip(heads, tails):
            q0, q1 = self._q(h, k, 0, n - t), self._q(h, k, 1, n - t)
            actions.append(0 if q0 > q1 + 1e-12 else 1 if q1 > q0 + 1e-12
                           else int(torch.randint(2, (1,), generator=gen)))
        return torch.tensor(actions)


def play(batch: BanditBatch, policy, gen: torch.Generator, per_step: bool = False):
    """Run a policy on every instance; total reward per instance [B] (or, `per_step`, each
    pull's reward [n, B])."""
    s = torch.zeros_like(batch.p)
    f = torch.zeros_like(batch.p)
    rewards = []
    for t in range(batch.pulls):
        action = policy(s, f, t, batch.pulls, gen)
        r = batch.reward(t, action)
        hit = torch.nn.functional.one_hot(action, batch.arms).float()
        s += hit * r[:, None]
        f += hit * (1 - r[:, None])
        rewards.append(r)
    rewards = torch.stack(rewards)
    return rewards if per_step else rewards.sum(0)


def tune_ucb1(arms: int, pulls: int, key, instances: int = 2000,
              grid=(0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)) -> float:
    """The exploration constant with the best mean total reward on separate instances, as
    Duan et al. tuned their baselines. `key(purpose)`: a fresh generator for "tasks" and
    for "draws" (the same draws for every candidate)."""
    tuning = bernoulli_bandits(instances, arms, pulls, key("tasks"))
    scores = {c: play(tuning, ucb1(c), key("draws")).mean().item() for c in grid}
    return max(scores, key=scores.get)
