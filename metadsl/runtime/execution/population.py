"""Maps over a generation's members: one generated body function, run by an execution.

`body(state, instances, params)` is one member's run (its inner loop and fitness) on task
instances, with `params` its θ_i, one row per instance; it returns ({result: value per
row}, env_steps). Each member draws from its own key, (seed, phase, iteration, "member",
i) — or, with the rule's `common_draws`, every member from (seed, phase, iteration,
"member") — and all act on the same instances (common random numbers). How members are
grouped never changes a number: one after another here (`sequential`), as Ray tasks
(`population_ray`), or stacked as the rows of one call (`batched`: the instances repeated
once per member, each member's rows drawing from its own key through `keys.Streams`).
Results come back in member order, each the mean over the member's rows.
"""

from __future__ import annotations

import functools

import torch

from . import keys
from ..errors import TaskError


def member(body, generation, state, instances, rows: int, path: tuple,
           i: int) -> tuple[dict, int]:
    """Member i's run: its own key under `path` (or the generation's, with common draws),
    its own θ_i on `rows` tasks. The key is a one-member `Streams`, so a member draws the
    same numbers alone as in a batch of members."""
    streams = keys.Streams([keys.key(*generation.draws(path, i))])
    results, steps = body(state.replace(gen=streams), instances, generation.member(i, rows))
    return {n: torch.as_tensor(v, dtype=torch.float32).mean() for n, v in results.items()}, steps


def sequential(body, generation, state, instances, rows: int, path: tuple) -> tuple[dict, int]:
    """Every member in turn, in this process."""
    return gather([member(body, generation, state, instances, rows, path, i)
                   for i in range(generation.population)])


def batched(body, generation, state, instances, rows: int, path: tuple) -> tuple[dict, int]:
    """Every member at once: the instances repeated once per member, the members' θ_i
    stacked as rows, each member's rows drawing from its own key."""
    n = generation.population
    streams = keys.Streams([keys.key(*generation.draws(path, i)) for i in range(n)])
    members = [generation.member(i, rows) for i in range(n)]
    params = {m: {k: torch.cat([p[m][k] for p in members]) for k in named}
              for m, named in members[0].items()}
    results, steps = body(state.replace(gen=streams), tile(instances, n), params)
    return {k: torch.as_tensor(v, dtype=torch.float32).reshape(n, -1).mean(1)
            for k, v in results.items()}, steps


def gather(outcomes: list[tuple[dict, int]]) -> tuple[dict, int]:
    """The members' results stacked in member order, and their environment steps."""
    names = outcomes[0][0].keys()
    results = {n: torch.stack([r[n] for r, _ in outcomes]) for n in names}
    return results, sum(steps for _, steps in outcomes)


@functools.singledispatch
def tile(instances, n: int):
    """A batch of task instances repeated n times, in blocks (member i's rows are the
    i-th block); registered by each task family's batch class that can be."""
    raise TaskError(f"members stacked as rows (execution = batched) on "
                    f"{type(instances).__name__} tasks are not built; use execution = "
                    "sequential")
