"""The back end: generated code (golden, deterministic), runs that learn, the run folder."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from metadsl.driver import NotBuilt, compile_module
from metadsl.runtime.learning import models, rules
from metadsl.runtime.runs import session as runs

from .conftest import ROOT, golden, metadsl

BUILT = ["hochreiter2001", "rl2_bandits", "rl2_cartpole", "rl2_tabular_mdp",
         "wang2016_dependent_bandits", "wang2016_informative_arm", "maml_nav2d", "fomaml_nav2d",
         "reptile_nav2d", "maml_cheetah_vel", "maml_cheetah_dir", "maml_sine", "metasgd_sine",
         "reptile_sine", "metagrad", "mfec", "nec", "dqn_cartpole", "episodic_lstm"]
# Small enough to train in seconds, large enough to beat random clearly (see test below).
QUICK = ["--set", "agent.hidden=64", "--set", "meta.meta_batch=128", "--set",
         "meta.agent.lr=1e-3", "--set", "evaluate.instances=2000"]


def compiled(spec: str) -> str:
    return compile_module(f"specs/{spec}.mrl", (ROOT / "specs" / f"{spec}.mrl").read_bytes())


def missing(spec_path: str, data: bytes | None = None) -> list[tuple[str, int]]:
    """What the back end names as not built, with each construct's line."""
    with pytest.raises(NotBuilt) as info:
        compile_module(spec_path, data)
    return [(what, loc.line) for what, loc in info.value.missing]


@pytest.mark.parametrize("spec", BUILT)
def test_generated_code_is_golden_and_deterministic(spec):
    first = compiled(spec)
    assert compiled(spec) == first
    compile(first, f"{spec}.py", "exec")
    golden(ROOT / "tests" / "golden" / f"{spec}.py", first)


def test_unbuilt_constructs_are_named_where_they_are_written():
    poet = missing(str(ROOT / "specs" / "poet.mrl"))
    assert ("tasks bipedal_terrain", 11) in poet
    assert ("head act: deterministic", 13) in poet
    assert missing(str(ROOT / "specs" / "maesn.mrl")) == [
        ("`sparse = true` of nav2d (only sparse = false is built)", 13),
        ("meta-parameter vector", 15), ("meta-parameter vector", 16),
        ("memory z = latent(...)", 18),
        ("`adapt` of anything but one model's parameters (per-task meta-parameters, latents)",
         28),
        ("`through adapt`, an inner loop that adapts nothing", 36)]




def metrics(folder):
    """A run's metrics, without what depends on the wall clock."""
    with open(folder / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in ("wall_s", "charts/steps_per_second")}
                for row in csv.DictReader(f)]


