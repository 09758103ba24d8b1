"""Any registered gymnasium environment as a task source (`gym(id, horizon, randomize)`),
and MAML's HalfCheetah goal-velocity and direction tasks built on it.

A task instance is an environment seed, one scale factor per randomized physical
parameter, and (for goal-conditioned families) a goal. A batch of B instances, each in
`copies` parallel episodes, is stepped as one gymnasium vector env (same-step autoreset),
so a trial's episodes follow one another in place and the learner sees `prev_done`
where one ends. Observations, rewards and flags come back as tensors [B·copies, ...],
rows task-major, like the runtime's own task families. Vector envs are kept per size and
reused from batch to batch: a MuJoCo model takes milliseconds to load, and MAML asks for
hundreds of copies every iteration.

`randomize = {name: [low, high]}` multiplies a parameter by U[low, high] per task. A
name is an attribute of the unwrapped env (CartPole's `length`, `masspole`, ...) or,
for MuJoCo envs, an array of the model (`body_mass`, `dof_damping`, `geom_friction`).
Continuous actions are clipped to the action space's bounds (gymnasium's ClipAction).
"""

from __future__ import annotations

import copy

from dataclasses import dataclass

import gymnasium
import numpy as np
import torch

from ..errors import TaskError
from ..execution import population, rollout

# Quantities some classic-control envs cache in __init__ from the parameters we scale.
_DERIVED = {
    "CartPoleEnv": lambda env: (setattr(env, "total_mass", env.masspole + env.masscart),
                                setattr(env, "polemass_length", env.masspole * env.length)),
}


@dataclass
class GymBatch:
    seeds: list[int]  # one environment seed per instance
    scales: dict[str, torch.Tensor]  # randomized parameter -> [B] scale factors
    goal: torch.Tensor | None = None  # [B] per-task goal of a goal-conditioned family

    @property
    def size(self) -> int:
        return len(self.seeds)


@population.tile.register
def _(instances: GymBatch, n: int) -> GymBatch:
    return GymBatch(instances.seeds * n, {k: v.repeat(n) for k, v in instances.scales.items()},
                    None if instances.goal is None else instances.goal.repeat(n))


class TaskReward(gymnasium.Wrapper):
    """Replaces an env's reward by a task's: `reward(goal, info, action)` of the step's
    info (MuJoCo locomotion envs report `x_velocity`) and the clipped action."""

    def __init__(self, env, reward):
        super().__init__(env)
        self.reward, self.goal = reward, 0.0

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, self.reward(self.goal, info, action), terminated, truncated, info


def _make(env_id: str, horizon: int, reward=None):
    try:
        env = gymnasium.make(env_id, max_episode_steps=horizon or None)
    except gymnasium.error.Error as e:
        raise TaskError(f"gym(id = {env_id!r}): {e}") from None
    if isinstance(env.action_space, gymnasium.spaces.Box):
        env = gymnasium.wrappers.ClipAction(env)
    return TaskReward(env, reward) if reward is not None else env


# Physical parameters MuJoCo keeps outside the model's top-level arrays, by the names
# domain randomization gives them (Peng et al. 2018: gravity, friction).
_MUJOCO_ALIASES = {"gravity": ("opt", "gravity"), "friction": ("", "geom_friction")}


def _parameter(env, name: str):
    """(holder, attribute) of a randomizable parameter of an unwrapped env: a number of a
    classic-control env, or an array of a MuJoCo model (`body_mass`, `gravity` in
    `model.opt`, `friction` as `model.geom_friction`, any `model.opt` field)."""
    if isinstance(getattr(env, name, None), (int, float)):
        return env, name
    model = getattr(env, "model", None)  # MuJoCo
    if model is not None:
        part, attr = _MUJOCO_ALIASES.get(name, ("", name))
        for holder in (getattr(model, part) if part else model, getattr(model, "opt", None)):
            if holder is not None and isinstance(getattr(holder, attr, None), np.ndarray):
                return holder, attr
    raise TaskError(f"{type(env).__name__} has no numeric parameter {name!r} to randomize")


class GymEnv:
    """B instances × copies of one env as a gymnasium SyncVectorEnv; tensors in and out."""

    def __init__(self, family: "GymTasks", batch: GymBatch, copies: int = 1):
        self.horizon, self.continuous = family.horizon, family.continuous
        self.obs_dim, self.n_actions = family.obs_dim, family.n_actions
        self.rows = batch.size * copies
        # copy c of task i gets its own seed: parallel episodes of one task differ
        self.seeds = [(seed * 1_000_003 + c) % 2**31 for seed in batch.seeds for c in range(copies)]
        self.vec = family.vector_env(self.rows)
        for row, env in enumerate(self.vec.envs):
            task = row // copies
            inner = env.unwrapped
            for name, scale in batch.scales.items():
                holder, attr = _parameter(inner, name)
                value = family.nominal[name] * scale[task].item()
                if isinstance(value, np.ndarray):
                    getattr(holder, attr)[...] = value  # MuJoCo arrays are written in place
                else:
                    setattr(holder, attr, float(value))
            if type(inner).__name__ in _DERIVED:
                _DERIVED[type(inner).__name__](inner)
            if batch.goal is not None:  # the family's TaskReward is the outermost wrapper
                env.goal = batch.goal[task].item()

    steps_live_rows = True  # rows past their trial need not be stepped (see rollout.collect)
    reports_truncation = True  # a time limit is not a termination (see step)

    def reset(self) -> torch.Tensor:
        obs, _ = self.vec.reset(seed=self.seeds)
        self.obs = torch.as_tensor(obs, dtype=torch.float32).reshape(self.rows, -1)
        return self.obs

    def step(self, action: torch.Tensor, live: torch.Tensor | None = None):
        """One step of every row, or with `live` of its rows that are 1 only (the others
        keep their observation, reward 0): a trial of episodes whose lengths vary would
        otherwise step every finished row until the longest ends. An episode that ends
        restarts in place (the vector env's same-step autoreset). Gives (s_{t+1} as the
        episode ended it, reward, done, terminated — done but not by the time limit —, the
        observation the next step starts from)."""
        rows = range(self.rows) if live is None else live.nonzero().flatten().tolist()
        actions, obs = action.numpy(), self.obs.numpy().copy()
        final = obs.copy()
        reward, done = np.zeros(self.rows, np.float32), np.zeros(self.rows, np.float32)
        ended = np.zeros(self.rows, np.float32)
        for row in rows:
            env = self.vec.envs[row]
            o, reward[row], terminated, truncated, _ = env.step(actions[row])
            final[row] = np.ravel(o)
            if terminated or truncated:
                o, _ = env.reset()
            obs[row], done[row], ended[row] = np.ravel(o), terminated or truncated, terminated
        self.obs = torch.from_numpy(obs)
        return (torch.from_numpy(final), torch.from_numpy(reward), torch.from_numpy(done),
                torch.from_numpy(ended), self.obs)


