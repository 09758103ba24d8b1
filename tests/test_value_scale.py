"""PopArt's normalised value head: values kept when the statistics move, gradients of the
normalised error, and the statistics checkpointed with the model."""

import torch

from metadsl.runtime.learning import loss_view, models, rules


def _model(kind="normalized_value"):
    torch.manual_seed(0)
    return models.FeedForward("mlp", ["obs"], {"pi": "categorical", "v": kind}, obs_dim=3,
                              n_actions=2, hidden=[8])


def test_moving_the_statistics_keeps_every_value():
    model, x = _model(), {"obs": torch.randn(20, 3)}
    target = loss_view.TargetNetwork(model)
    model.heads.track_returns(100 + 30 * torch.randn(500), (target.model.heads,))
    before = model.apply(None, x)["v"].detach()
    model.heads.track_returns(50 + 5 * torch.randn(500), (target.model.heads,))
    assert model.heads.scales["v"].mean.item() < 96  # the statistics did move
    assert torch.allclose(model.apply(None, x)["v"], before, atol=1e-4)
    assert torch.allclose(target.model.apply(None, x)["v"], before, atol=1e-4)


def test_a_squared_error_has_the_gradient_of_the_normalised_error():
    model, x = _model(), {"obs": torch.randn(20, 3)}
    model.heads.track_returns(100 + 30 * torch.randn(500))
    scale = model.heads.scales["v"]
    g = 100 + 30 * torch.randn(20)
    layer = model.heads.layers["v"]
    ((model.apply(None, x)["v"] - g) ** 2).mean().backward()
    got = layer.bias.grad.clone()
    layer.bias.grad = None
    h = torch.tanh(model.net[0](x["obs"]))
    y = torch.nn.functional.linear(h, layer.weight, layer.bias).squeeze(-1)
    ((y - (g - scale.mean) / scale.std) ** 2).mean().backward()
    assert torch.allclose(got, layer.bias.grad, rtol=1e-4)


def test_minimize_fits_returns_of_any_scale_at_the_same_speed():
    """Returns of scale 1 and 1,000 reach the same explained variance in the same steps:
    with a plain value head the large scale would still be near its initial 0."""
    fits = []
    for scale in (1.0, 1000.0):
        model = _model()
        opt = rules.Adam(model.parameters(), lr=1e-2, epochs=50)
        obs = torch.randn(10, 16, 3)
        reward = scale * (obs[..., 0] + 2)
        done = torch.ones(10, 16)
        batch = {"obs": obs, "reward": reward, "done": done}
        rules.minimize(opt, model, batch,
                       lambda b, heads: ((heads["v"] - b["reward"]) ** 2).mean(), gamma=0.99)
        v = model.sequence(batch)["v"].detach()
        fits.append((1 - ((v - reward) ** 2).mean() / reward.var()).item())
    assert fits[0] > 0.5 and abs(fits[0] - fits[1]) < 1e-3, fits


def test_the_statistics_are_part_of_the_checkpointed_state():
    model = _model()
    model.heads.track_returns(torch.tensor([1.0, 5.0, 9.0]))
    copy = _model()
    copy.load_state_dict(model.state_dict())
    assert copy.heads.scales["v"].mean.item() == model.heads.scales["v"].mean.item() == 5.0