def test_rl2_learns_beyond_random(tmp_path):
    out = tmp_path / "run"
    r = metadsl("run", "specs/rl2_bandits.mrl", "--iterations", "100", *QUICK, "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((out / "eval.json").read_text())
    assert result["spec"] == "rl2_bandits" and result["seed"] == 1
    by_method = {row["method"]: row for row in result["results"]}
    assert set(by_method) == {"rl2_bandits", "bayes_optimal", "gittins", "ucb1", "thompson",
                              "greedy", "epsilon_greedy", "random"}
    for row in result["results"]:
        assert {"method", "metric", "mean", "stderr", "episodes"} <= set(row)
    assert by_method["bayes_optimal"]["mean"] == pytest.approx(6.66, abs=0.15)
    # paired: random's difference to the learner on the same bandits and draws
    gap = -by_method["random"]["diff_to_learner"]["mean"]
    assert gap > 0.25 and gap > 4 * by_method["random"]["diff_to_learner"]["stderr"]
    assert (out / "checkpoint.pt").is_file() and (out / "train.py").is_file()
    assert (out / "spec.mrl").read_text() == (ROOT / "specs" / "rl2_bandits.mrl").read_text()
    assert json.loads((out / "args.json").read_text())["meta__iterations"] == 100
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    plotted = metadsl("plot", str(out))
    assert plotted.returncode == 0, plotted.stderr
    for name in ("learning_curves.png", "evaluation.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_python_train_py_and_metadsl_run_are_the_same_run(tmp_path):
    script = tmp_path / "train.py"
    assert metadsl("compile", "specs/rl2_bandits.mrl", "-o", str(script)).returncode == 0
    options = ["--iterations", "3", "--set", "agent.hidden=32", "--set", "meta.meta_batch=16",
               "--set", "evaluate.instances=50"]
    a = subprocess.run([sys.executable, str(script), *options, "--out", str(tmp_path / "a")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert a.returncode == 0, a.stderr[-2000:]
    b = metadsl("run", "specs/rl2_bandits.mrl", *options, "--out", str(tmp_path / "b"))
    assert b.returncode == 0, b.stderr[-2000:]
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert json.loads((tmp_path / "a" / "eval.json").read_text()) == \
        json.loads((tmp_path / "b" / "eval.json").read_text())


def test_resume_continues_from_the_checkpoint(tmp_path):
    small = ["--set", "agent.hidden=16", "--set", "meta.meta_batch=8", "--set",
             "evaluate.instances=20"]
    out = tmp_path / "run"
    assert metadsl("run", "specs/rl2_bandits.mrl", "--iterations", "2", *small,
                   "--out", str(out)).returncode == 0
    r = metadsl("run", "specs/rl2_bandits.mrl", "--iterations", "4", "--resume", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed" in r.stderr
    assert [row["iteration"] for row in metrics(out)] == ["0", "1", "2", "3"]


@pytest.mark.parametrize("override, message", [
    ("meta.agnt.lr=1", "did you mean 'meta.agent.lr'?"),
    ("meta.agent.lr=fast", "expected a float"),
    ("no_equals_sign", "expected PATH=VALUE"),
    ("bandits.arms=1", "out of bounds [2, inf)"),
    ("meta.agent.lr=0", "out of bounds (0, inf)"),
])
def test_bad_overrides_are_errors(override, message):
    r = metadsl("run", "specs/rl2_bandits.mrl", "--set", override)
    assert r.returncode == 2  # a usage error
    assert message in r.stderr and "Traceback" not in r.stderr


@dataclasses.dataclass
class _PrimedArgs:
    meta__tau_prime__count: int = 20


@pytest.mark.parametrize("path", ["meta.tau'.count", "meta.tau_prime.count"])
def test_a_primed_name_is_set_by_its_spec_spelling_and_held_to_its_bounds(path, capsys):
    settings = {"meta.tau'.count": runs.Setting("meta__tau_prime__count", runs.Bounds(low=1))}
    args, _ = runs.parse(_PrimedArgs, settings, ["--set", f"{path}=5"])
    assert args.meta__tau_prime__count == 5
    with pytest.raises(runs.UsageError) as e:
        runs.parse(_PrimedArgs, settings, ["--set", f"{path}=0"])
    assert e.value.code == 2 and "meta.tau'.count=0: out of bounds" in capsys.readouterr().err


def test_non_finite_loss_stops_the_run(tmp_path, capsys):
    model = models.Recurrent("gru", ["obs"], {"pi": "categorical"}, 1, 2, hidden=4)
    opt = rules.Adam(model.parameters(), lr=1e-3)
    batch = {"obs": torch.ones(3, 2, 1), "reward": torch.zeros(3, 2), "done": torch.zeros(3, 2)}
    options = type("Options", (), {"out": tmp_path, "resume": None})()
    with pytest.raises(SystemExit) as info:
        with runs.Run("demo", "0" * 16, _Args(), options) as run:
            run.iteration = 5
            rules.minimize(opt, model, batch, lambda b, h: torch.tensor(float("nan")))
    assert info.value.code == 1
    assert "the loss is nan at iteration 5" in capsys.readouterr().err


@dataclasses.dataclass
class _Args:
    seed: int = 0


def test_hochreiter_learner_learns_within_a_sequence(tmp_path):
    out = tmp_path / "run"
    r = metadsl("run", "specs/hochreiter2001.mrl", "--iterations", "150", "--set",
                "evaluate.instances=1000", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {(row["method"], row["metric"]): row["mean"]
            for row in json.loads((out / "eval.json").read_text())["results"]}
    # the Bayes-optimal reference: ≈ 0.73 before any example, 0 from the 7th on (ANCHORS.md)
    assert rows[("oracle", "mse_after_0_examples")] == pytest.approx(0.73, abs=0.06)
    assert rows[("oracle", "mse_after_10_examples")] < 1e-4
    learner_first = rows[("hochreiter2001", "mse_after_0_examples")]
    learner_late = rows[("hochreiter2001", "mse_after_35_examples")]
    assert learner_late < 0.75 * learner_first  # it learns from the examples it has read


def test_informative_arm_learner_beats_random(tmp_path):
    out = tmp_path / "run"
    r = metadsl("run", "specs/wang2016_informative_arm.mrl", "--iterations", "300", "--set",
                "evaluate.instances=2000", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    by_method = {row["method"]: row for row in json.loads((out / "eval.json").read_text())["results"]}
    assert by_method["bayes_optimal"]["mean"] == pytest.approx(20.55, abs=0.05)
    gap = -by_method["random"]["diff_to_learner"]["mean"]
    assert gap > 0.25 and gap > 4 * by_method["random"]["diff_to_learner"]["stderr"]


def test_baselines_a_family_lacks_are_named(tmp_path):
    spec = (ROOT / "specs" / "wang2016_informative_arm.mrl").read_text().replace(
        "against = [bayes_optimal, oracle, random]", "against = [gittins, random]")
    path = tmp_path / "informative_gittins.mrl"
    path.write_text(spec)
    assert missing(str(path)) == [("baseline gittins on informative_arm_bandit tasks", 41)]
