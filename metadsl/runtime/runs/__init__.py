"""A run: its folder, settings, progress, checkpoints and evaluation.

`metadsl.runtime.runs.NAME` also resolves NAME in `session` (and `key` in
`execution.keys`), where modules generated before the runtime was laid out by concern
found them."""

from __future__ import annotations

import importlib


def __getattr__(name: str):
    # imported by name: `from . import session` would ask this very function for it
    session = importlib.import_module(f"{__name__}.session")
    keys = importlib.import_module("metadsl.runtime.execution.keys")
    for module in (session, keys):
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module 'metadsl.runtime.runs' has no attribute {name!r}")
