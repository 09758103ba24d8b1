"""Episodic memories behind `memory` declarations: MFEC's table and NEC's differentiable
neural dictionary, one store per action, and ε-greedy acting on any action values.

Both stores keep fixed-capacity key and value tensors per action, a used count, and the
clock of each slot's last read or write: at capacity a new key replaces the least
recently used one. Neighbours come from `knn.Neighbours` (exact, then an IVF index past
100,000 keys). Everything a store holds is a tensor, so it is checkpointed with the run
and a resumed run continues with the same contents.

- `Table` (Blundell et al. 2016): keys are a fixed random projection of the
  observation; a key's value is its stored return if present, else the mean of its k
  nearest neighbours' values; a write of a key already stored keeps the max (or, by the
  rule's `mode`, the latest, or the average) of the returns.
- `DND` (Pritzel et al. 2017): keys are an embedding network's output; a lookup is the
  kernel-weighted mean of its k nearest neighbours' values, w_i ∝ 1/(‖h − h_i‖² + δ),
  differentiable in h, the neighbours' keys and their values; a write appends new keys
  and moves an existing key's value toward the target by α.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import TaskError
from ..learning import loss_view, models
from . import knn

# A key within this squared distance of a stored one is that key (float32 rounding of a
# recomputed embedding or projection, not a different state).
SAME_KEY = 1e-10


class Slots(nn.Module):
    """Per-action key/value slots with least-recently-used replacement: what both stores
    share. `keys` [A, capacity, dim] and `values` [A, capacity] are parameters where the
    store is trained by gradient (`trainable`), buffers otherwise."""

    def __init__(self, actions: int, capacity: int, dim: int, trainable: bool):
        super().__init__()
        keys, values = torch.zeros(actions, capacity, dim), torch.zeros(actions, capacity)
        if trainable:
            self.keys, self.values = nn.Parameter(keys), nn.Parameter(values)
        else:
            self.register_buffer("keys", keys)
            self.register_buffer("values", values)
        self.register_buffer("size", torch.zeros(actions, dtype=torch.long))
        self.register_buffer("used", torch.zeros(actions, capacity, dtype=torch.long))
        self.register_buffer("clock", torch.zeros((), dtype=torch.long))
        self.actions, self.capacity = actions, capacity
        self.search = [knn.Neighbours() for _ in range(actions)]  # rebuilt, not saved

    # A checkpoint keeps the used slots only: a table of 10⁶ keys per action is 512 MB
    # allocated, and holds a few thousand entries after a few hundred CartPole episodes.
    PER_SLOT = ("keys", "values", "used")

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        used = int(self.size.max())
        for name in self.PER_SLOT:  # a copy: a saved view would carry the whole storage
            destination[prefix + name] = destination[prefix + name][:, :used].clone()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self.PER_SLOT:
            saved, full = state_dict.get(prefix + name), getattr(self, name)
            if isinstance(saved, torch.Tensor) and saved.dim() == full.dim() and \
                    saved.shape[0] == full.shape[0] and saved.shape[2:] == full.shape[2:] \
                    and saved.shape[1] <= full.shape[1]:
                padded = torch.zeros_like(full.detach())
                padded[:, :saved.shape[1]] = saved
                state_dict[prefix + name] = padded
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def untried(self, k: int) -> torch.Tensor:
        """[A] actions whose store holds fewer than k keys (see QGreedy)."""
        return self.size < k

    def tick(self) -> int:
        self.clock += 1
        return int(self.clock)

    def neighbours(self, action: int, queries: torch.Tensor, k: int, read: bool = True):
        """Squared distances and slots [N, K] of the nearest stored keys of one action,
        nearest first (an approximate search may come back short: distance inf), marked
        as read unless `read` is false."""
        stored = self.keys[action, :int(self.size[action])].detach()
        d2, ids = self.search[action].search(stored, queries, k)
        if read and ids.numel():
            self.used[action, ids[torch.isfinite(d2)]] = self.tick()
        return d2, ids

    @torch.no_grad()
    def insert(self, action: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store new keys: into free slots, then over the least recently used ones."""
        keys, values = keys[-self.capacity:], values[-self.capacity:]  # at most a store's worth
        size, n = int(self.size[action]), keys.shape[0]
        free = torch.arange(size, min(size + n, self.capacity))
        if free.numel() < n:  # evict: the oldest last-used clocks
            used = self.used[action, :size]
            oldest = used.topk(n - free.numel(), largest=False).indices
            free = torch.cat([free, oldest])
        self.keys.data[action, free] = keys
        self.values.data[action, free] = values
        self.search[action].changed(free)
        self.used[action, free] = self.tick()
        self.size[action] = min(size + n, self.capacity)

    @torch.no_grad()
    def write(self, action: int, keys: torch.Tensor, values: torch.Tensor, merge) -> None:
        """Write (key, value) pairs of one action: a key already stored (or repeated in
        this write) gets `merge(old, new)` of its values; the others are inserted."""
        if keys.shape[0] == 0:
            return
        keys, inverse = torch.unique(keys, dim=0, return_inverse=True)
        new = values.new_empty(keys.shape[0])
        if keys.shape[0] == values.shape[0]:  # no key repeats (continuous observations)
            new[inverse] = values
        else:  # repeats merge in the order they were written
            seen = torch.zeros(keys.shape[0], dtype=torch.bool)
            for i, j in enumerate(inverse.tolist()):
                new[j] = merge(new[j], values[i]) if seen[j] else values[i]
                seen[j] = True
        d2, ids = self.neighbours(action, keys, 1, read=False)
        if ids.numel():
            known = d2[:, 0] <= SAME_KEY
            slots = ids[known, 0]
            self.values.data[action, slots] = merge(self.values.data[action, slots], new[known])
            self.used[action, slots] = self.tick()  # written: recently used
            keys, new = keys[~known], new[~known]
        self.insert(action, keys, new)


