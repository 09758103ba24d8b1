"""SAC's pieces: the tanh-squashed Gaussian policy and critics that are networks of their
own on (state, action)."""

from __future__ import annotations

import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import AffineTransform, TanhTransform

from metadsl.runtime.learning import models

BOUNDS = ([-2.0, -0.5], [2.0, 1.5])


def _policy(heads):
    torch.manual_seed(0)
    return models.FeedForward(core="mlp", inputs=["obs"], heads=heads, obs_dim=3, n_actions=2,
                              hidden=[16, 16], activation="relu", action_bounds=BOUNDS)


def test_tanh_gaussian_log_prob_is_the_change_of_variables_of_torch_s_transform():
    pi = _policy({"pi": "tanh_gaussian"}).apply(None, {"obs": torch.randn(64, 3)})["pi"]
    low, high = (torch.tensor(b) for b in BOUNDS)
    reference = TransformedDistribution(
        Normal(pi.mean, pi.log_std.exp()),
        [TanhTransform(), AffineTransform((high + low) / 2, (high - low) / 2)])
    action = pi.sample(torch.Generator().manual_seed(1))
    assert ((action > low) & (action < high)).all()
    want = reference.log_prob(action).sum(-1)
    assert torch.allclose(pi.log_prob(action), want, atol=1e-3)  # its own draws: exact u
    away = action.detach().clone()  # another tensor: mapped back by atanh
    assert torch.allclose(pi.log_prob(away), want, atol=1e-2)


def test_tanh_gaussian_log_std_is_state_dependent_and_bounded():
    pi = _policy({"pi": "tanh_gaussian"}).apply(None, {"obs": 50 * torch.randn(256, 3)})["pi"]
    assert pi.log_std.std() > 0
    assert (pi.log_std >= models.Heads.LOG_STD_MIN).all()
    assert (pi.log_std <= models.Heads.LOG_STD_MAX).all()


def test_rsample_carries_the_gradient_to_the_policy_and_its_log_prob_is_exact():
    model = _policy({"pi": "tanh_gaussian"})
    pi = model.apply(None, {"obs": torch.randn(8, 3)})["pi"]
    action = pi.rsample()
    (action.sum() + pi.log_prob(action).sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.net.parameters())


def test_a_q_value_head_is_its_own_network_nonlinear_in_the_action():
    model = _policy({"pi": "tanh_gaussian", "q": "q_value"})
    obs = torch.randn(5, 3)
    # its own layers, as deep as the net, sharing no weight with the trunk
    assert len(model.heads.critics["q"]) == len(model.net) == 2
    q = lambda a: model.apply(None, {"obs": obs, "action": a})["q"]
    a, b = torch.zeros(5, 2), torch.ones(5, 2)
    assert not torch.allclose(q((a + b) / 2), (q(a) + q(b)) / 2, atol=1e-6)  # not linear
    q(a).sum().backward()
    assert all(p.grad is None for p in model.net.parameters())
    assert all(p.grad is not None for p in model.heads.critics.parameters())


def test_pendulum_s_action_box_is_read_from_the_env_not_from_clip_action():
    from metadsl.runtime.tasks import gym_tasks
    assert gym_tasks.GymTasks("Pendulum-v1").action_bounds == ([-2.0], [2.0])
    assert gym_tasks.GymTasks("CartPole-v1").action_bounds is None
