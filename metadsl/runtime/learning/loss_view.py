"""What a loss reads of the model it updates: its heads on the batch, the model called as
an operation on other inputs, and its target network.

A generated loss is a function `loss(batch, heads)`. `heads` is a `LossView`: a mapping of
the updated model's heads on the batch (`heads["pi"]`), which also evaluates the model on
explicit inputs (`heads.call("q", obs, action)`, `pi(next_obs)` in the language) and
under its target network's parameters (`heads.target("v", next_obs)`). The parameters are
the ones the update is differentiating: θ for an in-place update, one task's θ′ under
vmap for an adaptation step. The target network holds its own copy (TorchRL's losses
keep their target parameters the same way) and is moved by the rule after each step.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from . import models


def _evaluate(model, params, batch: dict, inputs: tuple, slot: str) -> dict:
    """Head `slot` of the model (and those sharing its pass) on `inputs`: the state
    replaces its observation input, an action (second) replaces the batch's; every other
    input the model reads comes from the batch (a skill z, a previous reward)."""
    fields = {name: batch[name] for name in (*model.inputs, "action") if name in batch}
    if inputs:
        fields[model.inputs[0]] = inputs[0]
    if len(inputs) > 1:
        fields["action"] = inputs[1]
    return model.apply(params, fields, only=model.heads.computed_with(slot))


def _at_action(model, slot: str, head, inputs: tuple):
    """A `q_values` head called with an action gives that action's value, Q(s, a)."""
    if len(inputs) > 1 and model.heads.kinds.get(slot) == "q_values":
        return head.gather(-1, inputs[1].long().unsqueeze(-1)).squeeze(-1)
    return head


class LossView(dict):
    """The updated model as its loss sees it (see the module docstring)."""

    def __init__(self, heads: dict, model, params: dict | None, batch: dict,
                 target: "TargetNetwork | None" = None, detached: bool = False,
                 memories: dict | None = None, models: dict | None = None):
        super().__init__(heads)
        self.model, self.params, self.batch = model, params, batch
        self.target_network, self.is_detached = target, detached
        self.memories = memories or {}
        self.models = models or {}

    @classmethod
    def of_data(cls, batch: dict) -> "LossView":
        """A view with no model: what an expression over recorded data alone reads (a
        stored column, the values a table write stores)."""
        return cls({}, None, None, batch)

    def detached(self) -> "LossView":
        """The same view with no gradient to the model (what `stop_grad(...)` reads). Its
        heads are detached when first read (`__missing__`): a loss that passes the view to
        a function reading only recorded data pays for none."""
        view = LossView({}, self.model, self.params, self.batch, self.target_network,
                        detached=True, memories=self.memories, models=self.models)
        view.source = self
        return view

    def memory(self, key: str):
        """An episodic memory the loss reads (`lookup(M, h, action)`)."""
        return self.memories[key]

    def model_ref(self, name: str) -> "models.Bound":
        """A model passed to the loss (`epg(L_phi)`), under the parameters the step holds
        for it, reading this batch."""
        model, params = self.models[name]
        return models.Bound(model, params, self.batch)

    def __missing__(self, slot: str):
        """A head first read: the source's, detached; or, for an in-place update (θ, no
        heads given), the model's pass on the batch that computes it."""
        if self.is_detached:
            head = self[slot] = self.source[slot].detach()
            return head
        if self.params is not None or self.model is None or slot not in self.model.heads.kinds:
            raise KeyError(slot)
        self.update(self.model.sequence(self.batch, only=self.model.heads.computed_with(slot)))
        return dict.__getitem__(self, slot)

    def call(self, slot: str, *inputs):
        """Head `slot` of the model under the update's parameters, on `inputs`."""
        heads = _evaluate(self.model, self.params, self.batch, inputs, slot)
        head = _at_action(self.model, slot, heads[slot], inputs)
        return head.detach() if self.is_detached else head

    def target(self, slot: str, *inputs):
        """Head `slot` of the target network, on `inputs` (the batch's if none)."""
        if self.target_network is None:
            raise RuntimeError("this update keeps no target network")  # the checker's E0411
        with torch.no_grad():
            net = self.target_network.model
            head = net.sequence(self.batch, only=net.heads.computed_with(slot))[slot] \
                if not inputs else _evaluate(net, None, self.batch, inputs, slot)[slot]
        return _at_action(net, slot, head, inputs)


class TargetNetwork(nn.Module):
    """A frozen copy θ⁻ of a model, moved toward it by Polyak averaging after each of the
    rule's steps: θ⁻ ← (1 − τ)θ⁻ + τθ. Checkpointed with the run."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def follow(self, model: nn.Module, rate: float, stepped=None) -> None:
        """θ⁻ moves toward θ; `stepped`: only the parameters an update stepped (a critic's,
        not the policy's that shares the model)."""
        ids = None if stepped is None else {id(p) for p in stepped}
        for target, online in zip(self.model.parameters(), model.parameters()):
            if ids is None or id(online) in ids:
                target.lerp_(online, rate)
