"""Task sources beyond the bandit and MDP families: the gymnasium adapter, Wang et al.'s
informative-arm bandit, and memories reset per episode."""

from __future__ import annotations

import pytest
import torch

from metadsl.runtime.execution import keys, rollout
from metadsl.runtime.learning import models, ops
from metadsl.runtime.tasks import gym_tasks, informative, families as tasks

from .conftest import make_tasks


def test_gym_tasks_randomize_dynamics_per_instance():
    family = gym_tasks.GymTasks(id="CartPole-v1", horizon=50,
                        randomize={"length": [0.5, 2.0], "masspole": [0.5, 2.0]})
    assert (family.obs_dim, family.n_actions, family.horizon) == (4, 2, 50)
    batch = family.sample(3, 100, torch.Generator().manual_seed(0))
    env = family.env(batch)
    for i, sub in enumerate(env.vec.envs):
        pole = sub.unwrapped
        assert pole.length == pytest.approx(0.5 * batch.scales["length"][i].item())
        assert pole.masspole == pytest.approx(0.1 * batch.scales["masspole"][i].item())
        # CartPole caches these in __init__; the adapter recomputes them
        assert pole.total_mass == pytest.approx(pole.masspole + pole.masscart)
        assert pole.polemass_length == pytest.approx(pole.masspole * pole.length)
    assert len({sub.unwrapped.length for sub in env.vec.envs}) == 3


def test_gym_episodes_restart_in_place_and_are_scored_per_episode():
    family = gym_tasks.GymTasks(id="CartPole-v1", horizon=20)
    batch = family.sample(4, 60, torch.Generator().manual_seed(1))
    traj = rollout.collect(models.UniformPolicy(2), family.env(batch), 60,
                           torch.Generator().manual_seed(2))
    assert traj["obs"].shape == (60, 4, 4) and "valid" not in traj
    ends = traj["episode_done"]
    assert (ends.sum(0) >= 3).all()  # at most 20 steps each: three or more episodes in 60
    # the learner sees each end one step later, as prev_done
    assert torch.equal(traj["prev_done"][1:], ends[:-1])
    score = family.score(traj)
    assert ((score > 0) & (score <= 20)).all()


def test_a_trial_of_n_episodes_ends_each_instance_after_its_nth():
    family = gym_tasks.GymTasks(id="CartPole-v1", horizon=200)
    batch = family.sample(6, 400, torch.Generator().manual_seed(5))
    traj = rollout.collect(models.UniformPolicy(2), family.env(batch), 400,
                           torch.Generator().manual_seed(6), episodes=2)
    valid = traj["valid"]
    assert traj["obs"].shape[0] == int(valid.sum(0).max()) < 400  # stops when all are done
    assert torch.equal(traj["episode_done"].sum(0), torch.full((6,), 2.0))
    last = valid.sum(0).long() - 1
    assert torch.equal(traj["episode_done"][last, torch.arange(6)], torch.ones(6))
    assert (traj["reward"] * (1 - valid)).abs().sum() == 0 and (traj["done"] >= 1 - valid).all()
    # masked reductions see only the real steps
    x = torch.randn(valid.shape)
    assert torch.allclose(ops.mean(traj, x), x[valid.bool()].mean())
    assert torch.allclose(ops.std(traj, x), x[valid.bool()].std())
    assert ops.mean({}, x) == x.mean()
    assert torch.allclose(family.score(traj), traj["reward"].sum(0) / 2)


def test_rows_past_their_trial_are_left_unstepped_and_the_rest_step_as_alone():
    """A trial of n episodes steps only rows still in it; each row's episodes equal that
    row's run on its own."""
    family = gym_tasks.GymTasks(id="CartPole-v1", horizon=200)
    batch = family.sample(5, 400, torch.Generator().manual_seed(3))
    env = family.env(batch)
    calls = [0] * 5
    for row, sub in enumerate(env.vec.envs):
        step = sub.step
        sub.step = lambda a, step=step, row=row: (calls.__setitem__(row, calls[row] + 1),
                                                  step(a))[1]
    gen = keys.Streams([torch.Generator().manual_seed(7)])
    traj = rollout.collect(models.UniformPolicy(2), env, 400, gen, episodes=1)
    lengths = traj["valid"].sum(0).long()
    assert calls == lengths.tolist() and len(set(calls)) > 1
    for row in range(5):
        alone = family.env(gym_tasks.GymBatch([batch.seeds[row]], {}))
        obs = alone.reset()
        for t in range(int(lengths[row])):
            assert torch.equal(obs[0], traj["obs"][t, row])
            *_, obs = alone.step(traj["action"][t, row:row + 1])


def test_categorical_draws_under_member_streams_follow_the_probabilities():
    probs = torch.tensor([[0.2, 0.0, 0.8], [0.5, 0.5, 0.0]]).repeat(2000, 1)
    members = lambda: keys.Streams([torch.Generator().manual_seed(s) for s in range(4)])
    draws = keys.multinomial(probs, members()).reshape(-1, 2)
    assert not (draws[:, 0] == 1).any() and not (draws[:, 1] == 2).any()
    assert (draws[:, 0] == 2).float().mean() == pytest.approx(0.8, abs=0.02)
    assert (draws[:, 1] == 0).float().mean() == pytest.approx(0.5, abs=0.02)
    # each member's block comes from its own key: the same block alone draws the same
    alone = keys.multinomial(probs[:1000], keys.Streams([torch.Generator().manual_seed(0)]))
    assert torch.equal(alone, keys.multinomial(probs, members())[:1000])


