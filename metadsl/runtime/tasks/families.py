"""Task distributions as batched environments: B task instances stepped as tensors.

An environment holds one batch of task instances: `reset()` gives observations [B, obs],
`step(action)` gives (observation, reward, episode_done), all [B]-batched, no Python loop
over tasks. Bandits are one-step episodes; their rewards come from common random numbers
so that learner and baselines see the same draws.
"""

from __future__ import annotations

import math

import torch

from ..errors import TaskError
from ..execution import rollout
from . import bandits, contextual, control, informative, mdps, regression


class BanditEnv:
    """A batch of bandits; each pull is a one-step episode with a constant observation."""

    obs_dim = 1
    horizon = 1

    def __init__(self, batch: bandits.BanditBatch | informative.InformativeBatch):
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

    dependent = False  # arms independent: the Bayes-optimal DP is over per-arm counts

    def __init__(self, arms: int = 5):
        self.arms = arms
        self.n_actions = arms
        self.obs_dim = BanditEnv.obs_dim
        self.horizon = BanditEnv.horizon

    def sample(self, count: int, steps: int, gen: torch.Generator) -> bandits.BanditBatch:
        return bandits.bernoulli_bandits(count, self.arms, steps, gen)

    def env(self, instances: bandits.BanditBatch) -> BanditEnv:
        return BanditEnv(instances)

    score = staticmethod(rollout.trial_return)  # total reward per trial [B]


class DependentBandit(BernoulliBandit):
    """`dependent_bandit(difficulty)`: Wang et al. 2016's two arms with p2 = 1 − p1."""

    def __init__(self, difficulty: str = "uniform"):
        super().__init__(arms=2)
        self.difficulty = difficulty
        self.dependent = difficulty != "independent"  # one coin: p2 = 1 − p1

    def sample(self, count: int, steps: int, gen: torch.Generator) -> bandits.BanditBatch:
        return bandits.dependent_bandits(count, self.difficulty, steps, gen)


class InformativeArmBandit(BernoulliBandit):
    """`informative_arm_bandit(arms)`: Wang et al. 2016's 11-armed task (see informative)."""


    def __init__(self, arms: int = 11):
        super().__init__(arms=arms)

    def sample(self, count: int, steps: int, gen: torch.Generator) -> informative.InformativeBatch:
        return informative.informative_bandits(count, self.arms, steps, gen)


class ContextualBandit:
    """`contextual_bandit(arms, contexts, repeats, context_dim, pulls)` (Ritter et al.
    2018): see runtime/contextual.py."""


    def __init__(self, arms: int = 10, contexts: int = 10, repeats: int = 2,
                 context_dim: int = 16, pulls: int = 10):
        self.arms, self.contexts, self.repeats = arms, contexts, repeats
        self.n_actions, self.obs_dim, self.horizon = arms, context_dim, pulls

    def sample(self, count: int, steps: int, gen: torch.Generator) -> contextual.ContextualBatch:
        return contextual.contextual_bandits(count, self.arms, self.contexts, self.repeats,
                                             self.obs_dim, self.horizon, steps, gen)

    def env(self, instances: contextual.ContextualBatch) -> contextual.ContextualEnv:
        return contextual.ContextualEnv(instances)

    score = staticmethod(rollout.trial_return)  # total reward per trial [B]


class MDPEnv:
    """A batch of tabular MDPs; observations are one-hot states; episodes of fixed length."""

    def __init__(self, batch: mdps.MDPBatch):
        self.batch = batch
        self.obs_dim, self.n_actions, self.horizon = batch.states, batch.actions, batch.horizon
        self.t = 0
        self.state = batch.start(0)

    def _obs(self) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.state, self.obs_dim).float()

    def reset(self) -> torch.Tensor:
        return self._obs()

    def step(self, action: torch.Tensor):
        reward, self.state = self.batch.step(self.t, self.state, action)
        self.t += 1
        done = self.t % self.horizon == 0
        if done:
            self.state = self.batch.start(self.t) if self.t < self.batch.noise.shape[0] \
                else self.state
        return self._obs(), reward, torch.full((self.batch.size,), float(done))


class TabularMDP:
    """`tabular_mdp(states, actions, horizon, reward_mean, reward_std)` (RL² Table 2)."""


    def __init__(self, states: int = 10, actions: int = 5, horizon: int = 10,
                 reward_mean: float = 1.0, reward_std: float = 1.0):
        self.states, self.n_actions, self.horizon = states, actions, horizon
        self.obs_dim = states
        self.reward_mean, self.reward_std = reward_mean, reward_std

    def sample(self, count: int, steps: int, gen: torch.Generator) -> mdps.MDPBatch:
        return mdps.random_mdps(count, self.states, self.n_actions, self.horizon, steps, gen,
                                self.reward_mean, self.reward_std)

    def env(self, instances: mdps.MDPBatch) -> MDPEnv:
        return MDPEnv(instances)

    score = staticmethod(rollout.trial_return)  # total reward per trial [B]


