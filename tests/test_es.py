"""Evolution strategies: shaping, mirroring and the NES estimate against hand computations,
the reference codes' Adam step, noise regenerated from keys, and whole runs that resume."""

from __future__ import annotations

import json
import math
import pickle

import pytest
import torch

from metadsl.runtime.errors import NonFiniteLoss
from metadsl.runtime.learning import es
from tests.conftest import ROOT, metadsl
from tests.test_backend import metrics


def test_centered_ranks_by_hand():
    # ranks 2, 0, 1, 3 of 4, over 3, minus a half
    shaped = es.centered_ranks(torch.tensor([3.0, 1.0, 2.0, 5.0]))
    assert shaped.tolist() == pytest.approx([1 / 6, -0.5, -1 / 6, 0.5])


def test_mirrored_members_are_pairs_around_theta():
    theta = torch.tensor([1.0, -2.0, 0.5])
    members = es.Generation("pi", theta, [("w", torch.Size([3]))], 0.1, 6, True, (0, "outer", 4, "eps", "pi"))
    assert es.signs(6, True).tolist() == [1, -1, 1, -1, 1, -1]
    assert [es.noise_index(i, True) for i in range(6)] == [0, 0, 1, 1, 2, 2]
    for pair in range(3):
        plus, minus = members.member_vector(2 * pair), members.member_vector(2 * pair + 1)
        assert torch.allclose((plus + minus) / 2, theta)
        assert torch.allclose((plus - minus) / 0.2, members.noise(pair))
    assert len({tuple(members.noise(j).tolist()) for j in range(3)}) == 3
    plain = es.Generation("pi", theta, [("w", torch.Size([3]))], 0.1, 6, False, members.path)
    assert es.signs(6, False).tolist() == [1] * 6
    assert torch.equal(plain.noise_matrix()[5], plain.noise(5))


def test_noise_regenerated_from_a_shipped_generation_equals_the_driver_s():
    theta = torch.randn(50, generator=torch.Generator().manual_seed(0))
    driver = es.Generation("L_phi", theta, [("w", torch.Size([5, 10]))], 0.01, 8, True,
                           (3, "evolve", 7, "eps", "L_phi"))
    worker = pickle.loads(pickle.dumps(driver))  # what a Ray task receives
    matrix = driver.noise_matrix()
    for i in range(8):
        assert torch.equal(worker.member_vector(i), theta + 0.01 * es.signs(8, True)[i] * matrix[i])
        assert torch.equal(worker.member(i, rows=3)["L_phi"]["w"][2],
                           worker.member_vector(i).reshape(5, 10))


def test_nes_estimate_on_a_quadratic_is_sigma_times_the_gradient():
    """F(θ) = −‖θ − c‖²: mirrored pairs give F(θ + σε) − F(θ − σε) = 2σ ∇F·ε exactly, so
    ĝ = (2σ / n) Σ_pairs ε εᵀ ∇F → σ ∇F (the reference codes' estimate has no 1/σ)."""
    c, theta, sigma, n = torch.tensor([1.0, -2.0, 3.0]), torch.zeros(3), 0.05, 40_000
    members = es.Generation("x", theta, [("x", torch.Size([3]))], sigma, n, True, (1, "o", 0, "eps", "x"))
    noise = members.noise_matrix()
    points = theta + sigma * es.signs(n, True)[:, None] * noise
    fitness = -((points - c) ** 2).sum(dim=1)
    estimate = es.nes_estimate(fitness, noise, es.signs(n, True))
    analytic = sigma * 2 * (c - theta)
    assert torch.nn.functional.cosine_similarity(estimate, analytic, dim=0) > 0.999
    assert estimate.norm() / analytic.norm() == pytest.approx(1.0, abs=0.03)


def test_the_adam_step_is_the_reference_codes():
    """θ += a·m/(√v + ε), a = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ), on ĝ − l2·θ; β₁ = 0 as EPG."""
    p = torch.nn.Parameter(torch.tensor([0.5, -1.0]))
    opt = es.EvolutionStrategy([p], lr=0.1, beta1=0.0, l2=0.01)
    theta, v = [0.5, -1.0], [0.0, 0.0]
    for t, g in enumerate([[0.2, -0.4], [0.1, 0.3]], start=1):
        g = [gi - 0.01 * th for gi, th in zip(g, theta)]
        v = [0.999 * vi + 0.001 * gi * gi for vi, gi in zip(v, g)]
        a = 0.1 * math.sqrt(1 - 0.999 ** t)
        theta = [th + a * gi / (math.sqrt(vi) + 1e-8) for th, gi, vi in zip(theta, g, v)]
        opt.ascend(torch.tensor(g) + 0.01 * p.detach())  # ascend subtracts l2·θ itself
        assert p.tolist() == pytest.approx(theta, rel=1e-5)
    assert opt.generations == 2


