"""EPG's pieces: the learned loss network, the recent steps of per-task replay streams,
fresh networks per task, anneal naming its outer loop, and a whole run with its
baselines (ppo_baseline's step size chosen on validation tasks, random_phi)."""

from __future__ import annotations

import json

import pytest
import torch

from metadsl.runtime.errors import TaskError
from metadsl.runtime.learning import adaptation, models
from metadsl.runtime.memory import replay
from metadsl.runtime.tasks import families
from tests.conftest import metadsl


def loss_net(**kwargs):
    return models.LossNet("temporal_conv", ["obs", "action", "reward", "done"], {}, obs_dim=2,
                          n_actions=2, **kwargs)


def trajectories(steps=40, rows=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(steps, rows, 2, generator=g),
            "action": torch.randn(steps, rows, 2, generator=g),
            "reward": torch.randn(steps, rows, generator=g),
            "done": (torch.rand(steps, rows, generator=g) < 0.1).float()}


def test_loss_net_gives_a_loss_per_step_and_its_explicit_parameters_are_its_own():
    torch.manual_seed(0)
    net, batch = loss_net(), trajectories()
    signal = torch.randn(40, 3)
    out = net.apply(None, batch, signal)
    assert out.shape == (40, 3)
    params = {k: v.clone() for k, v in net.named_parameters()}
    assert torch.equal(net.apply(params, batch, signal), out)
    params["out.1.bias"] = params["out.1.bias"] + 1.0  # another φ, another loss
    assert torch.allclose(net.apply(params, batch, signal), out + 1.0)
    with pytest.raises(TypeError, match="takes 1 signal"):
        net.apply(None, batch)


def test_loss_net_reads_its_window_in_time_order():
    """The convolutions see the order: reversing time changes the context, so the loss."""
    torch.manual_seed(1)
    net, batch = loss_net(), trajectories()
    signal = torch.zeros(40, 3)
    forward = net.apply(None, batch, signal).sum(0)
    flipped = net.apply(None, {k: v.flip(0) for k, v in batch.items()}, signal).sum(0)
    assert not torch.allclose(forward, flipped)
    short = {k: v[:3] for k, v in batch.items()}  # fewer steps than the convolutions span
    assert net.apply(None, short, signal[:3]).shape == (3, 3)


def test_gradient_through_the_learned_loss_matches_finite_differences():
    """∂L_φ(log π_θ(a|s))/∂θ by autograd, through the conv and the per-step MLP, against
    central differences."""
    torch.manual_seed(2)
    net = loss_net().double()
    batch = {k: v.double() for k, v in trajectories(steps=24, rows=2).items()}
    theta = torch.randn(2, dtype=torch.float64, requires_grad=True)

    def loss(t):
        logp = -((batch["action"] - t) ** 2).sum(-1)  # a Gaussian's log-density up to a constant
        return net.apply(None, batch, logp).mean()

    (grad,) = torch.autograd.grad(loss(theta), theta)
    eps = 1e-6
    for i in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[i] = eps
        numeric = (loss(theta + step) - loss(theta - step)) / (2 * eps)
        assert grad[i].item() == pytest.approx(numeric.item(), rel=1e-5, abs=1e-9)


def test_an_adapt_step_differentiates_the_policy_through_a_passed_model():
    """adaptation.sgd with a learned loss: the policy's θ′ moves, φ (per task) does not,
    and a different φ moves it differently."""
    torch.manual_seed(3)
    policy = models.FeedForward("mlp", ["obs"], {"pi": "gaussian"}, obs_dim=2, n_actions=2,
                                hidden=[8])
    net = loss_net()
    batch = trajectories(steps=30, rows=4)  # 2 tasks × 2 copies

    def fn(data, heads):
        return heads.model_ref("L_phi")(heads["pi"].log_prob(data["action"])).mean()

    theta = policy.parameters_per_task(2)
    phi = net.parameters_per_task(2)
    adapted, _ = adaptation.sgd(policy, theta, batch, fn, lr=0.5, order=1,
                                models={"L_phi": (net, phi)})
    moved = sum((adapted[k] - theta[k]).abs().sum() for k in theta)
    assert moved > 0
    other = {k: v + 0.1 * torch.randn_like(v) for k, v in phi.items()}
    elsewhere, _ = adaptation.sgd(policy, theta, batch, fn, lr=0.5, order=1,
                                  models={"L_phi": (net, other)})
    assert not torch.allclose(elsewhere["net.0.weight"], adapted["net.0.weight"])


