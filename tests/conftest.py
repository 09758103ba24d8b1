"""Shared helpers. Golden files are rewritten with UPDATE_GOLDEN=1 (then review the diff)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.mrl"))
STDLIB = sorted((ROOT / "stdlib").glob("*.mrl"))
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def metadsl(*args: str, env: dict | None = None, cwd: Path = ROOT,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """The command line, as a user runs it, in a process of its own."""
    return subprocess.run([sys.executable, "-m", "metadsl.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def golden(path: Path, actual: str) -> None:
    """Compare with a golden file, or write it when UPDATE_GOLDEN=1."""
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"missing golden {path.name}; run with UPDATE_GOLDEN=1 and review it")
        path.write_text(actual, encoding="utf-8")
        return
    assert actual == path.read_text(encoding="utf-8")


def make_tasks(source: str, **args):
    """A task family by its registry name, through the runtime class it is bound to."""
    import importlib

    from metadsl import registry
    from metadsl.resources import runtime_modules

    module, name = registry.REGISTRY[source].impl.split(".")
    package = runtime_modules()[module]
    return getattr(importlib.import_module(f"{package}.{module}"), name)(**args)


@pytest.fixture
def at_root(monkeypatch):
    """Run with the repository as working directory, so paths in messages are relative."""
    monkeypatch.chdir(ROOT)
