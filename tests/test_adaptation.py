"""Gradient-based adaptation: the meta-gradients are right, and the learners learn.

Second-order meta-gradients are checked against central finite differences in float64;
first order is checked to equal second order with the inner Hessian term removed (the
inner gradient treated as a constant). The end-to-end runs are short, and assert the
adapted learner beats its own initialisation by a margin, not just that code runs."""

from __future__ import annotations

import json

import pytest
import torch

from metadsl.runtime.learning import adaptation, metaparams, models, ops

torch.set_default_dtype(torch.float32)


def _regressor(seed=0):
    torch.manual_seed(seed)
    model = models.FeedForward("mlp", inputs=["x"], heads={"pred": "regression"},
                               obs_dim=1, n_actions=0, hidden=[8, 8]).double()
    return model


def _data(tasks=3, points=5, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(1, tasks * points, 1, generator=gen, dtype=torch.float64) * 4 - 2
    a = torch.rand(tasks, generator=gen, dtype=torch.float64).repeat_interleave(points) + 0.5
    return {"x": x, "y": a * torch.sin(x[..., 0]), "done": torch.ones(1, tasks * points,
                                                                      dtype=torch.float64)}


def _mse(batch, heads):
    return ops.mean(batch, (heads["pred"] - batch["y"]) ** 2)


def _meta_loss(model, train, test, order, lr=0.3):
    theta = model.parameters_per_task(3)
    adapted, _ = adaptation.sgd(model, theta, train, _mse, lr=lr, order=order)
    adapted, _ = adaptation.sgd(model, adapted, train, _mse, lr=lr, order=order)  # two steps
    return adaptation.objective(model, adapted, test, _mse).loss


def test_second_order_meta_gradient_matches_finite_differences():
    model = _regressor()
    train, test = _data(seed=1), _data(seed=2)
    loss = _meta_loss(model, train, test, order=2)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    eps = 1e-6
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads):
            for index in [(0,) * p.dim(), tuple(s - 1 for s in p.shape)]:
                p[index] += eps
                up = _meta_loss(model, train, test, order=2)
                p[index] -= 2 * eps
                down = _meta_loss(model, train, test, order=2)
                p[index] += eps
                fd = (up - down) / (2 * eps)
                assert g[index].item() == pytest.approx(fd.item(), rel=1e-5, abs=1e-9)


def test_meta_gradient_through_a_recurrent_adaptation_matches_finite_differences():
    """MAML with a GRU: per-task recurrent parameters, the adaptation vmapped over tasks."""
    torch.manual_seed(0)
    model = models.Recurrent("gru", ["x"], {"pred": "regression"}, obs_dim=1, n_actions=0,
                             hidden=4).double()
    gen = torch.Generator().manual_seed(3)

    def data():  # sequences of 3 steps, 2 per task
        x = torch.rand(3, 6, 1, generator=gen, dtype=torch.float64) * 4 - 2
        return {"x": x, "y": torch.sin(x[..., 0]), "done": torch.zeros(3, 6, dtype=torch.float64)}

    train, test = data(), data()
    loss = _meta_loss(model, train, test, order=2)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    eps = 1e-6
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads):
            index = (0,) * p.dim()
            p[index] += eps
            up = _meta_loss(model, train, test, order=2)
            p[index] -= 2 * eps
            down = _meta_loss(model, train, test, order=2)
            p[index] += eps
            assert g[index].item() == pytest.approx(((up - down) / (2 * eps)).item(), rel=1e-5,
                                                    abs=1e-9)


def test_first_order_equals_second_order_without_the_hessian_term():
    """FO-MAML's gradient is the test-loss gradient at θ′, applied to θ as if dθ′/dθ = I."""
    model = _regressor()
    train, test = _data(seed=1), _data(seed=2)
    first = torch.autograd.grad(_meta_loss(model, train, test, order=1),
                                list(model.parameters()))
    # by hand: θ′ with constant gradients, then ∂L_test/∂θ′ summed over tasks
    theta = {k: v.detach() for k, v in model.parameters_per_task(3).items()}
    adapted, _ = adaptation.sgd(model, theta, train, _mse, lr=0.3, order=1)
    adapted, _ = adaptation.sgd(model, adapted, train, _mse, lr=0.3, order=1)
    leaves = {k: v.detach().requires_grad_() for k, v in adapted.items()}
    loss = adaptation.objective(model, leaves, test, _mse).loss
    at_adapted = torch.autograd.grad(loss, list(leaves.values()))
    for f, g in zip(first, at_adapted):
        torch.testing.assert_close(f, g.sum(0))
    second = torch.autograd.grad(_meta_loss(model, train, test, order=2),
                                 list(model.parameters()))
    assert any(not torch.allclose(f, s) for f, s in zip(first, second))  # the term matters


