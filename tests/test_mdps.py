"""Random tabular MDPs and their baselines against RL² Table 2 and computed values."""

from __future__ import annotations

import pytest
import torch

from metadsl.runtime.tasks import mdps, families as tasks


@pytest.fixture(scope="module")
def batch():
    return mdps.random_mdps(800, 10, 5, 10, 100, torch.Generator().manual_seed(0))


def test_random_and_oracle_match_table2_and_the_known_mdp_optimum(batch):
    torch.manual_seed(0)
    random = mdps.play(batch, "random", torch.Generator().manual_seed(1), 100).mean().item()
    oracle = mdps.play(batch, "oracle", torch.Generator().manual_seed(1), 100).mean().item()
    assert random == pytest.approx(100.1, abs=3)  # Table 2, n = 10 episodes
    assert oracle == pytest.approx(218, abs=3)  # ≈ 21.8 per episode, computed


def test_psrl_learns_within_the_trial(batch):
    torch.manual_seed(0)
    psrl = mdps.play(batch, "psrl", torch.Generator().manual_seed(1), 100).mean().item()
    assert 120 < psrl < 150  # Table 2: 138.1 (ours is about 132; see the README)


def test_environment_steps_agree_with_the_baselines_draws(batch):
    """The env a learner acts in and `play` use the same common random numbers."""
    family = tasks.TabularMDP()
    env = family.env(batch)
    env.reset()
    Q = mdps.plan(batch.mu, batch.P, batch.horizon)
    b = torch.arange(batch.size)
    total = torch.zeros(batch.size)
    for t in range(100):
        action = Q[batch.horizon - t % batch.horizon][b, env.state].argmax(-1)
        _, reward, _ = env.step(action)
        total += reward
    assert torch.allclose(total, mdps.play(batch, "oracle", torch.Generator(), 100))
