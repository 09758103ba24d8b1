"""The standard library: .mrl modules in stdlib/, parsed and checked once per process."""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import tempfile
from functools import lru_cache
from pathlib import Path

from ..diagnostics import CompileError, Diagnostic
from ..resources import grammar_path, stdlib_dir

_PACKAGE = Path(__file__).resolve().parent.parent
# The checked stdlib depends on these sources; any change invalidates the cache.
_INPUTS = ("registry.py", "diagnostics.py", "spans.py",
           *sorted(str(p.relative_to(_PACKAGE)) for p in (_PACKAGE / "front").rglob("*.py")))


@lru_cache(maxsize=1)
def module_names() -> list[str]:
    return sorted(p.stem for p in stdlib_dir().glob("*.mrl"))


_partial: dict | None = None  # the modules checked so far, while the cache is being built


def load(name: str):
    """The checked library module `name` (a `checker.Checked`), or None if none exists."""
    if _partial is not None:  # building: a module's imports are checked on demand
        return _check_library(name, _partial) if name in module_names() else None
    return _all().get(name)


@lru_cache(maxsize=1)
def _all() -> dict:
    """Every stdlib module, checked. Parsing them is most of a cold `check`, so the result
    is pickled in the user's cache directory, keyed by the hash of everything it depends on."""
    files = [stdlib_dir() / f"{n}.mrl" for n in module_names()]
    digest = hashlib.sha256()
    for f in files + [grammar_path()] + [_PACKAGE / n for n in _INPUTS]:
        digest.update(f.name.encode() + f.read_bytes())
    cache = _cache_dir() / f"stdlib-{digest.hexdigest()[:24]}.pickle"
    try:
        with open(cache, "rb") as fh:
            if _private(cache.parent, fh.fileno()):  # a pickle only this user could write
                return pickle.load(fh)
    except Exception:  # noqa: BLE001 - missing, stale or unreadable: rebuild it
        pass
    global _partial
    _partial = checked = {}
    try:
        for n in module_names():
            _check_library(n, checked)
    finally:
        _partial = None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=cache.parent)
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(checked, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home only costs speed
    return checked


def _private(folder: Path, fd: int) -> bool:
    """Whether the cache file and its folder belong to this user and nobody else can write
    them: unpickling runs code, so only a file the user alone controls is read."""
    uid = os.getuid()
    for info in (os.stat(folder), os.fstat(fd)):
        if info.st_uid != uid or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return False
    return stat.S_ISREG(os.fstat(fd).st_mode)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "metadsl"


def _check_library(name: str, checked: dict):
    """Check one library module, its imports first. A broken standard library is our bug,
    not the user's: it surfaces as E0901."""
    if name in checked:
        return checked[name]
    from .check import check_module  # the checker imports this module too
    from .parser import parse

    path = stdlib_dir() / f"{name}.mrl"
    source = path.read_text(encoding="utf-8")
    try:
        result = check_module(parse(source, str(path)), source, str(path), STANDARD)
    except CompileError as e:
        raise CompileError([Diagnostic("E0901", f"the standard library module '{name}' does not "
                                       f"check: {d.message} ({path.name}:{d.span.line})")
                            for d in e.diagnostics]) from None
    if result.module.kind != "library":
        raise CompileError([Diagnostic("E0901", f"stdlib/{name}.mrl is not a library")])
    for info in result.funcs.values():
        if info.module == "":
            info.module = name  # declared here; imports into a spec keep this owner
    checked[name] = result
    return result


class Library:
    """The standard library as the checker sees it (handed to it, so the checker does not
    import this module): the module names, and each module checked."""

    @staticmethod
    def names() -> list[str]:
        return module_names()

    @staticmethod
    def load(name: str):
        return load(name) if name in module_names() else None


STANDARD = Library()
