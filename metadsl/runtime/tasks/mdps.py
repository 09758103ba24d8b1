"""Batched random tabular MDPs (RL² Table 2) and the policies they are measured by.

Rewards N(μ_sa, σ²) with μ_sa ~ N(reward_mean, 1); transitions from a flat Dirichlet;
episodes of `horizon` steps from a uniformly drawn start state. Common random numbers:
reward noise, transition and start-state draws are fixed per (step, instance), so every
method meets the same luck.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MDPBatch:
    mu: torch.Tensor  # [B, S, A] mean rewards
    P: torch.Tensor  # [B, S, A, S] transition probabilities
    noise: torch.Tensor  # [T, B] standard normal reward noise
    u_next: torch.Tensor  # [T, B] uniforms for the next state
    u_start: torch.Tensor  # [T, B] uniforms for a start state (used at episode starts)
    horizon: int
    reward_std: float

    @property
    def size(self) -> int:
        return self.mu.shape[0]

    @property
    def states(self) -> int:
        return self.mu.shape[1]

    @property
    def actions(self) -> int:
        return self.mu.shape[2]

    def start(self, t: int) -> torch.Tensor:
        return (self.u_start[t] * self.states).long().clamp(max=self.states - 1)

    def step(self, t: int, state: torch.Tensor, action: torch.Tensor):
        """(reward, next state) [B] of `action` in `state` at global step t."""
        b = torch.arange(self.size)
        reward = self.mu[b, state, action] + self.reward_std * self.noise[t]
        cdf = self.P[b, state, action].cumsum(-1)
        nxt = (cdf < self.u_next[t][:, None]).sum(-1).clamp(max=self.states - 1)
        return reward, nxt


def random_mdps(count: int, states: int, actions: int, horizon: int, steps: int,
                gen: torch.Generator, reward_mean: float = 1.0, reward_std: float = 1.0) -> MDPBatch:
    mu = reward_mean + torch.randn(count, states, actions, generator=gen)
    P = _dirichlet(count, states, actions, gen)
    return MDPBatch(mu, P, torch.randn(steps, count, generator=gen),
                    torch.rand(steps, count, generator=gen), torch.rand(steps, count, generator=gen),
                    horizon, reward_std)


def _dirichlet(count, states, actions, gen) -> torch.Tensor:
    """Flat Dirichlet rows, seeded: normalised Exp(1) draws."""
    e = -torch.log(torch.rand(count, states, actions, states, generator=gen).clamp(min=1e-12))
    return e / e.sum(-1, keepdim=True)


def plan(mu: torch.Tensor, P: torch.Tensor, horizon: int) -> torch.Tensor:
    """Finite-horizon value iteration: Q[h] for h = 1..horizon steps left, [H+1, B, S, A]."""
    B, S, A = mu.shape
    Q = torch.zeros(horizon + 1, B, S, A)
    V = torch.zeros(B, S)
    for h in range(1, horizon + 1):
        Q[h] = mu + torch.einsum("bsat,bt->bsa", P, V)
        V = Q[h].max(-1).values
    return Q


def play(batch: MDPBatch, policy: str, gen: torch.Generator, steps: int,
         prior_mean: float = 1.0) -> torch.Tensor:
    """Total reward per instance [B] of `random`, `oracle` (the known MDP, planned), `psrl`
    (posterior sampling: a sampled MDP planned at each episode start) or `posterior_mean`
    (certainty equivalence: the posterior's mean MDP, planned likewise). The posterior's
    prior puts the mean rewards at N(prior_mean, 1), the family's own N(1, 1) by
    default (bench/psrl_priors.py varies it)."""
    B, S, A = batch.mu.shape
    total = torch.zeros(B)
    state = batch.start(0)
    Q = plan(batch.mu, batch.P, batch.horizon) if policy == "oracle" else None
    counts = torch.zeros(B, S, A)
    reward_sum = torch.zeros(B, S, A)
    transitions = torch.zeros(B, S, A, S)
    b = torch.arange(B)
    for t in range(steps):
        k = t % batch.horizon
        if k == 0:
            state = batch.start(t)
            if policy in ("psrl", "posterior_mean"):  # known noise; Dirichlet(1) rows
                precision = 1 + counts / batch.reward_std ** 2
                mean = (prior_mean + reward_sum / batch.reward_std ** 2) / precision
                if policy == "psrl":
                    mu = mean + torch.randn(B, S, A, generator=gen) / precision.sqrt()
                    P = torch.distributions.Dirichlet(1 + transitions).sample()  # torch's RNG
                else:
                    mu, P = mean, (1 + transitions) / (1 + transitions).sum(-1, keepdim=True)
                Q = plan(mu, P, batch.horizon)
        if policy == "random":
            action = torch.randint(0, A, (B,), generator=gen)
        else:
            action = Q[batch.horizon - k][b, state].argmax(-1)
        reward, nxt = batch.step(t, state, action)
        counts[b, state, action] += 1
        reward_sum[b, state, action] += reward
        transitions[b, state, action, nxt] += 1
        total += reward
        state = nxt
    return total
