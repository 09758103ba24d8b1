"""The runtime's primitive ops mean what docs/reference.md says."""

from __future__ import annotations

import torch

from metadsl.runtime.learning import ops

DONE = torch.tensor([[0.0], [1.0], [0.0], [0.0]])  # an episode ends at t = 1
BATCH = {"done": DONE, "progress": 0.25}


def test_scan_back_is_a_discounted_sum_cut_at_episode_ends():
    reward = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    g = ops.scan_back(reward, 0.5 * (1 - DONE))
    assert g.squeeze().tolist() == [1 + 0.5 * 2, 2, 3 + 0.5 * 4, 4]
    assert ops.scan_back(reward, 0.5, last=8.0).squeeze().tolist()[-1] == 4 + 0.5 * 8


def test_shift_is_zero_across_an_episode_end_and_past_the_trace():
    x = torch.tensor([[10.0], [20.0], [30.0], [40.0]])
    assert ops.shift(BATCH, x, 1).squeeze().tolist() == [20, 0, 40, 0]
    assert ops.shift(BATCH, x, 2).squeeze().tolist() == [0, 0, 0, 0]
    assert ops.shift({"done": torch.zeros(4, 1)}, x, 2).squeeze().tolist() == [30, 40, 0, 0]


def test_distribution_ops_and_anneal():
    d = ops.normal(torch.zeros(3), torch.zeros(3))
    assert torch.allclose(ops.kl(d, ops.unit_normal(torch.zeros(3))), torch.zeros(3))
    assert ops.log_prob(d, torch.zeros(3)).shape == (3,)
    assert ops.anneal(BATCH, 1.0, 0.0, over=0.5) == 0.5
    assert ops.normalize(BATCH, torch.tensor([1.0, 3.0])).tolist() == [-0.7071067690849304,
                                                                 0.7071067690849304]
    assert ops.stack(torch.ones(2, 3), torch.zeros(2, 3)).shape == (2, 3, 2)
