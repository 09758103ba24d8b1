"""The runtime's bandits and baselines against RL² Table 1 and exact reference values."""

from __future__ import annotations

import pytest
import torch

from metadsl.runtime.execution import keys
from metadsl.runtime.tasks import bandits as B


@pytest.mark.parametrize("arms, pulls, exact", [(5, 10, 6.660), (10, 10, 6.714)])
def test_bayes_optimal_value_is_exact(arms, pulls, exact):
    assert B.BayesOptimal(arms, pulls).expected_total() == pytest.approx(exact, abs=5e-4)


def test_bayes_optimal_policy_achieves_its_value():
    gen = torch.Generator().manual_seed(0)
    batch = B.bernoulli_bandits(1500, 5, 10, gen)
    played = B.play(batch, B.BayesOptimal(5, 10), gen)
    assert played.mean().item() == pytest.approx(6.660, abs=4 * played.std().item() / 1500**0.5)


def test_common_random_numbers_make_methods_paired():
    gen = torch.Generator().manual_seed(1)
    batch = B.bernoulli_bandits(64, 3, 20, gen)
    always_first = lambda s, f, t, n, g: torch.zeros(s.shape[0], dtype=torch.long)  # noqa: E731
    a = B.play(batch, always_first, gen)
    b = B.play(batch, always_first, torch.Generator().manual_seed(99))
    assert torch.equal(a, b)


# RL² Table 1 (Duan et al. 2016), n = 100 pulls: our baselines within ±1.5.
TABLE1 = {5: {"random": 49.9, "greedy": 74.8, "thompson": 74.7, "ucb1": 78.0, "gittins": 78.3},
          10: {"random": 49.9, "greedy": 77.1, "thompson": 76.7, "ucb1": 82.4, "gittins": 82.8}}


@pytest.mark.parametrize("arms", [5, 10])
def test_baselines_reproduce_table1_at_n100(arms):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(7)
    batch = B.bernoulli_bandits(3000, arms, 100, gen)
    c = B.tune_ucb1(arms, 100, lambda *path: keys.key(1234, *path), instances=500)
    policies = {"random": B.random_policy, "greedy": B.greedy, "thompson": B.thompson,
                "ucb1": B.ucb1(c), "gittins": B.Gittins(100)}
    for name, policy in policies.items():
        mean = B.play(batch, policy, torch.Generator().manual_seed(3)).mean().item()
        assert mean == pytest.approx(TABLE1[arms][name], abs=1.5), (name, mean)


def test_dependent_bandits_pairs():
    gen = torch.Generator().manual_seed(0)
    easy = B.dependent_bandits(100, "easy", 5, gen)
    assert torch.allclose(easy.p.sum(dim=1), torch.ones(100))
    assert torch.isclose(easy.p[:, 0], torch.tensor(0.1)).logical_or(
        torch.isclose(easy.p[:, 0], torch.tensor(0.9))).all()


# Wang et al. 2016, exact Bayes-optimal regret at T = 100 on dependent arms (ANCHORS.md).
@pytest.mark.parametrize("difficulty, regret", [("easy", 0.625), ("medium", 1.00),
                                                ("hard", 2.31), ("uniform", 1.22)])
def test_dependent_bayes_optimal_regret(difficulty, regret):
    assert B.DependentBayesOptimal(difficulty, 100).expected_regret() == \
        pytest.approx(regret, abs=0.005)


def test_dependent_bayes_optimal_policy_achieves_its_regret():
    gen = torch.Generator().manual_seed(2)
    batch = B.dependent_bandits(400, "hard", 100, gen)
    policy = B.DependentBayesOptimal("hard", 100)
    regret = batch.best_mean() * 100 - B.play(batch, policy, gen)
    assert regret.mean().item() == pytest.approx(2.31, abs=4 * regret.std().item() / 20)


def test_gittins_index_matches_bayes_optimal_closely_at_small_n():
    gen = torch.Generator().manual_seed(4)
    batch = B.bernoulli_bandits(4000, 5, 10, gen)
    assert B.play(batch, B.Gittins(10), gen).mean().item() == pytest.approx(6.66, abs=0.08)
