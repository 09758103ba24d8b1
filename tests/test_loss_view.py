"""The loss's view of its model: heads on the batch, the model called as an operation on
other inputs, and its target network."""

from __future__ import annotations

import torch

from metadsl.runtime.learning import loss_view, models


def _model(heads: dict) -> models.FeedForward:
    torch.manual_seed(0)
    return models.FeedForward("mlp", ["obs"], heads, obs_dim=3, n_actions=4, hidden=[8])


def _batch(rows: int = 5) -> dict:
    g = torch.Generator().manual_seed(1)
    return {"obs": torch.randn(rows, 3, generator=g),
            "next_obs": torch.randn(rows, 3, generator=g),
            "action": torch.randint(0, 4, (rows,), generator=g)}


def test_a_q_values_head_called_with_an_action_gives_that_action_s_value():
    model, batch = _model({"q": "q_values"}), _batch()
    view = loss_view.LossView(model.sequence(batch), model, None, batch)
    q_next = model.apply(None, {"obs": batch["next_obs"]})["q"]
    assert view.call("q", batch["next_obs"]).shape == (5, 4)
    expected = q_next[torch.arange(5), batch["action"]]
    assert torch.equal(view.call("q", batch["next_obs"], batch["action"]), expected)


def test_a_q_value_head_reads_the_action_and_passes_gradients_to_the_model():
    model, batch = _model({"pi": "categorical", "q1": "q_value"}), _batch()
    view = loss_view.LossView(model.sequence(batch), model, None, batch)
    other = (batch["action"] + 1) % 4
    a, b = view.call("q1", batch["obs"], batch["action"]), view.call("q1", batch["obs"], other)
    assert torch.allclose(a, view["q1"]) and not torch.allclose(a, b)
    a.sum().backward()
    assert model.heads.layers["q1"].weight.grad.abs().sum() > 0
    assert "q1" not in model.step({"obs": batch["obs"]}, None)[0]  # acting has no action


def test_a_call_uses_the_update_s_parameters():
    """Under an adaptation step the view evaluates the task's θ′, not θ."""
    model, batch = _model({"v": "value"}), _batch()
    shifted = {k: p.detach() + 1.0 for k, p in model.named_parameters()}
    view = loss_view.LossView(model.apply(shifted, batch), model, shifted, batch)
    assert torch.equal(view.call("v", batch["next_obs"]),
                       model.apply(shifted, {"obs": batch["next_obs"]})["v"])


def test_the_target_network_follows_by_polyak_averaging_and_carries_no_gradient():
    model, batch = _model({"v": "value"}), _batch()
    target = loss_view.TargetNetwork(model)
    before = [p.clone() for p in target.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    target.follow(model, 0.25)
    for old, new, online in zip(before, target.model.parameters(), model.parameters()):
        assert torch.allclose(new, 0.75 * old + 0.25 * online)
    view = loss_view.LossView(model.sequence(batch), model, None, batch, target)
    value = view.target("v", batch["next_obs"])
    assert not value.requires_grad
    assert torch.equal(value, target.model.apply(None, {"obs": batch["next_obs"]})["v"])
    assert torch.equal(view.target("v"), target.model.sequence(batch)["v"])
    restored = loss_view.TargetNetwork(_model({"v": "value"}))
    restored.load_state_dict(target.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(restored.model.parameters(),
                                                 target.model.parameters()))


def test_a_detached_view_passes_no_gradient():
    model, batch = _model({"v": "value"}), _batch()
    view = loss_view.LossView(model.sequence(batch), model, None, batch).detached()
    assert not view["v"].requires_grad and not view.call("v", batch["next_obs"]).requires_grad
