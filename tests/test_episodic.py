"""Episodic memories, replay buffers and ε-greedy acting (runtime/episodic.py, replay.py,
knn.py): the estimates against hand computations, the write and eviction rules, and
checkpoints that restore bit for bit."""

from __future__ import annotations

import io
import math
import json

import pytest
import torch
from torch import nn

from metadsl.runtime.learning import models
from metadsl.runtime.memory import episodic, knn, replay

from .conftest import metadsl
from .test_backend import metrics


def encoder(obs_dim: int = 3, width: int = 4) -> models.FeedForward:
    return models.FeedForward("mlp", ["obs"], {"h": "embedding"}, obs_dim, 2, hidden=[width],
                              activation="relu")


def steps(obs, action, values) -> tuple[dict, torch.Tensor]:
    """A one-row trajectory [T, 1] of the given steps."""
    obs = torch.as_tensor(obs, dtype=torch.float32)
    return ({"obs": obs.unsqueeze(1), "action": torch.as_tensor(action).unsqueeze(1)},
            torch.as_tensor(values, dtype=torch.float32).unsqueeze(1))


def written(memory, batch, values, **rule):
    """A write through the rule's entry point, with values that read the data alone."""
    episodic.write(memory, batch, lambda b, heads: values, **rule)


@pytest.mark.parametrize("backend", list(knn.BACKENDS))
def test_search_backends_agree_on_small_stores(backend):
    gen = torch.Generator().manual_seed(0)
    keys, queries = torch.randn(500, 16, generator=gen), torch.randn(40, 16, generator=gen)
    d2, ids = knn.search(keys, queries, 11, backend)
    exact = ((queries[:, None] - keys[None]) ** 2).sum(-1)
    want_d2, want_ids = exact.topk(11, largest=False)
    assert torch.equal(ids, want_ids)
    assert torch.allclose(d2, want_d2, rtol=1e-4, atol=1e-4)
    # fewer keys than k: all of them, nearest first
    d2, ids = knn.search(keys[:3], queries[:2], 11, backend)
    assert ids.shape == (2, 3) and bool((d2[:, 1:] >= d2[:, :-1]).all())


def test_dnd_estimate_is_the_kernel_weighted_mean_of_the_k_nearest():
    net = encoder()
    dnd = episodic.DND(net, actions=2, capacity=10, k=2, delta=0.5)
    stored = torch.tensor([[0.0, 0, 0, 0], [1.0, 0, 0, 0], [5.0, 0, 0, 0]])
    dnd.slots.insert(0, stored, torch.tensor([1.0, 3.0, 100.0]))
    h = torch.tensor([[0.25, 0, 0, 0]], requires_grad=True)
    q = dnd.lookup(h, torch.tensor([0]))
    w = torch.tensor([1 / (0.25 ** 2 + 0.5), 1 / (0.75 ** 2 + 0.5)])  # the 2 nearest
    assert q.item() == pytest.approx(float((w / w.sum()) @ torch.tensor([1.0, 3.0])), rel=1e-6)
    q.sum().backward()  # differentiable in h, the neighbours' keys and their values
    assert h.grad.abs().sum() > 0
    assert dnd.slots.values.grad[0, :2].abs().sum() > 0 and dnd.slots.values.grad[0, 2] == 0
    assert dnd.slots.keys.grad[0, :2].abs().sum() > 0
    assert dnd.lookup(h, torch.tensor([1])).item() == 0.0  # action 1's dictionary is empty


def test_dnd_write_moves_an_existing_key_by_alpha_and_appends_new_ones():
    net = encoder()
    dnd = episodic.DND(net, actions=2, capacity=10, k=3)
    obs = torch.tensor([[1.0, 2, 3], [-1.0, 0, 2]])
    batch, values = steps(obs, [0, 1], [10.0, 4.0])
    written(dnd, batch, values, alpha=0.1)
    assert dnd.slots.size.tolist() == [1, 1]
    batch, values = steps(obs[:1], [0], [20.0])
    written(dnd, batch, values, alpha=0.1)
    assert dnd.slots.size.tolist() == [1, 1]
    assert dnd.slots.values[0, 0].item() == pytest.approx(10 + 0.1 * (20 - 10))