def test_vmapped_inner_step_equals_a_loop_over_tasks():
    model = _regressor()
    train = _data(tasks=3)
    adapted, losses = adaptation.sgd(model, model.parameters_per_task(3), train, _mse, lr=0.1,
                                     order=1)
    split, _ = adaptation.split_tasks(train, 3)
    for i in range(3):
        one = {k: v[i] for k, v in split.items()}
        model.zero_grad()
        loss = _mse(one, model.apply(None, one))
        loss.backward()
        assert losses[i].item() == pytest.approx(loss.item())
        for name, p in model.named_parameters():
            torch.testing.assert_close(adapted[name][i], p.detach() - 0.1 * p.grad)


def test_meta_sgd_step_sizes_are_per_parameter_and_learned():
    model = _regressor()
    sizes = metaparams.StepSizes(model, init=0.1).double()
    train, test = _data(seed=1), _data(seed=2)
    adapted, _ = adaptation.sgd(model, model.parameters_per_task(3), train, _mse, lr=sizes(),
                                order=2)
    adaptation.objective(model, adapted, test, _mse).loss.backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in sizes.sizes)


def test_later_steps_take_the_scaled_step_size():
    model = _regressor()
    train = _data(tasks=3)
    theta = model.parameters_per_task(3)
    full, _ = adaptation.sgd(model, theta, train, _mse, lr=0.2, order=1)
    half, _ = adaptation.sgd(model, theta, train, _mse, lr=0.2, order=1, scale=0.5)
    for name in theta:
        torch.testing.assert_close(half[name] - theta[name], 0.5 * (full[name] - theta[name]))


def test_a_rule_s_steps_are_gradient_steps_on_the_same_data():
    """`sgd(lr, steps = 3)`: three steps on one round's batch, each from where the last
    ended; the loss reported is the one before the first."""
    model = _regressor()
    train = _data(tasks=3)
    theta = model.parameters_per_task(3)
    three, first_loss = adaptation.sgd(model, theta, train, _mse, lr=0.1, order=2, steps=3)
    step, before = adaptation.sgd(model, theta, train, _mse, lr=0.1, order=2)
    for _ in range(2):
        step, _ = adaptation.sgd(model, step, train, _mse, lr=0.1, order=2)
    for name in theta:
        torch.testing.assert_close(three[name], step[name])
    torch.testing.assert_close(first_loss, before)


def _weighted_loss(eta):
    """The meta-gradient setting in miniature: the update's loss is shaped by η."""
    def loss(batch, heads):
        return eta() * _mse(batch, heads) + (1 - eta()) * ops.mean(batch, heads["pred"] ** 2)
    return loss


def test_meta_gradient_trace_is_the_exact_derivative_through_earlier_updates():
    """Two online updates θ1 = θ0 + f(θ0, η), θ2 = θ1 + f(θ1, η): with the trace, the
    meta-gradient at the second update is dJ(θ2)/dη through both updates (unrolled by
    autograd as reference); without it, only through the last one."""
    model = _regressor()
    eta = metaparams.Bounded(init=0.3).double()
    first, second, test = _data(tasks=1, seed=1), _data(tasks=1, seed=2), _data(tasks=1, seed=3)
    loss = _weighted_loss(eta)
    theta0 = {k: v.detach().clone() for k, v in model.named_parameters()}

    # reference: unrolled through both updates
    th = {k: v.unsqueeze(0) for k, v in theta0.items()}
    th, _ = adaptation.sgd(model, th, first, loss, lr=0.5, order=2)
    th, _ = adaptation.sgd(model, th, second, loss, lr=0.5, order=2)
    unrolled, = torch.autograd.grad(adaptation.objective(model, th, test, _mse).loss, eta.logit)

    def meta_gradient(with_trace: bool) -> torch.Tensor:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(theta0[name])
        trace = adaptation.Trace(model, [eta], decay=1.0 if with_trace else 0.0)
        for data, final in ((first, False), (second, True)):
            adapted, _ = adaptation.sgd(model, trace.theta(model, 1), data, loss, lr=0.5,
                                        order=2)
            if final:
                objective = adaptation.objective(model, adapted, test, _mse).loss
                return torch.autograd.grad(objective, eta.logit)[0]
            trace.z = trace.advanced(adapted)
            adaptation.carry_over(model, adapted)

    assert meta_gradient(True).item() == pytest.approx(unrolled.item(), rel=1e-8)
    assert meta_gradient(False).item() != pytest.approx(unrolled.item(), rel=1e-3)


def test_bounded_meta_parameter_stays_in_its_interval():
    gamma = metaparams.Bounded(init=0.5, low=0.0, high=1.0)
    assert gamma().item() == pytest.approx(0.5)
    with torch.no_grad():
        gamma.logit += 100
    assert 0.0 < gamma().item() <= 1.0