class GymTasks:
    """`gym(id, horizon, randomize)`: tasks are seeds and parameter scales of one env."""

    reward = None  # a goal-conditioned family's task reward (see TaskReward)

    def __init__(self, id: str, horizon: int = 0, randomize: dict | None = None):
        probe = _make(id, horizon)
        space = probe.action_space
        self.action_bounds = None  # the action box of continuous actions (low, high)
        if isinstance(space, gymnasium.spaces.Discrete):
            self.continuous, self.n_actions = False, int(space.n)
        elif isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 1:
            self.continuous, self.n_actions = True, int(space.shape[0])
            box = probe.unwrapped.action_space  # ClipAction's own space is unbounded
            self.action_bounds = (box.low.tolist(), box.high.tolist())
        else:
            raise TaskError(f"gym(id = {id!r}): action space {space} is neither discrete nor "
                            "a vector of reals")
        self.id = id
        self.horizon = horizon or probe.spec.max_episode_steps or 1000
        self.obs_dim = int(np.prod(probe.observation_space.shape))
        self.randomize = {name: (float(low), float(high))
                          for name, (low, high) in (randomize or {}).items()}
        self.nominal = {}
        for name in self.randomize:
            holder, attr = _parameter(probe.unwrapped, name)
            nominal = getattr(holder, attr)
            self.nominal[name] = np.copy(nominal) if isinstance(nominal, np.ndarray) else nominal
        probe.close()
        self._vectors: dict[int, gymnasium.vector.SyncVectorEnv] = {}

    def vector_env(self, size: int) -> gymnasium.vector.SyncVectorEnv:
        """The vector env of `size` copies, made once and reused (reset reseeds it)."""
        if size not in self._vectors:
            self._vectors[size] = gymnasium.vector.SyncVectorEnv(
                [lambda: _make(self.id, self.horizon, self.reward) for _ in range(size)],
                autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
        return self._vectors[size]

    def unrandomized(self) -> "GymTasks":
        """The same tasks with every randomized parameter at its nominal value (scale 1):
        what a `nominal` baseline trains on."""
        nominal = copy.copy(self)
        nominal.randomize = {name: (1.0, 1.0) for name in self.randomize}
        return nominal

    def sample(self, count: int, steps: int, gen: torch.Generator) -> GymBatch:
        seeds = torch.randint(0, 2**31 - 1, (count,), generator=gen).tolist()
        scales = {name: low + (high - low) * torch.rand(count, generator=gen)
                  for name, (low, high) in self.randomize.items()}
        return GymBatch(seeds, scales)

    def env(self, instances: GymBatch, copies: int = 1) -> GymEnv:
        return GymEnv(self, instances, copies)

    score = staticmethod(rollout.mean_episode_return)


def _control_cost(action) -> float:
    """MAML's locomotion control cost 0.05‖a‖², on the action clipped to [−1, 1]."""
    return 0.05 * float(np.sum(np.square(np.clip(action, -1.0, 1.0))))


class CheetahVelocity(GymTasks):
    """`cheetah_vel(low, high, horizon)` (MAML §5.3): HalfCheetah-v5 rewarded
    −|v − v_goal| − 0.05‖a‖², v the forward velocity, v_goal ~ U[low, high] per task."""

    def __init__(self, low: float = 0.0, high: float = 2.0, horizon: int = 200):
        super().__init__("HalfCheetah-v5", horizon)
        self.low, self.high = low, high

    @staticmethod
    def reward(goal: float, info: dict, action) -> float:
        return -abs(float(info["x_velocity"]) - goal) - _control_cost(action)

    def sample(self, count: int, steps: int, gen: torch.Generator) -> GymBatch:
        batch = super().sample(count, steps, gen)
        batch.goal = self.low + (self.high - self.low) * torch.rand(count, generator=gen)
        return batch


class CheetahDirection(GymTasks):
    """`cheetah_dir(horizon)` (MAML §5.3): HalfCheetah-v5 rewarded d·v − 0.05‖a‖² for a
    direction d = ±1 drawn per task with equal probability."""

    def __init__(self, horizon: int = 200):
        super().__init__("HalfCheetah-v5", horizon)

    @staticmethod
    def reward(goal: float, info: dict, action) -> float:
        return goal * float(info["x_velocity"]) - _control_cost(action)

    def sample(self, count: int, steps: int, gen: torch.Generator) -> GymBatch:
        batch = super().sample(count, steps, gen)
        batch.goal = torch.randint(0, 2, (count,), generator=gen).float() * 2 - 1
        return batch

