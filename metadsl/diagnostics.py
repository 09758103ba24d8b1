"""Diagnostics: the closed set of error codes, and the one renderer for all of them.

Every user-facing error of every phase is a `Diagnostic` with a code from `CODES`;
docs/diagnostics.md documents each code and a test keeps the two in step.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass

from .spans import NOWHERE, Span

# code -> one-line title. Closed: a phase may only raise codes listed here.
CODES: dict[str, str] = {
    # input
    "E0001": "cannot read the file",
    "E0002": "the file is not UTF-8 text",
    "E0003": "the spec is too large or too deeply nested",
    # syntax
    "E0101": "syntax error: unexpected token",
    "E0102": "syntax error: unexpected character",
    "E0103": "syntax error: unexpected end of file",
    "E0110": "unsupported language version",
    # names, arguments, values
    "E0201": "unknown name",
    "E0202": "unknown keyword argument",
    "E0203": "keyword argument given twice",
    "E0204": "missing required argument",
    "E0205": "too many positional arguments",
    "E0206": "wrong argument type",
    "E0207": "value out of bounds",
    "E0208": "value is not one of the allowed choices",
    "E0209": "wrong kind of thing in this place",
    "E0210": "name declared twice",
    "E0211": "block given twice",
    "E0212": "unknown setting",
    "E0213": "declared or set but never used",
    "E0214": "statement not allowed here",
    "E0215": "setting given twice",
    "E0216": "unknown standard-library module or name",
    # memory and models
    "E0301": "memory reset scope that the loops cannot honour",
    "E0302": "memory target has no state to reset",
    "E0303": "recurrent learner lacks previous action/reward inputs",
    "E0304": "model lacks a head the loss needs",
    # learning structure
    "E0401": "meta-parameter that no outer objective depends on",
    "E0402": "meta-parameter learned by a loop that never updates it",
    "E0403": "loss does not reach the parameters it updates",
    "E0404": "second-order differentiation through a non-differentiable inner rule",
    "E0405": "evolutionary rule asked to update something that is not a parameter vector",
    "E0406": "update rule cannot update this kind of target",
    "E0407": "`through` names a loop this outer loop does not run",
    "E0408": "data used in a loop that does not produce it",
    "E0409": "inner loop that no outer loop runs",
    "E0410": "spec has no outer loop",
    "E0411": "target network that never moves",
    "E0412": "loss reads a stored column its data does not have",
    "E0413": "stores into one buffer with different columns",
    # override paths given on the command line (`--set path=value`)
    "E0501": "bad override",
    "E0601": "run folder refused",
    "E0602": "checkpoint or run file unusable",
    "E0603": "the run folder cannot be written",
    "E0604": "the run needs more memory than the machine has",
    "E0605": "no space left on the device",
    # never the user's fault
    "E0901": "internal compiler error",
}


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span = NOWHERE
    hint: str | None = None
    file: str = "<input>"

    def __post_init__(self):
        if self.code not in CODES:  # the set is closed; a typo here is our bug
            raise ValueError(f"unregistered diagnostic code {self.code}")

    def as_json(self) -> dict:
        s = self.span
        return {
            "file": self.file,
            "code": self.code,
            "severity": "error",
            "message": self.message,
            "hint": self.hint,
            "line": s.line,
            "column": s.column,
            "end_line": s.end_line,
            "end_column": s.end_column,
        }


class NotBuilt(Exception):
    """Constructs of a checked spec the back end cannot lower yet: (what, Loc) each, where
    the spec wrote them (`compile` and `run` exit 3 listing them)."""

    def __init__(self, missing: list):
        super().__init__("; ".join(w for w, _ in missing))
        self.missing = missing


class CompileError(Exception):
    """Raised by a phase that cannot go on; carries everything found so far."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics


def did_you_mean(word: str, candidates) -> str | None:
    """'did you mean ...?' for the closest candidate, or None when nothing is close."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def one_of(candidates, limit: int = 12) -> str:
    names = sorted(set(candidates))
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"expected one of {shown}{more}"


def render(diag: Diagnostic, source: str | None) -> str:
    """`FILE:LINE:COL: error[CODE]: message`, the source line, a caret, the hint."""
    s = diag.span
    where = diag.file if s == NOWHERE else f"{diag.file}:{s.line}:{s.column}"
    out = [f"{where}: error[{diag.code}]: {diag.message}"]
    lines = source.split("\n") if source is not None else []
    if s != NOWHERE and 1 <= s.line <= len(lines):
        text = lines[s.line - 1].replace("\t", " ")
        if len(text) > 160:  # keep the caret readable on minified input
            text = text[:160] + "..."
        gutter = f"{s.line:>4} | "
        width = (s.end_column - s.column) if s.end_line == s.line else len(text) - s.column + 1
        width = max(1, min(width, max(1, len(text) - s.column + 1)))
        out.append(gutter + text)
        out.append(" " * (len(gutter) + s.column - 1) + "^" * width)
    if diag.hint:
        out.append(f"  = help: {diag.hint}")
    return "\n".join(out)


def render_all(diags: list[Diagnostic], source: str | None) -> str:
    text = "\n\n".join(render(d, source) for d in diags)
    n = len(diags)
    return text + f"\n\n{n} error{'s' if n != 1 else ''} found"


def to_json(diags: list[Diagnostic]) -> str:
    return json.dumps({"diagnostics": [d.as_json() for d in diags]}, indent=2)
