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


# ---- the critics' and the policy's own updates ------------------------------------------------

def _sac_batch(n=32):
    g = torch.Generator().manual_seed(3)
    batch = {"obs": torch.randn(1, n, 3, generator=g), "next_obs": torch.randn(1, n, 3, generator=g),
             "action": torch.rand(1, n, 2, generator=g) * 2 - 1,
             "reward": torch.randn(1, n, generator=g), "done": torch.zeros(1, n),
             "terminated": torch.zeros(1, n)}
    return batch


def _critic_loss(batch, heads):
    y = batch["reward"] + 0.9 * heads.target("q1", batch["next_obs"], batch["action"])
    return ((heads.call("q1", batch["obs"], batch["action"]) - y) ** 2).mean()


def _actor_loss(batch, heads):
    return -heads.call("q1", batch["obs"], heads["pi"].rsample()).mean()


def test_a_part_s_parameters_are_its_own_and_the_trunk_it_reads():
    model = _policy({"pi": "tanh_gaussian", "q1": "q_value", "q2": "q_value"})
    ids = lambda ps: {id(p) for p in ps}
    trunk = ids(model.net.parameters())
    assert trunk <= ids(model.part_parameters("pi"))  # the policy trains its trunk
    assert not trunk & ids(model.part_parameters("q1"))  # a critic on the inputs has none
    assert not ids(model.part_parameters("q1")) & ids(model.part_parameters("q2"))
    assert ids(model.part_parameters("core")) == trunk
    every = ids(model.part_parameters("pi")) | ids(model.part_parameters("q1")) | \
        ids(model.part_parameters("q2"))
    assert every == ids(model.parameters())


def test_the_critic_step_moves_the_critic_and_its_target_by_polyak_and_nothing_else():
    from metadsl.runtime.learning import loss_view, rules
    model = _policy({"pi": "tanh_gaussian", "q1": "q_value"})
    target = loss_view.TargetNetwork(model)
    with torch.no_grad():  # a target apart from the online critic, so the average shows
        for p in target.model.parameters():
            p.add_(0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    target_before = {k: v.clone() for k, v in target.model.state_dict().items()}
    opt = rules.Adam(model.part_parameters("q1"), lr=1e-2, polyak=0.25)
    rules.minimize(opt, model, _sac_batch(), _critic_loss, torch.Generator(), target=target)
    after, target_after = model.state_dict(), target.model.state_dict()
    for name in after:
        moved = not torch.equal(after[name], before[name])
        assert moved == name.startswith("heads.critics.q1") or \
            moved == name.startswith("heads.layers.q1"), name
        want = 0.75 * target_before[name] + 0.25 * after[name] if moved else target_before[name]
        assert torch.allclose(target_after[name], want, atol=1e-6), name


def test_the_actor_step_leaves_the_critic_it_reads_as_it_is():
    from metadsl.runtime.learning import rules
    model = _policy({"pi": "tanh_gaussian", "q1": "q_value"})
    critic = [p.clone() for p in model.part_parameters("q1")]
    policy = [p.clone() for p in model.part_parameters("pi")]
    opt = rules.Adam(model.part_parameters("pi"), lr=1e-2)
    rules.minimize(opt, model, _sac_batch(), _actor_loss, torch.Generator())
    assert all(torch.equal(a, b) for a, b in zip(critic, model.part_parameters("q1")))
    assert all(p.grad is None for p in model.part_parameters("q1"))  # not even computed
    assert any(not torch.equal(a, b) for a, b in zip(policy, model.part_parameters("pi")))


def test_updates_repeat_after_the_warm_up_and_a_time_limit_is_no_termination(tmp_path):
    import csv
    import math

    from metadsl.runtime.runs import run_folder

    from .conftest import metadsl
    out = tmp_path / "run"
    r = metadsl("run", "tests/specs/sac_tiny.mrl", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    critic = [float(row["losses/agent.q1"]) for row in rows]
    # 10 transitions after iteration 1 (< warm-up 15): skipped; then 3 updates each
    assert math.isnan(critic[0]) and all(math.isfinite(c) for c in critic[1:])
    record = torch.load(out / "checkpoint.pt", weights_only=True)
    saved = run_folder.load(out, record["spec"], record["spec_sha256"])
    steps = [s["step"] for s in saved["state"]["opt_agent_q1"]["state"].values()]
    assert steps and all(int(s) == 6 for s in steps)


def test_a_gym_rollout_records_the_true_last_observation_and_no_termination_at_the_limit():
    from metadsl.runtime.execution import keys, rollout
    from metadsl.runtime.tasks import gym_tasks
    family = gym_tasks.GymTasks(id="Pendulum-v1", horizon=5)
    batch = family.sample(2, 5, torch.Generator().manual_seed(0))
    env = family.env(batch)
    traj = rollout.collect(models.UniformPolicy(1, continuous=True), env, 12,
                           torch.Generator().manual_seed(1))
    assert traj["episode_done"][4].all() and traj["episode_done"][9].all()
    assert not traj["terminated"].any()  # Pendulum ends by its time limit only
    # s_{t+1} is the episode's own, not the next episode's first observation
    alone = family.env(gym_tasks.GymBatch([batch.seeds[0]], {}))
    alone.reset()
    for t in range(5):
        final, *_ = alone.step(traj["action"][t, :1])
        assert torch.allclose(final[0], traj["next_obs"][t, 0])
    assert not torch.equal(traj["obs"][5], traj["next_obs"][4])  # a restart is not s_{t+1}