MERGES = {
    "max": torch.maximum,  # MFEC: Q_EC(s, a) ← max(Q_EC(s, a), R)
    "replace": lambda old, new: new,
    "average": lambda old, new: (old + new) / 2,
}


class Table(nn.Module):
    """`table(actions, capacity, k, projection)`: MFEC's Q_EC, one table per action, keyed
    by a fixed Gaussian random projection of the observation."""

    def __init__(self, obs_dim: int, n_actions: int, actions: int = 2, capacity: int = 1000000,
                 k: int = 11, projection: int = 64):
        super().__init__()
        _check_actions(actions, n_actions)
        self.k = k
        # E‖xP‖² = ‖x‖²: entries N(0, 1/projection) (Johnson-Lindenstrauss)
        self.register_buffer("projection", torch.randn(obs_dim, projection) / projection ** 0.5)
        self.slots = Slots(actions, capacity, projection, trainable=False)

    def key(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float().reshape(-1, self.projection.shape[0]) @ self.projection

    @torch.no_grad()
    def estimate(self, keys: torch.Tensor, action: int) -> torch.Tensor:
        """Q_EC of each key for one action: its stored return where the key is stored,
        else the mean of its k nearest neighbours' (0 while the table is empty)."""
        d2, ids = self.slots.neighbours(action, keys, self.k)
        if ids.shape[1] == 0:
            return torch.zeros(keys.shape[0])
        values, found = self.slots.values[action][ids], torch.isfinite(d2).float()
        mean = (values * found).sum(1) / found.sum(1).clamp(min=1)
        return torch.where(d2[:, 0] <= SAME_KEY, values[:, 0], mean)

    def lookup(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q_EC(s, a) of observations [..., obs_dim] at their actions [...]."""
        return _per_action(self.estimate, self.key(obs), action, self.slots.actions)

    def untried(self) -> torch.Tensor:
        return self.slots.untried(self.k)

    def action_values(self, fields: dict) -> torch.Tensor:
        keys = self.key(fields["obs"])
        return torch.stack([self.estimate(keys, a) for a in range(self.slots.actions)], -1)

    def write(self, batch: dict, values: torch.Tensor, mode: str = "max") -> None:
        obs, action, values = _steps(batch, values)
        keys = self.key(obs)
        for a in range(self.slots.actions):
            chosen = action == a
            self.slots.write(a, keys[chosen], values[chosen], MERGES[mode])

    def clear(self) -> None:
        self.slots.size.zero_()


class DND(nn.Module):
    """`dnd(key, actions, capacity, k, delta)`: NEC's differentiable neural dictionary per
    action, keyed by the `embedding` head of the model `key` (held by reference: the model
    is the run's own part, checkpointed and trained as such)."""

    def __init__(self, key: nn.Module, actions: int = 2, capacity: int = 50000, k: int = 50,
                 delta: float = 1e-3, obs_dim: int | None = None, n_actions: int | None = None):
        super().__init__()
        _check_actions(actions, n_actions)
        self.__dict__["key_model"] = key  # not a submodule: its parameters are its own
        if list(key.inputs) != ["obs"]:  # a write embeds the stored observations alone
            raise TaskError(f"a dnd's key model reads only the observation (inputs = [obs]), "
                            f"not {list(key.inputs)}")
        self.head = next(n for n, kind in key.heads.kinds.items() if kind == "embedding")
        self.k, self.delta = k, delta
        dim = key.heads.layers[self.head].out_features
        self.slots = Slots(actions, capacity, dim, trainable=True)

    def embed(self, fields: dict) -> torch.Tensor:
        return self.key_model.apply(None, fields)[self.head]

    def lookup(self, h: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q(s, a) of each embedding h [..., dim] at its action [...]: Σ w_i v_i over the k
        nearest keys of that action's dictionary, w ∝ 1/(‖h − h_i‖² + δ); differentiable in
        h and in the neighbours' keys and values. 0 where the dictionary is empty."""
        return _per_action(self.estimate, h, action, self.slots.actions)

    def estimate(self, h: torch.Tensor, action: int) -> torch.Tensor:
        _, ids = self.slots.neighbours(action, h, self.k)
        if ids.shape[1] == 0:
            return torch.zeros(h.shape[0])
        if torch.is_grad_enabled():  # a gradient step will move these keys
            self.slots.search[action].changed(ids)
        keys = self.slots.keys[action][ids]  # [N, K, dim]
        weights = 1.0 / (((h.unsqueeze(1) - keys) ** 2).sum(-1) + self.delta)
        weights = weights / weights.sum(1, keepdim=True)
        return (weights * self.slots.values[action][ids]).sum(1)

    def untried(self) -> torch.Tensor:
        return self.slots.untried(self.k)

    @torch.no_grad()
    def action_values(self, fields: dict) -> torch.Tensor:
        h = self.embed(fields)
        return torch.stack([self.estimate(h, a) for a in range(self.slots.actions)], -1)

    @torch.no_grad()
    def write(self, batch: dict, values: torch.Tensor, alpha: float = 0.1) -> None:
        obs, action, values = _steps(batch, values)
        h = self.embed({"obs": obs})
        for a in range(self.slots.actions):
            chosen = action == a
            self.slots.write(a, h[chosen], values[chosen],
                             lambda old, new: old + alpha * (new - old))

    def clear(self) -> None:
        self.slots.size.zero_()


def _check_actions(actions: int, n_actions: int | None) -> None:
    if n_actions is not None and actions != n_actions:
        raise TaskError(f"the memory keeps values of {actions} actions, but the tasks it acts "
                        f"in have {n_actions}: declare it with `actions = {n_actions}`")


def _per_action(estimate, keys: torch.Tensor, action: torch.Tensor, actions: int):
    """estimate(keys of the rows taking a, a) for every action a, in the rows' order."""
    shape, keys = action.shape, keys.reshape(-1, keys.shape[-1])
    action = action.reshape(-1).long()
    out = torch.zeros(keys.shape[0])
    for a in range(actions):
        rows = (action == a).nonzero().squeeze(-1)
        if rows.numel():
            out = out.index_put((rows,), estimate(keys[rows], a))
    return out.reshape(shape)


def _steps(batch: dict, values: torch.Tensor):
    """The real steps of a trajectory batch as flat (obs, action, value) rows."""
    obs, action = batch["obs"], batch["action"]
    values = values.expand(action.shape) if values.dim() < action.dim() else values
    valid = batch.get("valid")
    if valid is not None:
        keep = valid.bool()
        return obs[keep], action[keep], values[keep].detach()
    return (obs.reshape(-1, *obs.shape[action.dim():]), action.reshape(-1),
            values.reshape(-1).detach())


def write(memory, batch: dict, objective, **rule) -> None:
    """`update M by table_write(mode) | dnd_write(alpha) on VALUES over DATA`: the values
    `objective(batch, view)` gives from the data alone, written by the memory's own rule
    (the checker holds each rule to its memory kind)."""
    memory.write(batch, objective(batch, loss_view.LossView.of_data(batch)), **rule)


class QGreedy:
    """`q_greedy(values, epsilon)`: a Policy (see rollout.Policy) acting ε-greedily on action
    values — a table's or dictionary's estimates, or a model's `q_values` head. Ties among
    the best actions are broken uniformly; `v` records max_a Q(s, a), which an n-step
    return bootstraps from.

    An episodic store's actions with fewer than k keys (`untried()`) are the greedy
    choice until they have them: their estimate (0, or the mean of a few far keys) would
    otherwise lose to the first action that earned a positive return, and with ε of 0.005
    the others would almost never be tried (MFEC on CartPole then pushes one way for
    ever, 9.4 steps per episode)."""

    def __init__(self, values, epsilon: float = 0.0):
        self.values, self.epsilon = values, float(epsilon)

    def initial_state(self, batch: int):
        return None

    @torch.no_grad()
    def step(self, fields: dict, state, params: dict | None = None):
        q = self.values.action_values(fields)
        best = (q == q.max(-1, keepdim=True).values).float()
        untried = getattr(self.values, "untried", None)
        if untried is not None and bool(untried().any()):
            best = untried().float().expand_as(q)
        probs = (1 - self.epsilon) * best / best.sum(-1, keepdim=True) + \
            self.epsilon / q.shape[-1]
        return {"pi": models.Categorical(probs.log()), "v": q.max(-1).values}, state


def lookup(memory, key: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """`lookup(M, key, action)` in a loss: the memory's value of `key` at `action`."""
    return memory.lookup(key, action)
