"""The one driver: runs the phases in order, each dumpable, each guarded.

    read → decode → parse (AST) → check → loop program → passes → Python module
                                        ↘ loop graph (drawings)

A phase either returns its result or raises CompileError with diagnostics. Anything else
escaping a phase is our bug: it becomes E0901 naming the phase, never a traceback.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, fields, is_dataclass, replace

from .front import ast as A
from .diagnostics import CompileError, Diagnostic, NotBuilt
from .front.parser import MAX_BYTES

@dataclass
class FrontEnd:
    file: str
    source: str
    module: A.Module
    checked: object | None = None  # checker.Checked
    ir: object | None = None  # the loop graph drawn by `graph` (networkx)
    program: object | None = None  # middle.program.Program, after the passes


def guarded(phase: str, fn, *args):
    try:
        return fn(*args)
    except (CompileError, NotBuilt):
        raise
    except RecursionError:
        raise CompileError([Diagnostic("E0003", f"the spec is nested too deeply for the {phase} "
                                       "phase", hint="split long expressions with `def`")]) from None
    except Exception as e:  # noqa: BLE001 - the one place internal errors are turned into E0901
        raise CompileError([Diagnostic("E0901", f"internal compiler error in phase {phase}: "
                                       f"{type(e).__name__}: {e}",
                                       hint="please report this with the spec that caused it")]) \
            from None


def read(path: str) -> bytes:
    """A spec file's bytes: a regular file only (a FIFO or device would block or never
    end), read up to one byte past the size limit, which decode() then reports."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without a writer
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CompileError([Diagnostic("E0001", f"{path} is not a regular file",
                                               hint="a spec is a .mrl text file", file=path)])
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read(MAX_BYTES + 1)
        finally:
            os.close(fd)
    except FileNotFoundError:
        msg = f"no such file: {path}"
    except IsADirectoryError:
        msg = f"{path} is a directory, not a spec"
    except PermissionError:
        msg = f"permission denied: {path}"
    except OSError as e:
        msg = f"cannot read {path}: {e.strerror or e}"
    raise CompileError([Diagnostic("E0001", msg, file=path)])


def front_end(path: str, until: str = "check", data: bytes | None = None) -> FrontEnd:
    """Run the phases up to `until` on the spec at `path`: ast | check | program (the
    loop program after its passes) | ir (also the loop graph drawn from it)."""
    from .front.parser import decode, parse

    raw = read(path) if data is None else data
    source = guarded("decode", decode, raw, path)
    try:
        module = guarded("parse", parse, source, path)
        result = FrontEnd(path, source, module)
        if until == "ast":
            return result
        from .front.check import check_module
        from .front.stdlib import STANDARD

        result.checked = guarded("check", check_module, module, source, path, STANDARD)
        if until == "check":
            return result
        from .middle import build, passes

        program = guarded("program", build.build, result.checked)
        result.program = guarded("passes", passes.run_all, program)
        if until == "program":
            return result
        from .middle import graph

        result.ir = guarded("graph", graph.build, result.program)
        return result
    except CompileError as e:  # every diagnostic names this file; the renderer needs its text
        e.diagnostics = [replace(d, file=path) if d.file == "<input>" else d
                         for d in e.diagnostics]
        e.source = source
        raise


def dump_ast(module: A.Module) -> str:
    def plain(node):
        if isinstance(node, A.Span):
            return f"{node.line}:{node.column}-{node.end_line}:{node.end_column}"
        if is_dataclass(node):
            out = {"node": type(node).__name__}
            out.update({f.name: plain(getattr(node, f.name)) for f in fields(node)})
            return out
        if isinstance(node, tuple):
            return [plain(x) for x in node]
        return node

    return json.dumps(plain(module), indent=1, ensure_ascii=False)


def compile_module(path: str, data: bytes | None = None) -> str:
    """The spec's generated training module; NotBuilt names what the back end lacks."""
    result = front_end(path, "program", data)
    from .backend.lower import lower

    try:
        return guarded("lower", lower, result.program)
    except CompileError as e:
        e.diagnostics = [replace(d, file=path) if d.file == "<input>" else d
                         for d in e.diagnostics]
        e.source = result.source
        raise
