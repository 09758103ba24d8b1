"""The runtime generated modules import, laid out by concern: `tasks/` (task families,
the gymnasium adapter, their baselines and scores), `learning/` (models, ops, losses'
views, rules, adaptation, meta-parameters), `memory/` (replay, episodic stores, kNN),
`execution/` (rollouts, random keys), `runs/` (run folder, session, evaluation) and
`errors.py` below them all.

Modules generated before this layout import `from metadsl.runtime import rollout, ...`;
those names resolve here, lazily, so such a train.py still runs."""

from __future__ import annotations

import importlib

from ..resources import runtime_modules


def __getattr__(name: str):
    package = runtime_modules().get(name)
    if package is None:
        raise AttributeError(f"module 'metadsl.runtime' has no attribute {name!r}")
    return importlib.import_module(f"{package}.{name}")
