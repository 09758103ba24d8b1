"""The standard library: .mrl modules in stdlib/, parsed and checked once per process."""

from __future__ import annotations

from functools import lru_cache

from . import ast as A
from .diagnostics import CompileError, Diagnostic
from .resources import stdlib_dir


def module_names() -> list[str]:
    return sorted(p.stem for p in stdlib_dir().glob("*.mrl"))


@lru_cache(maxsize=None)
def load(name: str):
    """The checked library module `name` (a `checker.Checked`), or None if none exists.

    A broken standard library is our bug, not the user's: it surfaces as E0901."""
    from .checker import check_module  # the checker imports this module too
    from .parser import parse

    path = stdlib_dir() / f"{name}.mrl"
    if not path.is_file():
        return None
    source = path.read_text(encoding="utf-8")
    try:
        checked = check_module(parse(source, str(path)), source, str(path))
    except CompileError as e:
        raise CompileError([Diagnostic("E0901", f"the standard library module '{name}' does not "
                                       f"check: {d.message} ({path.name}:{d.span.line})")
                            for d in e.diagnostics]) from None
    if checked.module.kind != "library":
        raise CompileError([Diagnostic("E0901", f"stdlib/{name}.mrl is not a library")])
    for info in checked.funcs.values():
        if info.module == "":
            info.module = name  # declared here; imports into a spec keep this owner
    return checked


def function(name: str, module: str) -> A.FuncDecl | None:
    checked = load(module)
    return checked.funcs.get(name).decl if checked and name in checked.funcs else None
