"""Ritter et al. 2018's recurring contextual bandits, batched, with common random numbers.

A task is `contexts` bandits, each shown by its own context (a random ±1 barcode of
`context_dim` entries) and each with one best arm paying 1 with probability `P_BEST`, the
others with `P_OTHER`. An episode is `pulls` pulls of one context's bandit; a trial is
`contexts × repeats` episodes in a random order, so every context comes back. An agent
that remembers what it found on a context's first visit can pull its best arm from the
first pull of the next one.

Baselines keep one posterior per context for the whole trial (as if they had a perfect
episodic memory of each context): Thompson sampling and UCB1 play each context's bandit
over all its visits, and `random` pulls uniformly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import bandits

P_BEST, P_OTHER = 0.9, 0.1


@dataclass
class ContextualBatch:
    p: torch.Tensor  # [B, C, K] arm probabilities per context
    codes: torch.Tensor  # [B, C, D] context barcodes
    order: torch.Tensor  # [B, E] the context of each episode
    u: torch.Tensor  # [n, B, K] uniform draws per pull (common random numbers)
    pulls: int  # pulls per episode

    @property
    def size(self) -> int:
        return self.p.shape[0]

    @property
    def arms(self) -> int:
        return self.p.shape[2]

    def context_at(self, t: int) -> torch.Tensor:
        """[B] the context shown at pull t."""
        return self.order[:, t // self.pulls]

    def reward(self, t: int, action: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(self.size)
        p = self.p[rows, self.context_at(t), action]
        return (self.u[t, rows, action] < p).float()

    def first_pulls(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, B] masks of the pulls that open a context's first visit and a later one."""
        episodes = self.order.shape[1]
        seen = torch.zeros(self.size, self.p.shape[1], dtype=torch.bool)
        new = torch.zeros(episodes * self.pulls, self.size, dtype=torch.bool)
        repeat = torch.zeros_like(new)
        rows = torch.arange(self.size)
        for e in range(episodes):
            context = self.order[:, e]
            visited = seen[rows, context]
            new[e * self.pulls], repeat[e * self.pulls] = ~visited, visited
            seen[rows, context] = True
        return new, repeat

    def best_mean(self) -> torch.Tensor:
        return self.p.max(-1).values.mean(-1)


def contextual_bandits(count: int, arms: int, contexts: int, repeats: int, dim: int,
                       pulls: int, steps: int, gen: torch.Generator) -> ContextualBatch:
    """`count` tasks with trials of `steps` pulls: every context `repeats` times in a random
    order, then (for a longer trial) further visits of random contexts."""
    best = torch.randint(arms, (count, contexts), generator=gen)
    p = torch.full((count, contexts, arms), P_OTHER)
    p.scatter_(2, best.unsqueeze(-1), P_BEST)
    codes = torch.randint(2, (count, contexts, dim), generator=gen).float() * 2 - 1
    episodes = -(-steps // pulls)
    order = torch.arange(contexts).repeat(repeats).expand(count, -1)
    order = order.gather(1, torch.rand(order.shape, generator=gen).argsort(1))
    if episodes > order.shape[1]:
        extra = torch.randint(contexts, (count, episodes - order.shape[1]), generator=gen)
        order = torch.cat([order, extra], 1)
    return ContextualBatch(p, codes, order[:, :episodes],
                           torch.rand(episodes * pulls, count, arms, generator=gen), pulls)


class ContextualEnv:
    """The batch's trials: the observation is the current context's barcode; an episode
    ends after `pulls` pulls."""

    def __init__(self, batch: ContextualBatch):
        self.batch, self.t = batch, 0
        self.n_actions, self.obs_dim = batch.arms, batch.codes.shape[2]
        self.horizon = batch.pulls

    def reset(self) -> torch.Tensor:
        return self._obs()

    def _obs(self) -> torch.Tensor:
        rows = torch.arange(self.batch.size)
        t = min(self.t, self.batch.u.shape[0] - 1)
        return self.batch.codes[rows, self.batch.context_at(t)]

    def step(self, action: torch.Tensor):
        reward = self.batch.reward(self.t, action)
        self.t += 1
        done = float(self.t % self.batch.pulls == 0)
        return self._obs(), reward, torch.full((self.batch.size,), done)


def per_context(batch: ContextualBatch):
    """Each (task, context) as one bandit over all its visits, in order: a BanditBatch of
    B·C instances, the trial step of each of its pulls [L, B·C], and how many pulls it
    really has [B·C] (contexts visited less often are padded)."""
    B, C, K = batch.p.shape
    context = batch.order.repeat_interleave(batch.pulls, 1)  # [B, n]
    counts = torch.stack([(context == c).sum(1) for c in range(C)], 1)  # [B, C]
    when = torch.zeros(int(counts.max()), B, C, dtype=torch.long)
    filled = torch.zeros(B, C, dtype=torch.long)
    rows = torch.arange(B)
    for t in range(context.shape[1]):
        c = context[:, t]
        when[filled[rows, c], rows, c] = t
        filled[rows, c] += 1
    u = batch.u[when, rows[None, :, None]]  # [L, B, C, K]: each pull's own draws
    flat = bandits.BanditBatch(batch.p.reshape(B * C, K), u.reshape(-1, B * C, K))
    return flat, when.reshape(-1, B * C), counts.reshape(B * C)


def play(batch: ContextualBatch, policy, gen: torch.Generator) -> torch.Tensor:
    """A bandit policy that keeps one posterior per context for the whole trial: its
    reward at every pull of the trial [n, B]."""
    B, C, _ = batch.p.shape
    flat, when, counts = per_context(batch)
    rewards = bandits.play(flat, policy, gen, per_step=True)  # [L, B·C]
    real = torch.arange(when.shape[0])[:, None] < counts[None, :]
    column = torch.arange(B).repeat_interleave(C).expand_as(when)
    out = torch.zeros(batch.order.shape[1] * batch.pulls, B)
    out[when[real], column[real]] = rewards[real]
    return out