class RandomQuadratic:
    """`random_quadratic(...)` (Hochreiter et al. 2001): sequences of (x, y) pairs."""

    obs_dim = 2  # the input x
    n_actions = 0
    horizon = 1

    def __init__(self, coef_low=-1.0, coef_high=1.0, x_low=-1.0, x_high=1.0):
        self.coef_low, self.coef_high, self.x_low, self.x_high = coef_low, coef_high, x_low, x_high
        self.prior_var = (coef_high - coef_low) ** 2 / 12

    def sample(self, count: int, steps: int, gen: torch.Generator) -> regression.QuadraticBatch:
        return regression.random_quadratics(count, steps, gen, self.coef_low, self.coef_high,
                                            self.x_low, self.x_high)

    def env(self, instances: regression.QuadraticBatch) -> regression.SequenceEnv:
        return regression.SequenceEnv(instances)


class Sine:
    """`sine(amp_low, amp_high, phase_low, phase_high, x_low, x_high)`: y = a·sin(x + b)."""

    obs_dim = 1  # the input x
    n_actions = 0
    horizon = 1

    def __init__(self, amp_low=0.1, amp_high=5.0, phase_low=0.0, phase_high=math.pi,
                 x_low=-5.0, x_high=5.0):
        self.amp, self.phase, self.x = (amp_low, amp_high), (phase_low, phase_high), \
            (x_low, x_high)

    def sample(self, count: int, steps: int, gen: torch.Generator) -> regression.SineBatch:
        (a0, a1), (b0, b1) = self.amp, self.phase
        return regression.SineBatch(a0 + (a1 - a0) * torch.rand(count, generator=gen),
                                    b0 + (b1 - b0) * torch.rand(count, generator=gen))

    def env(self, instances: regression.SineBatch, copies: int = 1) -> regression.SineEnv:
        return regression.SineEnv(instances, copies, *self.x)


def episode_return(batch: dict) -> torch.Tensor:
    """Return of each row's one episode [B] (fixed-length parallel episodes)."""
    return batch["reward"].sum(0)


class Nav2D:
    """`nav2d(goal_low, goal_high, horizon, action_clip, action_scale, arc, arc_radius)`:
    goals U([low, high]²), or, with `arc = [from, to]` (degrees), on the circle of radius
    `arc_radius` at an angle U[from, to] (EPG's half-circle goals)."""

    obs_dim, n_actions = control.NavEnv.obs_dim, control.NavEnv.n_actions
    continuous = True

    def __init__(self, goal_low=-0.5, goal_high=0.5, horizon=100, action_clip=0.1,
                 action_scale=1.0, sparse=False, goal_radius=0.2, arc=(), arc_radius=0.5):
        if sparse:
            raise TaskError("nav2d(sparse = true) is not built yet (MAESN's sparse reward)")
        if len(arc) not in (0, 2):
            raise TaskError(f"nav2d(arc = {list(arc)}): give [from, to] in degrees, or []")
        self.low, self.high, self.horizon = goal_low, goal_high, horizon
        self.action_clip, self.action_scale = action_clip, action_scale
        self.arc, self.arc_radius = tuple(arc), arc_radius
        # the actions that move the point at all: beyond them the clip holds it
        reach = action_clip / action_scale
        self.action_bounds = ([-reach] * self.n_actions, [reach] * self.n_actions)

    def sample(self, count: int, steps: int, gen: torch.Generator) -> control.NavBatch:
        if self.arc:
            start, end = (math.radians(a) for a in self.arc)
            angle = start + (end - start) * torch.rand(count, generator=gen)
            return control.NavBatch(self.arc_radius *
                                    torch.stack([angle.cos(), angle.sin()], -1))
        return control.NavBatch(self.low + (self.high - self.low) *
                                torch.rand(count, 2, generator=gen))

    def env(self, instances: control.NavBatch, copies: int = 1) -> control.NavEnv:
        return control.NavEnv(instances, copies, self.horizon, self.action_clip,
                              self.action_scale)

    score = staticmethod(episode_return)


class Chain:
    """`chain(length, horizon, near_reward, far_reward, slip)` (see control.ChainEnv)."""

    n_actions = 2

    def __init__(self, length=30, horizon=60, near_reward=0.1, far_reward=10.0, slip=0.1):
        self.length, self.horizon, self.obs_dim = length, horizon, length
        self.rewards, self.slip = (near_reward, far_reward), slip

    def sample(self, count: int, steps: int, gen: torch.Generator) -> control.ChainBatch:
        return control.ChainBatch(torch.randint(0, 2**31 - 1, (count,), generator=gen))

    def env(self, instances: control.ChainBatch, copies: int = 1) -> control.ChainEnv:
        return control.ChainEnv(instances, copies, self.length, self.horizon, *self.rewards,
                                self.slip)

    score = staticmethod(episode_return)
