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


class Streams:
    """One generator per block of rows: a batch whose rows are population members' (each
    `rows` long, in member order) draws each member's rows from that member's own key, so
    a batched generation draws exactly what its members draw one after another."""

    def __init__(self, gens: list[torch.Generator]):
        self.gens = list(gens)

    def blocks(self, n: int) -> int:
        if n % len(self.gens):
            raise ValueError(f"{n} rows do not split into {len(self.gens)} members' blocks")
        return n // len(self.gens)


def randn(shape, gen) -> torch.Tensor:
    """Standard normal draws [rows, ...] from a generator or from per-member streams."""
    if isinstance(gen, Streams):
        block = gen.blocks(shape[0])
        return torch.cat([torch.randn((block, *shape[1:]), generator=g) for g in gen.gens])
    return torch.randn(shape, generator=gen)


def randint(high: int, shape, gen) -> torch.Tensor:
    if isinstance(gen, Streams):
        block = gen.blocks(shape[0])
        return torch.cat([torch.randint(high, (block, *shape[1:]), generator=g)
                          for g in gen.gens])
    return torch.randint(high, shape, generator=gen)


def multinomial(probs: torch.Tensor, gen) -> torch.Tensor:
    """One category per row of `probs` [rows, n]. Under per-member streams, by the inverse
    CDF of one uniform per row: a population steps every member's rows at once, and
    torch.multinomial costs ~47 µs a call against ~5 µs for a uniform draw."""
    if isinstance(gen, Streams):
        u = torch.cat([torch.rand(gen.blocks(probs.shape[0]), generator=g) for g in gen.gens])
        # `<=`: a category of probability 0 spans an empty interval and is never drawn
        below = (probs.cumsum(-1) <= u[:, None]).sum(-1, keepdim=True)
        return below.clamp(max=probs.shape[-1] - 1)
    return torch.multinomial(probs, 1, generator=gen)
