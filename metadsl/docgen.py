"""docs/reference.md, generated from the registry: `python -m metadsl.docgen > docs/reference.md`.

A test keeps the committed file equal to this output, so the reference never drifts."""

from __future__ import annotations

from . import registry as R
from .resources import runtime_modules
from .front.check import show

SECTIONS = (("tasks", "Task distributions"), ("core", "Network cores"), ("model", "Models"),
            ("memory", "Memories"), ("meta", "Meta-parameter kinds"), ("rule", "Update rules"),
            ("policy", "Behaviour policies"), ("op", "Expression primitives"),
            ("fitness", "Fitness functions"), ("baseline", "Evaluation baselines"))


def _param(p: R.P) -> str:
    default = "required" if p.required else "none" if p.default is None else \
        f"`{show(p.default)}`"
    bounds = p.bounds_text() if (p.low is not None or p.high is not None) else ""
    choices = ", ".join(c if R.choice_built(p, c) else f"{c} (not built)"
                        for c in p.choices) if p.choices else ""
    if not p.built:
        choices = (choices + "; " if choices else "") + "only the default is built"
    return f"| `{p.name}` | {p.type} | {default} | {bounds or choices} | {p.doc} |"


def _where(impl: str) -> str:
    """A binding's full path: `families.Nav2D` → `metadsl.runtime.tasks.families.Nav2D`."""
    return f"{runtime_modules()[impl.split('.')[0]]}.{impl}"


def _entry(e: R.Entry) -> list[str]:
    sig = ", ".join(p.name for p in e.params) + (", ..." if e.variadic else "")
    out = [f"### `{e.name}({sig})`", "", e.doc]
    if e.traits:
        out += ["", "Traits: " + ", ".join(f"`{t}`" for t in sorted(e.traits))]
    out += ["", f"PyTorch back end: `{_where(e.impl)}`" if e.impl else
            "PyTorch back end: computed by the evaluation of " + ", ".join(
                f"`{t.name}`" for t in R.REGISTRY.values() if e.name in t.provides)
            if R.built(e) else "PyTorch back end: not built yet (`compile` names it)"]
    if e.provides:
        out += ["", "Baselines its evaluation computes: " +
                ", ".join(f"`{b}`" for b in sorted(e.provides))]
    if e.params:
        out += ["", "| parameter | type | default | bounds / choices | meaning |",
                "|---|---|---|---|---|"] + [_param(p) for p in e.params]
    return out + [""]


def reference() -> str:
    out = ["# Reference: the registered primitives", "",
           "Generated from `metadsl/registry.py` by `python -m metadsl.docgen`; do not edit.",
           "Everything Python supplies to the language is here, with its typed signature.", ""]
    for kind, title in SECTIONS:
        out += [f"## {title}", ""]
        for e in sorted((e for e in R.REGISTRY.values() if e.kind == kind), key=lambda e: e.name):
            out += _entry(e)
    out += ["## `through` options", ""] + _entry(R.THROUGH)[2:]
    for block, params in R.SETTINGS.items():
        out += [f"## Settings of `{block}`", "",
                "| setting | type | default | bounds / choices | meaning |", "|---|---|---|---|---|"]
        out += [_param(p) for p in params] + [""]
    out += ["## Trajectory fields", "", "| field | meaning |", "|---|---|"]
    out += [f"| `{k}` | {v} |" for k, v in R.TRAJECTORY_FIELDS.items()] + [""]
    out += ["## Head slots", "", "Names a standard-library loss uses for the heads of the model it "
            "updates:", ""]
    out += [f"- `{k}`: {v}" for k, v in R.HEAD_SLOTS.items()] + [""]
    out += ["## Reset scopes", "", ", ".join(f"`{s}`" for s in R.MEMORY_SCOPES), ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(reference(), end="")
