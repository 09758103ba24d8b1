"""Replay buffers behind `memory NAME = buffer(capacity)`: `store DATA in NAME` writes the
real steps of collected trajectories as transitions, `collect N samples from NAME` draws N
of them. As in TorchRL, a buffer is a storage (one tensor per field, allocated at the first
write from the fields' shapes), a writer (round-robin: the oldest transitions are
overwritten first) and a sampler (uniform, with replacement, from the run's generator).

A sample is a batch like a rollout's, time-major with one step: every field is [1, N],
so a loss and `rules.minimize` (which splits minibatches along dim 1) read it as they read
trajectories. `done` is stored as collected: 1 where the return stops at that step.
`collect N steps from NAME` reads the last N steps instead, in the order they happened
(`recent`: EPG's window, which a temporal convolution reads as a sequence).

A buffer reset per task holds one stream per task instance (`per_task`): its storage is
time-major, [capacity, tasks, ...], `capacity` steps for each task; a uniform sample draws
N time steps (the same for every task), the tasks' rows contiguous as the inner loop's
vmap expects, and the recent steps are [N, tasks].
"""

from __future__ import annotations

import torch
from torch import nn

from ...registry import TRANSITION_FIELDS as FIELDS  # enough for one-step targets
from ..errors import TaskError
from ..learning import loss_view


class TensorStorage:
    """Fixed-capacity rows of each field; allocated at the first write."""

    def __init__(self, capacity: int):
        self.capacity, self.fields = capacity, {}

    def allocate(self, rows: dict) -> None:
        self.fields = {k: torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype)
                       for k, v in rows.items()}

    def set(self, index: torch.Tensor, rows: dict) -> None:
        if not self.fields:
            self.allocate(rows)
        for k, v in rows.items():
            self.fields[k][index] = v

    def get(self, index: torch.Tensor) -> dict:
        return {k: v[index] for k, v in self.fields.items()}


class RoundRobinWriter:
    """Writes at the cursor, wrapping around: the oldest rows are replaced first."""

    def __init__(self):
        self.cursor = self.size = 0

    def indices(self, n: int, capacity: int) -> torch.Tensor:
        n = min(n, capacity)
        index = (self.cursor + torch.arange(n)) % capacity
        self.cursor = (self.cursor + n) % capacity
        self.size = min(self.size + n, capacity)
        return index


class UniformSampler:
    def indices(self, n: int, size: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randint(size, (n,), generator=gen)


class RecentSampler:
    """The last n rows written, oldest first."""

    def indices(self, n: int, size: int, cursor: int, capacity: int) -> torch.Tensor:
        n = min(n, size)
        return (cursor - n + torch.arange(n)) % capacity


class Buffer(nn.Module):
    """`buffer(capacity)`: a replay buffer of transitions (see the module docstring)."""

    def __init__(self, capacity: int = 100000, per_task: bool = False):
        super().__init__()
        self.storage, self.per_task = TensorStorage(capacity), per_task
        self.writer, self.sampler = RoundRobinWriter(), UniformSampler()

    def __len__(self) -> int:
        return self.writer.size

    def recent(self, n: int) -> dict:
        """The last n steps in order, [n, tasks, ...] per task (fewer if fewer are stored);
        one stream [n, 1, ...] for a shared buffer."""
        if len(self) == 0:
            raise RuntimeError("reading from an empty replay buffer")
        rows = self.storage.get(RecentSampler().indices(n, len(self), self.writer.cursor,
                                                        self.storage.capacity))
        return rows if self.per_task else {k: v.unsqueeze(1) for k, v in rows.items()}

    def extend(self, batch: dict, columns: dict | None = None) -> None:
        """Store the real steps of trajectories [T, B, ...] (`valid` where padded), with
        `columns`: name → `fn(batch, view)`, values computed over the whole trajectories
        when they are stored (an n-step return), which a transition alone could not give."""
        fields = {k: batch[k] for k in FIELDS if k in batch}
        view = loss_view.LossView.of_data(batch)
        fields.update({name: fn(batch, view) for name, fn in (columns or {}).items()})
        valid = batch.get("valid")
        keep = torch.ones(batch["done"].shape, dtype=torch.bool) if valid is None \
            else valid.bool()
        if self.per_task:  # one stream per task: whole time steps, in order
            if not bool(keep.all()):
                raise TaskError("a buffer reset per task stores whole time steps; these "
                                "trajectories are padded (episodes of different lengths)")
            rows = {k: v.detach().expand(keep.shape + v.shape[keep.dim():])
                    for k, v in fields.items()}
            if self.storage.fields and next(iter(self.storage.fields.values())).shape[1] != \
                    keep.shape[1]:
                self.storage.fields = {}  # another batch of tasks: a fresh stream each
            rows = {k: v[-self.storage.capacity:] for k, v in rows.items()}
            n = keep[-self.storage.capacity:].shape[0]
            self.storage.set(self.writer.indices(n, self.storage.capacity), rows)
            return
        rows = {k: v.detach().expand(keep.shape + v.shape[keep.dim():])[keep]
                for k, v in fields.items()}
        rows = {k: v[-self.storage.capacity:] for k, v in rows.items()}
        n = next(iter(rows.values())).shape[0]
        self.storage.set(self.writer.indices(n, self.storage.capacity), rows)

    def sample(self, n: int, gen: torch.Generator) -> dict:
        """N transitions drawn uniformly, as a one-step batch [1, N, ...]."""
        if len(self) == 0:
            raise RuntimeError("sampling from an empty replay buffer")
        if self.per_task:  # n steps of each task's own stream, the tasks' rows contiguous
            steps = self.storage.get(self.sampler.indices(n, len(self), gen))  # [n, tasks]
            return {k: v.movedim(0, 1).reshape(1, -1, *v.shape[2:]) for k, v in steps.items()}
        rows = self.storage.get(self.sampler.indices(n, len(self), gen))
        return {k: v.unsqueeze(0) for k, v in rows.items()}

    def clear(self) -> None:
        self.writer = RoundRobinWriter()

    def state_dict(self, *args, **kwargs) -> dict:
        return {"fields": dict(self.storage.fields), "cursor": self.writer.cursor,
                "size": self.writer.size}

    def load_state_dict(self, saved: dict, strict: bool = True):
        self.storage.fields = dict(saved["fields"])
        self.writer.cursor, self.writer.size = int(saved["cursor"]), int(saved["size"])
