"""Pass 1, declare: every top-level name, with duplicates and built-in collisions; imports
resolve against the checked standard library."""

from __future__ import annotations

from .. import ast as A
from ... import registry as R
from ...diagnostics import did_you_mean, one_of
from .facts import FuncInfo, LoopInfo, ModelInfo, declared_heads


class Declarations:
    """The declaring pass, a part of the Checker (it shares the checker's tables)."""

    def declare(self) -> None:
        for decl in self.module.decls:
            if self.module.kind == "library" and not isinstance(decl, (A.Import, A.FuncDecl)):
                self.error("E0214", "a library holds only imports, `def` and `loss`", decl.span)
                continue
            if isinstance(decl, A.Import):
                self.declare_import(decl)
            elif isinstance(decl, A.SettingsBlock):
                if decl.kind in self.blocks:
                    first = self.blocks[decl.kind].span.line
                    self.error("E0211", f"a second `{decl.kind}` block (the first is on line "
                               f"{first})", decl.span, hint="merge the two blocks")
                else:
                    self.blocks[decl.kind] = decl
            else:
                name = decl.name if not isinstance(decl, A.MemoryDecl) else None
                if isinstance(decl, A.MemoryDecl):
                    if decl.value is None:  # memory of an existing thing: not a new name
                        self.memories[decl.target.text] = decl
                        continue
                    name = A.Name(decl.target.parts[0], decl.target.span)
                if not self.declare_name(name, decl):
                    continue
                if isinstance(decl, A.TasksDecl):
                    self.tasks[name.id] = (decl, None)
                elif isinstance(decl, A.ModelDecl):
                    self.models[name.id] = ModelInfo(decl, None)
                elif isinstance(decl, A.MemoryDecl):
                    self.memories[name.id] = decl
                elif isinstance(decl, A.MetaDecl):
                    self.metas[name.id] = decl
                elif isinstance(decl, A.FuncDecl):
                    self.funcs[name.id] = FuncInfo(decl, "")
                elif isinstance(decl, A.LoopDecl):
                    self.loops[name.id] = LoopInfo(decl)
        self.declare_columns()

    def declare_columns(self) -> None:
        """Names of stored columns: fields every loss may read, unique in the spec; every
        store into one buffer stores the same ones."""
        first: dict[str, A.Store] = {}  # buffer -> its first store
        for info in self.loops.values():
            for stmt in info.decl.body:
                if not isinstance(stmt, A.Store):
                    continue
                names = lambda s: sorted(n.id for n, _ in getattr(s.columns, "items", ()))
                earlier = first.setdefault(stmt.buffer.id, stmt)
                if names(earlier) != names(stmt):
                    self.error("E0413", f"this store into '{stmt.buffer.id}' has columns "
                               f"[{', '.join(names(stmt))}], the one on line "
                               f"{earlier.span.line} [{', '.join(names(earlier))}]", stmt.span,
                               hint="store the same columns, or into another buffer")
                if not isinstance(stmt.columns, A.DictExpr):
                    continue
                for name, expr in stmt.columns.items:
                    if name.id in self.columns and self.columns[name.id][0] is not stmt \
                            and self.columns[name.id][0].buffer.id == stmt.buffer.id:
                        continue  # the same column of another store into this buffer
                    if name.id in self.columns:
                        line = self.columns[name.id][0].span.line
                        self.error("E0210", f"column '{name.id}' is already stored on line "
                                   f"{line}", name.span, hint="rename one of them")
                    elif name.id in self.declared or name.id in R.REGISTRY or \
                            name.id in R.TRAJECTORY_FIELDS or name.id in self.funcs or \
                            name.id in R.HEAD_SLOTS or name.id in self.head_names():
                        self.error("E0210", f"'{name.id}' is already a name; a stored column "
                                   "needs its own", name.span, hint="choose another name")
                    else:
                        self.columns[name.id] = (stmt, expr)

    def head_names(self) -> set[str]:
        """Every head a model declares (`heads = {pi: ..., v: ...}`), before they are typed."""
        return {head for info in self.models.values() if isinstance(info.decl.value, A.Call)
                for head, _ in declared_heads(info.decl.value)}

    def declare_name(self, name: A.Name, decl=None) -> bool:
        if name.id in self.declared:
            self.error("E0210", f"'{name.id}' is already declared on line "
                       f"{self.declared[name.id].line}", name.span, hint="rename one of them")
            return False
        latent_z = name.id == "z" and isinstance(decl, A.MemoryDecl)  # the field z is its value
        if name.id in R.REGISTRY or (name.id in R.TRAJECTORY_FIELDS and not latent_z):
            self.error("E0210", f"'{name.id}' is a built-in name", name.span,
                       hint="choose another name")
        self.declared[name.id] = name.span
        return True

    def declare_import(self, imp: A.Import) -> None:
        lib = self.library.load(imp.module.id)
        if lib is None:
            self.error("E0216", f"no standard-library module '{imp.module.id}'", imp.module.span,
                       hint=did_you_mean(imp.module.id, self.library.names())
                       or one_of(self.library.names()))
            return
        wanted = imp.names or tuple(A.Name(n, imp.module.span) for n in lib.funcs)
        for n in wanted:
            if n.id not in lib.funcs:
                self.error("E0216", f"module '{imp.module.id}' has no '{n.id}'", n.span,
                           hint=did_you_mean(n.id, lib.funcs) or one_of(lib.funcs))
                continue
            if n.id in self.funcs and self.funcs[n.id].module == imp.module.id:
                continue
            if imp.names and not self.declare_name(n):
                continue
            if not imp.names:
                self.declared.setdefault(n.id, imp.span)
            self.funcs[n.id] = lib.funcs[n.id]
            self.imported[n.id] = n

