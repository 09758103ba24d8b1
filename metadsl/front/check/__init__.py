"""Phase 2: AST → checked spec, or diagnostics.

Three passes over the module, one module each:
  1. declare (declare.py): every top-level name, imports of stdlib modules, duplicates;
  2. type (types.py, scope.py): every constructor call against the registry, every
     function body and loop statement, every expression's type, and which
     heads/models/meta-parameters each expression refers to (its `refs`);
  3. structure (structure.py): what the loops can honour and reach: memory reset scopes,
     RL²-style inputs, meta-parameter reachability, differentiability of `through`,
     rule/target kinds, unused declarations and settings.
Errors are collected, not raised one by one: a run reports all it can.
"""

from __future__ import annotations

from .. import ast as A
from ... import registry as R
from ...diagnostics import CompileError, Diagnostic
from .declare import Declarations
from .facts import Checked, FuncInfo, LoopInfo, ModelInfo, bind_args, show
from .structure import Structure
from .types import Types

__all__ = ["Checked", "Checker", "FuncInfo", "LoopInfo", "ModelInfo", "bind_args",
           "check_module", "show"]


class _NoLibrary:
    """No modules to import (a checker handed no library)."""

    @staticmethod
    def names() -> list[str]:
        return []

    @staticmethod
    def load(name: str):
        return None


def check_module(module: A.Module, source: str, file: str = "<input>",
                 library=_NoLibrary()) -> Checked:
    """Check `module`; its imports resolve in `library` (`names()`, `load(name)`: the
    standard library, front/stdlib.py's STANDARD)."""
    return Checker(module, source, file, library).run()


class Checker(Declarations, Types, Structure):
    def __init__(self, module: A.Module, source: str, file: str, library):
        self.module, self.source, self.file, self.library = module, source, file, library
        self.diags: list[Diagnostic] = []
        self.tasks: dict[str, tuple[A.TasksDecl, R.Entry]] = {}
        self.models: dict[str, ModelInfo] = {}
        self.memories: dict[str, A.MemoryDecl] = {}
        self.metas: dict[str, A.MetaDecl] = {}
        self.funcs: dict[str, FuncInfo] = {}
        self.loops: dict[str, LoopInfo] = {}
        self.blocks: dict[str, A.SettingsBlock] = {}
        self.declared: dict[str, A.Span] = {}
        # stored columns (`store DATA in BUFFER with {NAME: EXPR}`): name -> (store, expr)
        self.columns: dict[str, tuple[A.Store, A.Expr]] = {}
        self.imported: dict[str, A.Name] = {}  # imported function -> the import's name node
        self.used: set[str] = set()  # top-level names referred to anywhere
        # (loop, statement, rule, targets, refs, through-loop) of every adapt/update
        self.pending: list[tuple] = []
        self.defaulted: set[str] = set()  # memory scopes no `memory` line wrote
        self.evaluated: str | None = None  # the inner loop `evaluate` measures
        self.broken: set[str] = set()  # declarations with errors: skip checks that build on them

    # -- entry point --------------------------------------------------------------------

    def run(self) -> Checked:
        self.declare()
        self.type_declarations()
        self.type_loops()
        if self.module.kind == "spec":
            self.check_structure()
            self.check_unused()
        if self.diags:
            raise CompileError(sorted(self.diags, key=lambda d: (d.span.start, d.code)))
        return Checked(self.module, self.source, self.file, self.tasks, self.models,
                       self.memories, self.metas, self.funcs, self.loops, self.blocks,
                       self.columns, evaluated=self.evaluated,
                       evaluation=self.evaluation_kind(), defaulted=frozenset(self.defaulted))

    def error(self, code: str, message: str, span: A.Span, hint: str | None = None) -> None:
        self.diags.append(Diagnostic(code, message, span, hint, self.file))

