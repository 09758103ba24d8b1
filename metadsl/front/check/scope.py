"""Expression typing: the names visible in an expression over trajectory data, its type,
and what it refers to."""

from __future__ import annotations

from .. import ast as A
from ..formatter import format_expr
from ... import registry as R
from ...diagnostics import did_you_mean, one_of
from .facts import FuncInfo, LoopInfo, compatible, ref, type_word


class Scope:
    """Names visible in an expression over trajectory data, and what it refers to.

    Lookup order: function parameters and lets, the spec's declarations, registry ops,
    trajectory fields, head slots (heads of the spec's models and the standard slots)."""

    def __init__(self, checker, func: FuncInfo | None, loop: LoopInfo | None = None):
        self.c = checker
        self.func = func
        self.loop = loop
        self.locals: dict[str, str] = {}
        self.refs: set = set()

    def heads(self) -> dict[str, str]:
        out = dict(R.HEAD_SLOTS)
        for m in self.c.models.values():
            out.update(m.heads)
        return out

    def visible(self) -> list[str]:
        names = list(self.locals) + list(self.c.declared) + list(self.c.funcs)
        names += [e.name for e in R.REGISTRY.values() if e.kind in ("op", "fitness")]
        return names + list(R.TRAJECTORY_FIELDS) + list(self.c.columns) + list(self.heads()) + \
            list(R.CONSTANTS)

    def lookup(self, name: A.Name) -> str:
        n = name.id
        if n in self.locals:
            self.refs.add(ref("local", n))
            return self.locals[n]
        c = self.c
        base = n.rstrip("'")
        if n in c.metas:
            c.used.add(n)
            self.refs.add(ref("meta", n))
            return "tensor"
        if base in c.models:
            c.used.add(base)
            self.refs.add(ref("model", base))
            return "model"
        for kind, table in (("memory", c.memories), ("tasks", c.tasks), ("loop", c.loops)):
            if n in table:
                c.used.add(n)
                self.refs.add(ref(kind, n))
                return kind
        if n in c.funcs or (n in R.REGISTRY and R.REGISTRY[n].kind in ("op", "fitness")):
            return "func"
        if n in R.TRAJECTORY_FIELDS:
            return "tensor"
        if n in c.columns:
            self.refs.add(ref("column", n))
            return "tensor"
        heads = self.heads()
        if n in heads:
            self.refs.add(ref("head", n))
            return heads[n]
        if n in R.CONSTANTS:
            return R.CONSTANTS[n]
        if self.loop is not None and n in c.visible_data(self.loop):
            return "data"
        c.error("E0201", f"unknown name '{n}'", name.span,
                hint=did_you_mean(n, self.visible()))
        return "unknown"

    def infer(self, e: A.Expr) -> str:
        if isinstance(e, A.Number):
            return "int" if e.is_int else "num"
        if isinstance(e, A.String):
            return "str"
        if isinstance(e, A.Name):
            t = self.lookup(e)
            if t == "func":
                self.c.error("E0206", f"'{e.id}' is a function: call it, `{e.id}(...)`", e.span)
                return "unknown"
            return t
        if isinstance(e, A.Attr):
            return self.infer_attr(e)
        if isinstance(e, A.Call):
            return self.infer_call(e)
        if isinstance(e, A.BinOp):
            a, b = self.infer(e.left), self.infer(e.right)
            for side, t in ((e.left, a), (e.right, b)):
                if not compatible("tensor", t):
                    self.c.error("E0206", f"'{e.op}' needs numbers or tensors, not "
                                 f"{type_word(t)}", side.span)
                    return "unknown"
            if e.op in ("==", "!=", "<", "<=", ">", ">=", "and", "or"):
                return "bool" if "tensor" not in (a, b) else "tensor"
            if a in ("int", "num") and b in ("int", "num"):
                return "int" if a == b == "int" and e.op in "+-*" else "num"
            return "tensor"
        if isinstance(e, A.UnaryOp):
            t = self.infer(e.operand)
            if not compatible("tensor", t):
                self.c.error("E0206", f"'{e.op}' needs a number or tensor, not {type_word(t)}",
                             e.span)
                return "unknown"
            return t
        if isinstance(e, A.Index):
            obj, idx = self.infer(e.obj), self.infer(e.index)
            if not compatible("tensor", obj) or not compatible("tensor", idx):
                self.c.error("E0206", "only tensors can be indexed, by numbers", e.span)
                return "unknown"
            return "tensor"
        if isinstance(e, A.ListExpr):
            for item in e.items:
                self.infer(item)
            return "list"
        if isinstance(e, A.DictExpr):
            return "dict"
        return "unknown"

    def infer_attr(self, e: A.Attr) -> str:
        if isinstance(e.obj, A.Name):
            base = e.obj.id.rstrip("'")
            if base in self.c.models:
                self.c.used.add(base)
                info = self.c.models[base]
                if e.name in info.heads:
                    self.refs.add(ref("attr", f"{base}.{e.name}"))
                    return info.heads[e.name]
                self.c.error("E0201", f"model '{base}' has no head '{e.name}'", e.name_span,
                             hint=did_you_mean(e.name, info.heads) or
                             (one_of(info.heads) if info.heads else None))
                return "unknown"
            if self.loop is not None and e.obj.id in self.c.visible_data(self.loop):
                if e.name in R.TRAJECTORY_FIELDS:
                    return "tensor"
                self.c.error("E0201", f"data has no field '{e.name}'", e.name_span,
                             hint=did_you_mean(e.name, R.TRAJECTORY_FIELDS))
                return "unknown"
        t = self.infer(e.obj)
        if t != "unknown":
            self.c.error("E0206", f"{type_word(t)} has no fields; functions are called as "
                         f"`{e.name}(x)`", e.span,
                         hint=f"write `{e.name}(...)`" if e.name in R.REGISTRY else None)
        return "unknown"

    def infer_call(self, e: A.Call) -> str:
        name = e.func_name
        c = self.c
        if name is not None and name in self.locals and self.locals[name] == "model":
            self.refs.add(ref("local", name))
            return self.infer_net_call(e, "tensor")
        if name is not None and name in c.funcs and name not in self.locals:
            c.used.add(name)
            self.refs.add(ref("call", name))
            self.check_func_args(e, c.funcs[name])
            return "tensor"
        if name is not None and name in R.REGISTRY and name not in self.locals:
            entry = R.REGISTRY[name]
            if entry.kind not in ("op", "fitness"):
                c.error("E0209", f"'{name}' is {c.article(entry.kind)}, not usable in an "
                        "expression", e.func.span)
                return "unknown"
            c.check_args(e, entry, self)
            if "target_network" in entry.traits:  # the updating rule must move it
                self.refs.add(ref("target", format_expr(e)))
            if entry.result == "same":
                return self.infer(e.args[0].value) if e.args else "unknown"
            for arg in e.args:
                if isinstance(arg.value, A.Name) and arg.value.id in c.loops:
                    self.refs.add(ref("loop", arg.value.id))
            return entry.result
        # a model, a head or target(head) called on explicit inputs: q1(obs, action)
        t = self.infer(e.func)
        if t in ("model", "dist", "tensor"):
            return self.infer_net_call(e, "tensor" if t == "model" else t)
        if t != "unknown":
            c.error("E0206", f"{type_word(t)} cannot be called", e.func.span)
        return "unknown"

    def infer_net_call(self, e: A.Call, result: str) -> str:
        for arg in e.args:
            got = self.infer(arg.value)
            if arg.name is not None or not compatible("tensor", got):
                self.c.error("E0206", "a network is called on tensors, by position", arg.span)
        return result

    def check_func_args(self, e: A.Call, info: FuncInfo) -> None:
        decl = info.decl
        params = decl.params
        names = [p.name.id for p in params]
        seen: set[str] = set()
        for i, arg in enumerate(e.args):
            if arg.name is None:
                if i >= len(params):
                    self.c.error("E0205", f"'{decl.name.id}' takes {len(params)} argument"
                                 f"{'s' if len(params) != 1 else ''}, given "
                                 f"{len(e.args)}", arg.span,
                                 hint=f"{decl.name.id}({', '.join(names)})")
                    continue
                pname = names[i]
            else:
                if arg.name not in names:
                    self.c.error("E0202", f"'{decl.name.id}' has no argument '{arg.name}'",
                                 arg.span, hint=did_you_mean(arg.name, names) or
                                 (one_of(names) if names else None))
                    continue
                pname = arg.name
            if pname in seen:
                self.c.error("E0203", f"argument '{pname}' of '{decl.name.id}' is given twice",
                             arg.span)
                continue
            seen.add(pname)
            param = params[names.index(pname)]
            got = self.infer(arg.value)
            want = param.type.id if param.type is not None else "tensor"
            if not compatible(want, got):
                self.c.error("E0206", f"'{pname}' of '{decl.name.id}' expects {type_word(want)}"
                             f", got {type_word(got)}", arg.value.span)
        for p in params:
            if p.default is None and p.name.id not in seen:
                self.c.error("E0204", f"'{decl.name.id}' needs the argument '{p.name.id}'",
                             e.span, hint=f"{decl.name.id}({', '.join(names)})")

