"""Small control tasks stepped as tensors, every instance at once: 2-D point navigation
(MAML §5.3) and a chain where the discount decides what is learned (meta-gradient RL).

An environment is built for a batch of task instances and a number of `copies` of each
(parallel episodes of the same task, rows task-major: task i's copies are contiguous).
Episodes have a fixed length, so one rollout of `horizon` steps is one episode per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..execution import population


@dataclass
class NavBatch:
    goal: torch.Tensor  # [B, 2]

    @property
    def size(self) -> int:
        return self.goal.shape[0]


@population.tile.register
def _(instances: NavBatch, n: int) -> NavBatch:
    return NavBatch(instances.goal.repeat(n, 1))


class NavEnv:
    """A point at the origin moves by its scaled, clipped actions; reward −‖position − goal‖."""

    obs_dim = 2
    n_actions = 2  # the action vector's dimension
    continuous = True

    def __init__(self, batch: NavBatch, copies: int, horizon: int, action_clip: float,
                 action_scale: float = 1.0):
        self.goal = batch.goal.repeat_interleave(copies, 0)
        self.horizon, self.action_clip, self.action_scale = horizon, action_clip, action_scale
        self.t = 0
        self.pos = torch.zeros_like(self.goal)

    def reset(self) -> torch.Tensor:
        self.t = 0
        self.pos = torch.zeros_like(self.goal)
        return self.pos.clone()

    def step(self, action: torch.Tensor):
        move = action * self.action_scale
        self.pos = self.pos + move.clamp(-self.action_clip, self.action_clip)
        reward = -torch.linalg.vector_norm(self.pos - self.goal, dim=-1)
        self.t += 1
        done = torch.full((self.goal.shape[0],), float(self.t % self.horizon == 0))
        if self.t % self.horizon == 0:
            self.pos = torch.zeros_like(self.goal)
        return self.pos.clone(), reward, done


@dataclass
class ChainBatch:
    """Chains are all alike; an instance is the seed of its slips."""

    seeds: torch.Tensor  # [B]

    @property
    def size(self) -> int:
        return self.seeds.shape[0]


class ChainEnv:
    """States 0..L−1, start 0, one-hot observations. Action 0 steps back (at the start it
    pays `near_reward` and stays); action 1 steps forward, and from the last state pays
    `far_reward` and returns to the start. With probability `slip` the other action
    happens. Going far pays 10× more per step than sitting at the start, but only a
    discount near 1 sees it past the L − 1 unpaid steps on the way."""

    def __init__(self, batch: ChainBatch, copies: int, length: int, horizon: int,
                 near_reward: float, far_reward: float, slip: float):
        self.length, self.horizon = length, horizon
        self.near_reward, self.far_reward, self.slip = near_reward, far_reward, slip
        self.obs_dim, self.n_actions = length, 2
        self.gen = torch.Generator().manual_seed(int(batch.seeds.sum()))
        self.state = torch.zeros(batch.size * copies, dtype=torch.long)
        self.t = 0

    def _obs(self) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.state, self.length).float()

    def reset(self) -> torch.Tensor:
        self.t = 0
        self.state = torch.zeros_like(self.state)
        return self._obs()

    def step(self, action: torch.Tensor):
        slipped = torch.rand(self.state.shape, generator=self.gen) < self.slip
        forward = (action == 1) ^ slipped
        at_start, at_end = self.state == 0, self.state == self.length - 1
        reward = torch.where(~forward & at_start, self.near_reward, 0.0) + \
            torch.where(forward & at_end, self.far_reward, 0.0)
        self.state = torch.where(forward, torch.where(at_end, 0, self.state + 1),
                                 (self.state - 1).clamp(min=0))
        self.t += 1
        done = torch.full(self.state.shape, float(self.t % self.horizon == 0))
        if self.t % self.horizon == 0:
            self.state = torch.zeros_like(self.state)
        return self._obs(), reward.float(), done
