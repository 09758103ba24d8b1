"""Step rules: the learning rate's schedule, and a resumed run's rate."""

import pytest
import torch

from metadsl.runtime.learning import models, rules
from metadsl.runtime.runs import session as runs


def _update(opt, model, progress):
    batch = {"obs": torch.randn(4, 3, 2), "reward": torch.zeros(4, 3), "done": torch.ones(4, 3),
             "progress": progress}
    rules.minimize(opt, model, batch, lambda b, heads: (heads["v"] ** 2).mean())
    return opt.param_groups[0]["lr"]


def _model():
    return models.FeedForward("mlp", ["obs"], {"v": "value"}, obs_dim=2, n_actions=1, hidden=[4])


@pytest.mark.parametrize("rule", [rules.Adam, rules.RMSprop])
def test_a_linear_schedule_decays_the_rate_over_the_loop(rule):
    model = _model()
    opt = rule(model.parameters(), lr=0.01, schedule="linear")
    assert [_update(opt, model, p) for p in (0.0, 0.5, 0.9)] == pytest.approx([0.01, 0.005, 0.001])
    constant = rule(model.parameters(), lr=0.01)
    assert _update(constant, model, 0.9) == 0.01


def test_a_resumed_schedule_starts_from_the_resumed_run_s_rate():
    model = _model()
    saved = rules.Adam(model.parameters(), lr=0.01, schedule="linear")
    _update(saved, model, 0.5)

    class State(runs.State):
        def __init__(self, opt):
            self.opt = opt

    resumed = State(rules.Adam(model.parameters(), lr=0.002, schedule="linear"))
    resumed.load_state_dict({"opt": saved.state_dict()})
    assert _update(resumed.opt, model, 0.5) == pytest.approx(0.001)
