"""Where a construct is in a spec's source: what every phase's messages point at."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    line: int
    column: int
    end_line: int
    end_column: int
    start: int  # character offsets into the source
    end: int


NOWHERE = Span(1, 1, 1, 1, 0, 0)