def test_a_max_write_never_lowers_a_stored_return():
    table = episodic.Table(obs_dim=3, n_actions=2, actions=2, capacity=100, k=3, projection=8)
    gen = torch.Generator().manual_seed(1)
    obs = torch.randint(0, 3, (40, 3), generator=gen).float()  # repeated states
    action = torch.randint(0, 2, (40,), generator=gen)
    best: dict = {}
    for _ in range(5):
        returns = torch.randn(40, generator=gen) * 10
        batch, values = steps(obs, action, returns)
        written(table, batch, values, mode="max")
        for o, a, r in zip(obs.tolist(), action.tolist(), returns.tolist()):
            best[(tuple(o), a)] = max(best.get((tuple(o), a), -1e9), r)
        for (o, a), r in best.items():  # each stored return is the max ever written
            q = table.lookup(torch.tensor([o]), torch.tensor([a]))
            assert q.item() == pytest.approx(r, abs=1e-5)


def test_an_unseen_state_takes_the_mean_of_its_k_nearest_neighbours():
    table = episodic.Table(obs_dim=1, n_actions=1, actions=1, capacity=10, k=2, projection=1)
    table.projection.fill_(1.0)
    batch, values = steps([[0.0], [1.0], [10.0]], [0, 0, 0], [2.0, 4.0, 50.0])
    written(table, batch, values, mode="max")
    assert table.lookup(torch.tensor([[0.4]]), torch.tensor([0])).item() == pytest.approx(3.0)
    assert table.lookup(torch.tensor([[10.0]]), torch.tensor([0])).item() == 50.0


def test_lru_evicts_the_least_recently_read_or_written_key():
    table = episodic.Table(obs_dim=1, n_actions=1, actions=1, capacity=3, k=1, projection=1)
    table.projection.fill_(1.0)
    for x in (0.0, 10.0, 20.0):  # written in this order: 0 is the oldest
        written(table, *steps([[x]], [0], [x]), mode="max")
    table.lookup(torch.tensor([[0.1]]), torch.tensor([0]))  # reading 0 makes 10 the oldest
    written(table, *steps([[30.0]], [0], [30.0]), mode="max")
    keys = sorted(table.slots.keys[0, :3, 0].tolist())
    assert keys == [0.0, 20.0, 30.0]
    written(table, *steps([[20.0]], [0], [25.0]), mode="max")  # a write refreshes 20
    written(table, *steps([[40.0]], [0], [40.0]), mode="max")  # so 0 goes
    assert sorted(table.slots.keys[0, :3, 0].tolist()) == [20.0, 30.0, 40.0]