def test_gym_same_seeds_give_the_same_episodes():
    family = gym_tasks.GymTasks(id="CartPole-v1", horizon=30, randomize={"length": [0.5, 2]})
    batch = family.sample(2, 30, torch.Generator().manual_seed(3))
    runs = [rollout.collect(models.UniformPolicy(2), family.env(batch), 30,
                            torch.Generator().manual_seed(4))["obs"] for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_mean_episode_return_counts_completed_episodes():
    reward = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]])
    done = torch.tensor([[0.0], [1.0], [0.0], [1.0], [0.0]])
    # episodes (1 + 2) and (3 + 4) completed; the unfinished 5 is not counted
    assert rollout.mean_episode_return({"reward": reward, "episode_done": done}).item() == 5.0


@pytest.mark.parametrize("kwargs, message", [
    ({"id": "CartPol-v1"}, "CartPole"),
    ({"id": "CartPole-v1", "randomize": {"lenght": [0.5, 2]}}, "no numeric parameter 'lenght'"),
])
def test_gym_task_errors_are_clear(kwargs, message):
    with pytest.raises(tasks.TaskError, match=message):
        gym_tasks.GymTasks(**kwargs)


def test_gym_continuous_actions_are_clipped_and_copies_differ():
    family = gym_tasks.GymTasks(id="Pendulum-v1", horizon=10)
    assert family.continuous and (family.obs_dim, family.n_actions) == (3, 1)
    batch = family.sample(2, 10, torch.Generator().manual_seed(0))
    env = family.env(batch, copies=3)
    first = env.reset()
    assert first.shape == (6, 3)
    assert not torch.equal(first[0], first[1])  # copies of one task start apart
    _, reward, *_ = env.step(torch.full((6, 1), 100.0))  # far outside [−2, 2]: clipped
    assert torch.isfinite(reward).all()
    assert family.env(batch, copies=3).vec is env.vec  # the vector env is reused


@pytest.mark.parametrize("source", ["cheetah_vel", "cheetah_dir"])
def test_cheetah_tasks_pay_the_maml_reward_of_their_goal(source):
    family = make_tasks(source, horizon=5)
    assert family.continuous and (family.obs_dim, family.n_actions) == (17, 6)
    batch = family.sample(400, 5, torch.Generator().manual_seed(0))
    if source == "cheetah_dir":
        assert set(batch.goal.tolist()) == {-1.0, 1.0}
        assert 150 < int((batch.goal > 0).sum()) < 250
    else:
        assert 0.0 <= batch.goal.min() and batch.goal.max() <= 2.0
    few = make_tasks(source, horizon=5)
    small = type(batch)(batch.seeds[:2], {}, batch.goal[:2])
    env = few.env(small, copies=2)
    env.reset()
    before = [sub.unwrapped.data.qpos[0] for sub in env.vec.envs]
    action = torch.rand(4, 6) * 3 - 1.5
    _, reward, *_ = env.step(action)
    for row, sub in enumerate(env.vec.envs):
        velocity = (sub.unwrapped.data.qpos[0] - before[row]) / sub.unwrapped.dt  # forward
        goal = small.goal[row // 2].item()
        assert sub.goal == goal
        control = 0.05 * (action[row].clamp(-1, 1) ** 2).sum().item()
        expected = (-abs(velocity - goal) if source == "cheetah_vel" else goal * velocity)
        assert reward[row].item() == pytest.approx(expected - control, rel=1e-5)


def test_informative_arm_baselines_match_the_computed_values():
    gen = torch.Generator().manual_seed(0)
    batch = informative.informative_bandits(40000, 11, 5, gen)
    # ANCHORS.md: optimum 20.55 over 5 pulls (informative arm first)
    assert informative.play(batch, "bayes_optimal", gen).mean().item() == pytest.approx(20.55, abs=0.03)
    assert informative.play(batch, "oracle", gen).mean().item() == 25.0
    # uniform pulls: (9·1 + 5 + 0.55) / 11 per pull
    assert informative.play(batch, "random", gen).mean().item() == pytest.approx(5 * 14.55 / 11, abs=0.05)
    cue = batch.reward(0, torch.full((40000,), 10))
    assert torch.allclose(cue, (batch.target + 1).float() / 10)


def _model(reset):
    torch.manual_seed(0)
    return models.Recurrent("lstm", ["prev_reward", "prev_done"], {"v": "value"},
                            obs_dim=1, n_actions=2, hidden=8, reset=reset)


def test_memory_reset_per_episode_clears_the_state_where_an_episode_ended():
    T, B = 6, 3
    batch = {"prev_reward": torch.randn(T, B),
             "prev_done": torch.tensor([0, 0, 1, 0, 1, 0.0])[:, None].expand(T, B)}
    per_episode, per_task = _model("episode"), _model("task")
    out = per_episode.sequence(batch)["v"]
    # stepping one at a time gives the same values as the whole-sequence pass
    state, stepped = None, []
    for t in range(T):
        heads, state = per_episode.step({k: v[t] for k, v in batch.items()}, state)
        stepped.append(heads["v"])
    assert torch.allclose(torch.stack(stepped), out, atol=1e-6)
    # after a reset the output is that of a fresh memory fed the same input
    fresh = per_episode.sequence({k: v[4:] for k, v in batch.items()})["v"]
    assert torch.allclose(out[4:], fresh, atol=1e-6)
    # a memory reset per task keeps its state across the same boundary
    assert not torch.allclose(per_task.sequence(batch)["v"][4:], fresh, atol=1e-4)