def _population_on_quadratic(opt, p, c, generations, seed=0):
    for it in range(generations):
        members = opt.generation("x", _Holder(p), progress=it / generations,
                                 path=(seed, "o", it, "eps", "x"))
        fitness = torch.stack([-((members.member_vector(i) - c) ** 2).sum()
                               for i in range(members.population)])
        opt.update(members, fitness)


class _Holder(torch.nn.Module):
    def __init__(self, p):
        super().__init__()
        self.x = p


def test_es_climbs_a_quadratic_and_a_resumed_optimizer_continues_bitwise():
    c = torch.tensor([1.0, -2.0, 3.0, 0.5])
    whole = torch.nn.Parameter(torch.zeros(4))
    opt = es.EvolutionStrategy([whole], population=16, sigma=0.1, lr=0.1, lr_decay=0.99,
                               sigma_decay=0.99)
    _population_on_quadratic(opt, whole, c, 60)
    assert (whole.detach() - c).norm() < 0.25 * c.norm()

    part = torch.nn.Parameter(torch.zeros(4))
    first = es.EvolutionStrategy([part], population=16, sigma=0.1, lr=0.1, lr_decay=0.99,
                                 sigma_decay=0.99)
    _population_on_quadratic(first, part, c, 30)
    saved = {"theta": part.detach().clone(), "opt": first.state_dict()}
    again = torch.nn.Parameter(saved["theta"].clone())
    second = es.EvolutionStrategy([again], population=16, sigma=0.1, lr=0.1, lr_decay=0.99,
                                  sigma_decay=0.99)
    second.load_state_dict(saved["opt"])
    for it in range(30, 60):
        members = second.generation("x", _Holder(again), progress=it / 60,
                                    path=(0, "o", it, "eps", "x"))
        fitness = torch.stack([-((members.member_vector(i) - c) ** 2).sum()
                               for i in range(16)])
        second.update(members, fitness)
    assert torch.equal(again.detach(), whole.detach())


def test_a_non_finite_fitness_stops_the_run():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = es.EvolutionStrategy([p], population=4)
    members = opt.generation("x", _Holder(p), 0.0, (0, "o", 0, "eps", "x"))
    with pytest.raises(NonFiniteLoss):
        opt.update(members, torch.tensor([1.0, float("nan"), 0.0, 2.0]))


SMALL_ES = ["--set", "evolve.pi.population=6", "--set", "evaluate.instances=2"]


def test_an_es_run_learns_and_a_resumed_one_ends_where_an_uninterrupted_one_does(tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    r = metadsl("run", "specs/es_cartpole.mrl", "--iterations", "4", *SMALL_ES, "--out", str(whole))
    assert r.returncode == 0, r.stderr[-2000:]
    rows = metrics(whole)
    assert [row["iteration"] for row in rows] == ["0", "1", "2", "3"]
    assert all(float(row["charts/fitness_max"]) >= float(row["charts/fitness_mean"]) for row in rows)
    assert metadsl("run", "specs/es_cartpole.mrl", "--iterations", "2", *SMALL_ES,
                   "--out", str(part)).returncode == 0
    r = metadsl("run", "specs/es_cartpole.mrl", "--iterations", "4", "--resume", str(part))
    assert r.returncode == 0 and "resumed" in r.stderr, r.stderr[-2000:]
    assert metrics(part) == metrics(whole)
    assert json.loads((part / "eval.json").read_text()) == \
        json.loads((whole / "eval.json").read_text())


@pytest.mark.parametrize("spec, small", [
    ("es_cartpole", ["--set", "evolve.pi.population=6"]),
    ("epg_nav2d", ["--set", "evolve.L_phi.population=4", "--set", "lifetime.steps=3",
                   "--set", "lifetime.tau.count=10", "--set", "evolve.meta_batch=2"]),
])
def test_batched_members_give_the_sequential_run_s_fitnesses_and_ranks(tmp_path, spec, small):
    """Members stacked as rows of one call, each drawing its rows from its own key: the
    same fitnesses as one member after another (to rounding), so the same ranks and ES
    steps, after 5 generations."""
    source = (ROOT / "specs" / f"{spec}.mrl").read_text().split("\nschedule {")[0]
    runs = {}
    for execution in ("sequential", "batched"):
        path = tmp_path / f"{execution}.mrl"
        path.write_text(source + f"\nschedule {{\n    execution = {execution}\n}}\n")
        out = tmp_path / execution
        r = metadsl("run", str(path), "--iterations", "5", "--threads", "1", "--out", str(out),
                    "--set", "evaluate.instances=2", *small)
        assert r.returncode == 0, r.stderr[-2000:]
        runs[execution] = metrics(out)
    for seq, bat in zip(runs["sequential"], runs["batched"]):
        for key in ("charts/fitness_mean", "charts/fitness_max", "charts/grad_norm"):
            assert float(bat[key]) == pytest.approx(float(seq[key]), rel=1e-4, abs=1e-5)
