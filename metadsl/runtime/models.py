"""Networks built from a spec's `model` declarations: cores, inputs and named heads.

A model maps a trajectory batch (time-major fields, [T, B, ...]) to its heads: a
distribution for `categorical` heads, a tensor [T, B] for `value` heads. The recurrent
model also steps one time step at a time during rollouts, carrying its hidden state.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Categorical


def input_size(name: str, obs_dim: int, n_actions: int) -> int:
    return {"obs": obs_dim, "x": obs_dim, "prev_action": n_actions}.get(name, 1)


def features(inputs: list[str], fields: dict, n_actions: int) -> torch.Tensor:
    """The model's input vector per step, from named trajectory fields ([T, B] or [B])."""
    parts = []
    for name in inputs:
        x = fields[name]
        if name == "prev_action":  # -1 before the first action: an all-zero one-hot
            parts.append(nn.functional.one_hot(x.clamp(min=0), n_actions).float() *
                         (x >= 0).unsqueeze(-1).float())
        elif name in ("obs", "x"):
            parts.append(x.float())
        else:
            parts.append(x.float().unsqueeze(-1))
    return torch.cat(parts, dim=-1)


class Heads(nn.Module):
    def __init__(self, hidden: int, heads: dict[str, str], n_actions: int):
        super().__init__()
        self.kinds = dict(heads)
        sizes = {"categorical": n_actions, "value": 1, "regression": 1}
        self.layers = nn.ModuleDict({name: nn.Linear(hidden, sizes[kind])
                                     for name, kind in heads.items()})

    def forward(self, h: torch.Tensor) -> dict:
        out = {}
        for name, layer in self.layers.items():
            y = layer(h)
            out[name] = Categorical(logits=y) if self.kinds[name] == "categorical" else y.squeeze(-1)
        return out


class Recurrent(nn.Module):
    """`recurrent(core = gru(...)|lstm(...), inputs = [...], heads = {...})`."""

    def __init__(self, core: str, hidden: int, inputs: list[str], heads: dict[str, str],
                 obs_dim: int, n_actions: int, layers: int = 1, reset: str = "task"):
        super().__init__()
        self.inputs, self.n_actions = list(inputs), n_actions
        self.reset = reset  # "task": one trial is one memory; "episode": cleared at prev_done
        size = sum(input_size(i, obs_dim, n_actions) for i in inputs)
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[core]
        self.core = rnn(size, hidden, num_layers=layers)
        self.heads = Heads(hidden, heads, n_actions)

    def initial_state(self, batch: int):
        return None  # torch's zero state

    def step(self, fields: dict, state):
        """One time step for a batch: fields are [B]-shaped; returns (heads, state)."""
        x = features(self.inputs, fields, self.n_actions).unsqueeze(0)
        if self.reset == "episode" and state is not None:
            state = self._cleared(state, fields["prev_done"])
        h, state = self.core(x, state)
        return self.heads(h.squeeze(0)), state

    @staticmethod
    def _cleared(state, done: torch.Tensor):
        keep = (1 - done.float())[None, :, None]  # [layers, B, hidden]
        return tuple(s * keep for s in state) if isinstance(state, tuple) else state * keep

    def sequence(self, batch: dict) -> dict:
        """Heads over whole trajectories [T, B] from a fresh state: one trajectory is one
        task's trial; a memory reset per episode is cleared where an episode ended."""
        x = features(self.inputs, batch, self.n_actions)
        if self.reset != "episode":
            h, _ = self.core(x)
            return self.heads(h)
        state, outputs = None, []
        for t in range(x.shape[0]):  # step by step: clearing needs the state between steps
            if state is not None:
                state = self._cleared(state, batch["prev_done"][t])
            h, state = self.core(x[t:t + 1], state)
            outputs.append(h)
        return self.heads(torch.cat(outputs))


class UniformPolicy(nn.Module):
    """The `random` baseline as a model: uniform over actions, no memory."""

    def __init__(self, n_actions: int):
        super().__init__()
        self.n_actions = n_actions

    def initial_state(self, batch: int):
        return None

    def step(self, fields: dict, state):
        batch = fields["prev_reward"].shape[0]
        return {"pi": Categorical(logits=torch.zeros(batch, self.n_actions))}, state
