"""Random keys: every draw of a run comes from a generator named by where it is."""

from __future__ import annotations

import hashlib

import torch


def key(seed: int, *path) -> torch.Generator:
    """The random key of one place in a run — (seed, phase, iteration), and below it a task
    or population member's index — as a generator seeded by a hash of that path. What an
    iteration draws is fixed by where it is, not by what ran before it: a resumed run, a
    baseline retrained on other tasks, or a worker given the path draws exactly what the
    uninterrupted batch would."""
    digest = hashlib.blake2b(repr((int(seed), *path)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
