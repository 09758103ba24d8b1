"""A generation's members on Ray: the same numbers as one after another in the driver,
with 1 or 2 workers and after a worker is killed; clear errors for what cannot run."""

from __future__ import annotations

import functools
import json
import os
import signal
import types

import pytest
import torch

from metadsl.runtime.errors import SettingError
from metadsl.runtime.execution import population, population_ray
from metadsl.runtime.learning import es
from tests.conftest import ROOT, metadsl
from tests.test_backend import metrics

# one local Ray instance at a time, whichever pytest worker runs these
pytestmark = pytest.mark.xdist_group("ray")

SMALL = ["--iterations", "5", "--threads", "1", "--set", "evolve.pi.population=6",
         "--set", "evaluate.instances=3"]


def _on_ray(tmp_path, workers: int):
    spec = tmp_path / f"es_ray_{workers}.mrl"
    spec.write_text((ROOT / "specs/es_cartpole.mrl").read_text() +
                    f"\nschedule {{\n    backend = ray\n    workers = {workers}\n}}\n")
    return spec


def test_ray_with_one_or_two_workers_equals_the_sequential_run_bitwise(tmp_path):
    r = metadsl("run", "specs/es_cartpole.mrl", *SMALL, "--out", str(tmp_path / "seq"))
    assert r.returncode == 0, r.stderr[-2000:]
    for workers in (1, 2):
        out = tmp_path / f"ray{workers}"
        r = metadsl("run", str(_on_ray(tmp_path, workers)), *SMALL, "--out", str(out))
        assert r.returncode == 0, r.stderr[-2000:]
        assert metrics(out) == metrics(tmp_path / "seq")  # every generation's fitnesses
        seq, ray = (json.loads((d / "eval.json").read_text())["results"]
                    for d in (tmp_path / "seq", out))
        assert ray == seq  # the final θ's held-out returns
        recorded = json.loads((out / "ray.json").read_text())
        assert recorded["address"] == "local" and recorded["resources"]["CPU"] == workers


class _Run(types.SimpleNamespace):
    pass


def _member_dies_once(marker: str, seeds: list, state, instances, params):
    """A member whose first attempt loses its worker (SIGKILL) mid-generation."""
    if seeds.index(state.gen.gens[0].initial_seed()) == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return {"fitness": -((params["x"]["w"][0] - 1.0) ** 2).sum()}, 1


class _State:
    def __init__(self, gen=None):
        self.gen = gen

    def replace(self, gen):
        return _State(gen)


def test_a_killed_worker_s_member_is_retried_and_the_update_is_unchanged(tmp_path):
    path = (0, "evolve", 0, "member")
    seeds = [population.keys.key(*path, i).initial_seed() for i in range(6)]
    p = torch.nn.Parameter(torch.zeros(4))
    opt = es.EvolutionStrategy([p], population=6, sigma=0.1, lr=0.1)
    holder = torch.nn.Module()
    holder.w = p
    generation = opt.generation("x", holder, 0.0, (0, "evolve", 0, "eps", "x"))
    body = functools.partial(_member_dies_once, str(tmp_path / "killed"), seeds)
    run = _Run(folder=tmp_path, workers=2, address="")
    try:
        on_ray, _ = population_ray.members(body, generation, _State(), None, 1, path, run)
    finally:
        import ray
        ray.shutdown()
        population_ray._remote = None
    assert (tmp_path / "killed").exists()  # a worker did die
    # the marker stays: the local run must not kill the test process
    local, _ = population.sequential(body, generation, _State(), None, 1, path)
    assert torch.equal(on_ray["fitness"], local["fitness"])


def test_an_address_that_does_not_answer_is_an_error_not_a_hang(tmp_path):
    spec = tmp_path / "nowhere.mrl"
    spec.write_text((ROOT / "specs/es_cartpole.mrl").read_text() +
                    '\nschedule {\n    backend = ray\n    address = "127.0.0.1:1"\n}\n')
    r = metadsl("run", str(spec), *SMALL, "--out", str(tmp_path / "run"), timeout=60)
    assert r.returncode == 2 and "no Ray cluster answers at '127.0.0.1:1'" in r.stderr
    assert "Traceback" not in r.stderr


def test_without_ray_installed_the_message_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    monkeypatch.setattr(population_ray, "_remote", None)
    with pytest.raises(SettingError, match=r"pip install 'metadsl\[ray\]'"):
        population_ray.members(None, None, None, None, 1, (),
                               _Run(folder=tmp_path, workers=1, address=""))
