"""Maps over a generation's members: one generated body function, run by an execution.

`body(state, params)` is one member's run (its inner loop and fitness); it returns
({result: value}, env_steps). Each member draws from its own key, (seed, phase,
iteration, "member", i) — or, with the rule's `common_draws`, every member from (seed,
phase, iteration, "member") — and acts with its own θ_i (one row per task of the batch), so
how members are grouped — one after another here, on Ray workers — never changes a
number. Results come back in member order.
"""

from __future__ import annotations

import torch

from . import keys


def member(body, generation, state, rows: int, path: tuple, i: int) -> tuple[dict, int]:
    """Member i's run: its own key under `path` (or the generation's, with common draws),
    its own θ_i on `rows` tasks."""
    return body(state.replace(gen=keys.key(*generation.draws(path, i))),
                generation.member(i, rows))


def sequential(body, generation, state, rows: int, path: tuple) -> tuple[dict, int]:
    """Every member in turn, in this process."""
    return gather([member(body, generation, state, rows, path, i)
                   for i in range(generation.population)])


def gather(outcomes: list[tuple[dict, int]]) -> tuple[dict, int]:
    """The members' results stacked in member order, and their environment steps."""
    names = outcomes[0][0].keys()
    results = {n: torch.stack([torch.as_tensor(r[n], dtype=torch.float32) for r, _ in outcomes])
               for n in names}
    return results, sum(steps for _, steps in outcomes)