def test_per_task_buffer_keeps_each_task_s_recent_steps_in_order():
    buffer = replay.Buffer(capacity=5, per_task=True)
    for start in (0, 4):  # two rounds of 4 steps, 3 tasks: 8 steps, the last 5 kept
        t = torch.arange(start, start + 4, dtype=torch.float32)
        rows = t[:, None] * 10 + torch.arange(3)[None, :]
        buffer.extend({"obs": rows.unsqueeze(-1), "action": rows, "reward": rows,
                       "done": torch.zeros(4, 3)})
    recent = buffer.recent(5)
    assert recent["reward"].shape == (5, 3)
    assert recent["reward"][:, 1].tolist() == [31.0, 41.0, 51.0, 61.0, 71.0]
    assert buffer.recent(2)["reward"][:, 0].tolist() == [60.0, 70.0]
    sample = buffer.sample(4, torch.Generator().manual_seed(0))
    assert sample["reward"].shape == (1, 12)  # 4 steps of each task, the tasks' rows contiguous
    assert (sample["reward"][0, 4:8] % 10 == 1).all()
    with pytest.raises(TaskError, match="padded"):
        buffer.extend({"obs": torch.zeros(2, 3, 1), "action": torch.zeros(2, 3),
                       "reward": torch.zeros(2, 3), "done": torch.zeros(2, 3),
                       "valid": torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]])})


def test_a_shared_buffer_reads_its_recent_transitions_as_one_stream():
    buffer = replay.Buffer(capacity=4)
    buffer.extend({"obs": torch.zeros(6, 1, 1), "action": torch.zeros(6, 1),
                   "reward": torch.arange(6.0)[:, None], "done": torch.zeros(6, 1)})
    assert buffer.recent(3)["reward"].squeeze(1).tolist() == [3.0, 4.0, 5.0]


def test_fresh_networks_per_task_are_new_draws_fixed_by_their_key():
    torch.manual_seed(0)
    policy = models.FeedForward("mlp", ["obs"], {"pi": "gaussian"}, obs_dim=2, n_actions=2,
                                hidden=[8])
    one = policy.fresh_per_task(3, torch.Generator().manual_seed(5))
    again = policy.fresh_per_task(3, torch.Generator().manual_seed(5))
    other = policy.fresh_per_task(3, torch.Generator().manual_seed(6))
    w = one["net.0.weight"]
    assert w.shape == (3, 8, 2)
    assert torch.equal(w, again["net.0.weight"])
    assert not torch.equal(w, other["net.0.weight"])
    assert not torch.equal(w[0], w[1])  # each task its own draw
    assert not torch.equal(w[0], policy.net[0].weight)  # not θ
    assert (one["heads.log_std.pi"] == 0).all()  # the model's own initialisation
    bound = 1 / 2 ** 0.5  # nn.Linear's: U(−1/√fan_in, 1/√fan_in)
    assert w.abs().max() <= bound


def test_nav2d_goals_on_an_arc():
    family = families.Nav2D(arc=[180, 360], arc_radius=0.5)
    goals = family.sample(200, 10, torch.Generator().manual_seed(0)).goal
    assert torch.allclose(goals.norm(dim=-1), torch.full((200,), 0.5))
    assert (goals[:, 1] <= 1e-6).all()  # the lower half circle
    with pytest.raises(TaskError, match="from, to"):
        families.Nav2D(arc=[90])


def test_anneal_in_an_adapt_loss_must_name_the_outer_loop(tmp_path):
    source = (tmp_path / "e.mrl")
    spec = open("specs/epg_nav2d.mrl", encoding="utf-8").read()
    source.write_text(spec.replace(", loop = evolve)", ")"), encoding="utf-8")
    r = metadsl("compile", str(source), "-o", str(tmp_path / "e.py"))
    assert r.returncode == 3
    assert "names no outer loop running lifetime" in r.stderr
    assert "Traceback" not in r.stderr


def test_reinit_applies_to_adapted_parameters_only(tmp_path):
    source = tmp_path / "e.mrl"
    spec = open("specs/epg_nav2d.mrl", encoding="utf-8").read()
    source.write_text(spec.replace("buffer(capacity = 200) reset per task",
                                   "buffer(capacity = 200) reinit per task"), encoding="utf-8")
    r = metadsl("check", str(source))
    assert r.returncode == 1
    assert "E0301" in r.stderr and "reinit per task" in r.stderr


def test_epg_run_evaluates_its_lifetime_against_ppo_and_random_phi(tmp_path):
    """A tiny EPG run: ES steps φ, and the evaluation trains fresh policies on the held-out
    half circle with the evolved loss, with φ at initialisation and with PPO (its step size
    chosen on validation tasks), on the same tasks and draws."""
    out = tmp_path / "run"
    r = metadsl("run", "specs/epg_nav2d.mrl", "--iterations", "2", "--out", str(out),
                "--set", "evolve.L_phi.population=4", "--set", "lifetime.steps=3",
                "--set", "evaluate.instances=3", "--set", "evolve.meta_batch=2")
    assert r.returncode == 0, r.stderr
    rows = json.loads((out / "eval.json").read_text())["results"]
    methods = {row["method"] for row in rows}
    assert methods == {"epg_nav2d", "ppo_baseline", "random_phi"}
    ppo = [row for row in rows if row["method"] == "ppo_baseline"]
    assert {row["lr"] for row in ppo} <= {0.003, 0.01, 0.03, 0.1} and len({row["lr"] for row in ppo}) == 1
    first = {row["method"]: row["mean"] for row in rows if row["adapt_steps"] == 0}
    # before any update every method acts with the same fresh policies on the same draws
    assert first["random_phi"] == first["epg_nav2d"] == first["ppo_baseline"]
    assert all("nav2d(arc = [180, 360]" in row["tasks"] for row in rows)