def restored(module: nn.Module, fresh: nn.Module) -> nn.Module:
    """`fresh` loaded from `module`'s state saved as a checkpoint is (weights_only)."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    return fresh


def test_memories_restore_bit_for_bit():
    gen = torch.Generator().manual_seed(2)
    obs, action = torch.randn(30, 3, generator=gen), torch.randint(0, 2, (30,), generator=gen)
    batch, values = steps(obs, action, torch.randn(30, generator=gen))
    table = episodic.Table(obs_dim=3, n_actions=2, capacity=20, k=3, projection=8)
    written(table, batch, values, mode="max")
    net = encoder()
    dnd = episodic.DND(net, capacity=20, k=3)
    written(dnd, batch, values, alpha=0.1)
    buffer = replay.Buffer(capacity=25)
    buffer.extend(dict(batch, reward=values, done=torch.zeros_like(values)),
                  columns={"ret": lambda b, heads: b["reward"] * 2})
    copies = (restored(table, episodic.Table(obs_dim=3, n_actions=2, capacity=20, k=3,
                                             projection=8)),
              restored(dnd, episodic.DND(net, capacity=20, k=3)),
              restored(buffer, replay.Buffer(capacity=25)))
    for original, copy in zip((table, dnd, buffer), copies):
        saved, loaded = original.state_dict(), copy.state_dict()
        flat = lambda d: {k: v for k, v in d.items() if not isinstance(v, dict)} | \
            {f"fields.{k}": v for k, v in d.get("fields", {}).items()}
        assert flat(saved).keys() == flat(loaded).keys()
        for k, v in flat(saved).items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(flat(loaded)[k])), k
    probe = {"obs": torch.randn(5, 3, generator=gen)}
    assert torch.equal(table.action_values(probe), copies[0].action_values(probe))
    assert torch.equal(dnd.action_values(probe), copies[1].action_values(probe))
    assert torch.equal(buffer.sample(7, torch.Generator().manual_seed(3))["ret"],
                       copies[2].sample(7, torch.Generator().manual_seed(3))["ret"])


def test_replay_stores_real_steps_with_columns_and_overwrites_the_oldest():
    buffer = replay.Buffer(capacity=5)
    reward = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 0.0]])  # [T, B], one padded step
    batch = {"obs": reward.unsqueeze(-1), "action": torch.zeros(3, 2, dtype=torch.long),
             "reward": reward, "done": torch.tensor([[0.0, 0], [0, 1], [1, 1]]),
             "valid": torch.tensor([[1.0, 1], [1, 1], [1, 0]])}
    buffer.extend(batch, columns={"twice": lambda b, heads: b["reward"] * 2})
    assert len(buffer) == 5
    assert sorted(buffer.storage.fields["reward"].tolist()) == [1, 2, 3, 10, 20]
    sample = buffer.sample(64, torch.Generator().manual_seed(0))
    assert sample["obs"].shape == (1, 64, 1) and sample["reward"].shape == (1, 64)
    assert torch.equal(sample["twice"], sample["reward"] * 2)
    later = {k: v[:1] for k, v in batch.items()}
    later["reward"] = torch.tensor([[7.0, 8.0]])
    buffer.extend(later)  # two more: the two oldest (the first step's 1 and 10) go
    assert sorted(buffer.storage.fields["reward"].tolist()) == [2, 3, 7, 8, 20]


def test_q_greedy_acts_epsilon_greedily_and_breaks_ties_uniformly():
    class Values:
        def action_values(self, fields):
            return torch.tensor([[1.0, 3.0, 3.0, 0.0]]).expand(len(fields["obs"]), 4)

    heads, _ = episodic.QGreedy(Values(), epsilon=0.2).step({"obs": torch.zeros(2, 1)}, None)
    assert torch.allclose(heads["pi"].probs[0], torch.tensor([0.05, 0.45, 0.45, 0.05]))
    assert heads["v"].tolist() == [3.0, 3.0]


SMALL_NEC = ["--set", "M.capacity=300", "--set", "replay.capacity=500", "--set",
             "evaluate.instances=2", "--set", "train.batch.count=64"]


def test_a_resumed_run_continues_with_the_same_memory_contents(tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    r = metadsl("run", "specs/nec.mrl", "--iterations", "6", *SMALL_NEC, "--out", str(whole))
    assert r.returncode == 0, r.stderr[-2000:]
    assert metadsl("run", "specs/nec.mrl", "--iterations", "3", *SMALL_NEC,
                   "--out", str(part)).returncode == 0
    r = metadsl("run", "specs/nec.mrl", "--iterations", "6", "--resume", str(part))
    assert r.returncode == 0 and "resumed" in r.stderr, r.stderr[-2000:]
    # the dictionary, its optimizer's moments and the replay after 3 episodes came back whole
    assert metrics(part) == metrics(whole)
    assert json.loads((part / "eval.json").read_text()) == \
        json.loads((whole / "eval.json").read_text())


def test_q_greedy_tries_every_action_of_a_store_until_it_has_k_keys():
    table = episodic.Table(obs_dim=1, n_actions=2, actions=2, capacity=10, k=2, projection=1)
    written(table, *steps([[0.0], [1.0]], [0, 0], [5.0, 5.0]), mode="max")
    policy = episodic.QGreedy(table, epsilon=0.0)
    heads, _ = policy.step({"obs": torch.zeros(1, 1)}, None)
    assert heads["pi"].probs[0].tolist() == [0.0, 1.0]  # action 1 has no keys yet
    written(table, *steps([[0.0], [1.0]], [1, 1], [1.0, 1.0]), mode="max")
    heads, _ = policy.step({"obs": torch.zeros(1, 1)}, None)
    assert heads["pi"].probs[0].tolist() == [1.0, 0.0]  # both have k: the greedy one


def test_the_approximate_index_finds_the_exact_neighbours_and_follows_writes():
    gen = torch.Generator().manual_seed(4)
    centres = torch.randn(50, 16, generator=gen) * 4
    keys = centres[torch.randint(0, 50, (4000,), generator=gen)] + \
        torch.randn(4000, 16, generator=gen)  # clustered, as embeddings are
    queries = keys[:200] + 0.1 * torch.randn(200, 16, generator=gen)
    index = knn.Neighbours(approximate_from=1000)
    _, exact = knn.search(keys, queries, 11)
    d2, ids = index.search(keys, queries, 11)
    assert index.index is not None
    recall = sum(len(set(a) & set(b)) for a, b in zip(ids.tolist(), exact.tolist())) / exact.numel()
    assert recall > 0.95
    assert bool((d2[:, 1:] >= d2[:, :-1]).all())  # re-ranked: nearest first, exact distances
    keys[7] = queries[0]  # a slot overwritten with a new key is found there
    index.changed(torch.tensor([7]))
    _, ids = index.search(keys, queries[:1], 1)
    assert ids.item() == 7
    slots = episodic.Slots(actions=1, capacity=10, dim=2, trainable=False)
    assert isinstance(slots.search[0], knn.Neighbours)


def test_contextual_trials_bring_every_context_back_and_baselines_see_the_same_draws():
    from metadsl.runtime.tasks import bandits, contextual

    batch = contextual.contextual_bandits(6, arms=4, contexts=3, repeats=2, dim=8, pulls=5,
                                          steps=30, gen=torch.Generator().manual_seed(0))
    assert sorted(batch.order[0].tolist()) == [0, 0, 1, 1, 2, 2]
    new, repeat = batch.first_pulls()
    assert new.sum(0).tolist() == [3] * 6 and repeat.sum(0).tolist() == [3] * 6
    always_first = lambda s, f, t, n, gen: torch.zeros(s.shape[0], dtype=torch.long)
    played = contextual.play(batch, always_first, torch.Generator())
    direct = torch.stack([batch.reward(t, torch.zeros(6, dtype=torch.long))
                          for t in range(30)])
    assert torch.equal(played, direct)  # each pull read its own draw, in trial order
    env = contextual.ContextualEnv(batch)
    obs = env.reset()
    assert torch.equal(obs, batch.codes[torch.arange(6), batch.order[:, 0]])
    for _ in range(5):
        obs, _, done = env.step(torch.zeros(6, dtype=torch.long))
    assert done.tolist() == [1.0] * 6
    assert torch.equal(obs, batch.codes[torch.arange(6), batch.order[:, 1]])


def test_the_episodic_lstm_reinstates_a_recurring_context_and_trains_as_it_acts():
    net = models.EpisodicLSTM("episodic_lstm", ["obs", "prev_reward"], {"pi": "categorical"},
                              obs_dim=4, n_actions=3, hidden=6, capacity=4)
    code = {name: torch.tensor([value]) for name, value in
            (("a", [1.0, -1, 1, -1]), ("b", [-1.0, -1, 1, 1]))}
    state, heads = None, []
    for context, done in (("a", 0.0), ("a", 0.0), ("b", 1.0), ("a", 1.0)):
        fields = {"obs": code[context], "prev_reward": torch.zeros(1),
                  "prev_done": torch.tensor([done])}
        h, state = net.step(fields, state)
        heads.append(h["pi"].logits)
        if context == "b":  # an episode of 'a' was stored; 'b' (‖a − b‖² = 8) recalls e⁻⁸ of it
            assert int(state[4]) == 1
            recalled = net._recall(state[2], state[3], state[4], code["b"])
            assert torch.allclose(recalled, math.exp(-8) * state[3][0, :1], atol=1e-7)
    _, c, keys, cells, count, _, _ = state
    assert int(count) == 2 and torch.equal(keys[0, 0], code["a"][0])
    assert torch.allclose(net._recall(keys, cells, count, code["a"]), cells[0, :1])
    trial = {"obs": torch.cat([code[x] for x in "aaba"]).unsqueeze(1),
             "prev_reward": torch.zeros(4, 1), "prev_done": torch.tensor([[0.0], [0], [1], [1]])}
    replayed = net.sequence(trial)["pi"].logits.squeeze(1)
    assert torch.allclose(replayed, torch.cat(heads), atol=1e-6)


@pytest.mark.parametrize("spec, small", [
    ("mfec", ["--iterations", "25", "--set", "qec.capacity=20000"]),
    ("nec", ["--iterations", "25"]),
])
def test_episodic_control_learns_cartpole_within_episodes(spec, small, tmp_path):
    """25 episodes lift MFEC and NEC well above random on CartPole (~22): both reach
    100 or more by then in the bench (README, episodic control)."""
    r = metadsl("run", f"specs/{spec}.mrl", *small, "--set", "evaluate.instances=10",
                "--out", str(tmp_path / spec))
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["method"]: row for row in
            json.loads((tmp_path / spec / "eval.json").read_text())["results"]}
    assert rows[spec]["mean"] > 2 * rows["random"]["mean"]
    for name in ("metrics.csv", "args.json", "checkpoint.pt"):
        assert (tmp_path / spec / name).is_file()
    assert any((tmp_path / spec / "tensorboard").iterdir())


def test_a_q_network_regressed_on_stored_returns_learns_the_chain(tmp_path):
    """tests/specs/replay_q_chain.mrl combines what no spec in specs/ does: the chain MDP,
    q_greedy over a feed-forward q_values head, a replay column of discounted returns and
    Adam with a decaying rate. 30 iterations reach the far end of the chain (random ~0.5)."""
    r = metadsl("run", "tests/specs/replay_q_chain.mrl", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["method"]: row["mean"] for row in
            json.loads((tmp_path / "run" / "eval.json").read_text())["results"]}
    assert rows["replay_q_chain"] > rows["random"] + 4