def test_reptile_moves_toward_the_adapted_parameters():
    model = _regressor()
    before = [p.detach().clone() for p in model.parameters()]
    adapted = {k: v + 1.0 for k, v in model.parameters_per_task(2).items()}
    adaptation.reptile(model, adapted, lr=0.25)
    for b, p in zip(before, model.parameters()):
        torch.testing.assert_close(p.detach(), b + 0.25)


def test_linear_baseline_fits_a_return_linear_in_its_features():
    t = torch.arange(10.0).reshape(10, 1).expand(10, 3) / 10
    obs = torch.randn(10, 3, 2)
    ret = 2 * obs[..., 0] - obs[..., 1] ** 2 + 3 * t ** 2 + 1
    fitted = ops.linear_baseline({"obs": obs, "timestep": t}, ret)
    torch.testing.assert_close(fitted, ret, atol=1e-3, rtol=1e-3)


def _trained(tmp_path, spec, iterations, *sets):
    from metadsl.cli import app  # noqa: F401 - the CLI's run path, as a user calls it
    from typer.testing import CliRunner

    from metadsl import cli

    out = tmp_path / "run"
    args = ["run", spec, "--iterations", str(iterations), "--out", str(out), "--seed", "1"]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "eval.json").read_text())["results"]
    return {(r["method"], r.get("adapt_steps")): r["mean"] for r in rows}


def test_maml_sine_learns_to_adapt_in_one_step(tmp_path):
    scores = _trained(tmp_path, "specs/maml_sine.mrl", 300, "evaluate.instances=200",
                      "evaluate.pretrain_iterations=300")
    # one step from the meta-learned θ beats one step from the pretrained θ and the init
    assert scores[("maml_sine", 1)] < 0.85 * scores[("pretrained", 1)]
    assert scores[("maml_sine", 1)] < 0.7 * scores[("random_init", 1)]
    assert scores[("maml_sine", 10)] < scores[("maml_sine", 1)]


def test_maml_nav2d_adapted_policy_beats_random_init(tmp_path):
    scores = _trained(tmp_path, "bench/specs/maml_nav2d_adam.mrl", 15, "adapt.pi.lr=0.5",
                      "evaluate.instances=20", "evaluate.pretrain_iterations=0",
                      "adapt.tau.count=10", "meta.tau_prime.count=10", "meta.meta_batch=10")
    assert scores[("maml_nav2d_adam", 1)] > scores[("random_init", 1)] + 20


def test_maml_on_halfcheetah_runs_through_the_gymnasium_adapter(tmp_path):
    """The whole path for MuJoCo tasks (continuous actions, copies per task, TRPO through
    the adaptation), at a size that runs in seconds; learning is the bench's to show."""
    scores = _trained(tmp_path, "specs/maml_cheetah_vel.mrl", 2, "cheetah.horizon=20",
                      "meta.meta_batch=2", "adapt.tau.count=2", "meta.tau'.count=2",
                      "evaluate.instances=2", "evaluate.pretrain_iterations=1")
    assert {k for _, k in scores} == {0, 1, 2, 3}
    assert all(-20 * 10 < v < 20 * 10 for v in scores.values())  # |reward| per step < 10


def test_trpo_step_improves_the_surrogate_inside_the_trust_region():
    from metadsl.runtime.learning import rules

    torch.manual_seed(0)
    policy = models.FeedForward("mlp", inputs=["obs"], heads={"pi": "gaussian"},
                                obs_dim=2, n_actions=2, hidden=[16])
    obs = torch.randn(5, 2, 2)  # [T, tasks·copies, obs]
    action, advantage = torch.randn(5, 2, 2), torch.randn(5, 2)
    with torch.no_grad():
        logp = policy.apply(None, {"obs": obs})["pi"].log_prob(action)
    batch = {"obs": obs, "action": action, "logp": logp, "advantage": advantage,
             "done": torch.zeros(5, 2)}

    def surrogate(b, heads):
        return -ops.mean(b, torch.exp(heads["pi"].log_prob(b["action"]) - b["logp"]) *
                         b["advantage"])

    def closure():
        return adaptation.objective(policy, policy.parameters_per_task(2), batch, surrogate)

    before = closure()
    old = before.heads["pi"].detach()
    opt = rules.TRPO(policy.parameters(), max_kl=0.01)
    rules.outer_step(opt, closure)
    after = closure()
    assert after.loss < before.loss.detach() and opt.improvement > 0
    kl = ops.kl(old, after.heads["pi"]).mean().item()
    assert 0 < kl <= 0.01 and kl == pytest.approx(opt.kl)
