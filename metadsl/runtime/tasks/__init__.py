"""Task families as batched environments, their baselines and scores.

`metadsl.runtime.tasks.NAME` also resolves NAME in `families`, where modules generated
before the runtime was laid out by concern found their task classes."""

from __future__ import annotations

import importlib


def __getattr__(name: str):
    # imported by name: `from . import families` would ask this very function for it
    families = importlib.import_module(f"{__name__}.families")
    try:
        return getattr(families, name)
    except AttributeError:
        raise AttributeError(f"module 'metadsl.runtime.tasks' has no attribute {name!r}") \
            from None
