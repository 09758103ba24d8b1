"""Any registered gymnasium environment as a task source (`gym(id, horizon, randomize)`).

A task instance is an environment seed plus one scale factor per randomized physical
parameter; a batch of B instances is stepped as one gymnasium vector env (B copies in
one process, same-step autoreset), so a trial's episodes follow one another in place and
the learner sees `prev_done` where one ends. Observations, rewards and flags come back
as tensors [B, ...], like the runtime's own task families.

`randomize = {name: [low, high]}` multiplies a parameter by U[low, high] per task. A
name is an attribute of the unwrapped env (CartPole's `length`, `masspole`, ...) or,
for MuJoCo envs, an array of the model (`body_mass`, `dof_damping`, `geom_friction`).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium
import numpy as np
import torch

from . import rollout
from .tasks import TaskError

# Quantities some classic-control envs cache in __init__ from the parameters we scale.
_DERIVED = {
    "CartPoleEnv": lambda env: (setattr(env, "total_mass", env.masspole + env.masscart),
                                setattr(env, "polemass_length", env.masspole * env.length)),
}


@dataclass
class GymBatch:
    seeds: list[int]  # one environment seed per instance
    scales: dict[str, torch.Tensor]  # randomized parameter -> [B] scale factors

    @property
    def size(self) -> int:
        return len(self.seeds)


def _make(env_id: str, horizon: int):
    try:
        return gymnasium.make(env_id, max_episode_steps=horizon or None)
    except gymnasium.error.Error as e:
        raise TaskError(f"gym(id = {env_id!r}): {e}") from None


def _parameter(env, name: str):
    """(holder, attribute) of a randomizable parameter of an unwrapped env."""
    if isinstance(getattr(env, name, None), (int, float)):
        return env, name
    model = getattr(env, "model", None)  # MuJoCo
    if model is not None and isinstance(getattr(model, name, None), np.ndarray):
        return model, name
    raise TaskError(f"{type(env).__name__} has no numeric parameter {name!r} to randomize")


class GymEnv:
    """B instances of one env as a gymnasium SyncVectorEnv; tensors in and out."""

    def __init__(self, family: "GymTasks", batch: GymBatch):
        self.batch, self.horizon = batch, family.horizon
        self.obs_dim, self.n_actions = family.obs_dim, family.n_actions
        self.vec = gymnasium.vector.SyncVectorEnv(
            [lambda: _make(family.id, family.horizon) for _ in range(batch.size)],
            autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
        for i, env in enumerate(self.vec.envs):
            inner = env.unwrapped
            for name, scale in batch.scales.items():
                holder, attr = _parameter(inner, name)
                value = family.nominal[name] * scale[i].item()
                if isinstance(value, np.ndarray):
                    getattr(holder, attr)[...] = value  # MuJoCo arrays are written in place
                else:
                    setattr(holder, attr, float(value))
            if type(inner).__name__ in _DERIVED:
                _DERIVED[type(inner).__name__](inner)

    def reset(self) -> torch.Tensor:
        obs, _ = self.vec.reset(seed=self.batch.seeds)
        return torch.as_tensor(obs, dtype=torch.float32).reshape(self.batch.size, -1)

    def step(self, action: torch.Tensor):
        obs, reward, terminated, truncated, _ = self.vec.step(action.numpy())
        return (torch.as_tensor(obs, dtype=torch.float32).reshape(self.batch.size, -1),
                torch.as_tensor(reward, dtype=torch.float32),
                torch.as_tensor(terminated | truncated, dtype=torch.float32))


class GymTasks:
    """`gym(id, horizon, randomize)`: tasks are seeds and parameter scales of one env."""

    kind = "gym"

    def __init__(self, id: str, horizon: int = 0, randomize: dict | None = None):
        probe = _make(id, horizon)
        if not isinstance(probe.action_space, gymnasium.spaces.Discrete):
            raise TaskError(f"gym(id = {id!r}): only discrete action spaces are built so "
                            f"far (this one is {type(probe.action_space).__name__})")
        self.id = id
        self.horizon = horizon or probe.spec.max_episode_steps or 1000
        self.obs_dim = int(np.prod(probe.observation_space.shape))
        self.n_actions = int(probe.action_space.n)
        self.randomize = {name: (float(low), float(high))
                          for name, (low, high) in (randomize or {}).items()}
        self.nominal = {}
        for name in self.randomize:
            holder, attr = _parameter(probe.unwrapped, name)
            nominal = getattr(holder, attr)
            self.nominal[name] = np.copy(nominal) if isinstance(nominal, np.ndarray) else nominal
        probe.close()

    def sample(self, count: int, steps: int, gen: torch.Generator) -> GymBatch:
        seeds = torch.randint(0, 2**31 - 1, (count,), generator=gen).tolist()
        scales = {name: low + (high - low) * torch.rand(count, generator=gen)
                  for name, (low, high) in self.randomize.items()}
        return GymBatch(seeds, scales)

    def env(self, instances: GymBatch) -> GymEnv:
        return GymEnv(self, instances)

    score = staticmethod(rollout.mean_episode_return)

