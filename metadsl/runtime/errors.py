"""The runtime's own errors, at the bottom of its imports: a run stops on either with its
message, never a traceback."""

from __future__ import annotations


class TaskError(ValueError):
    """A task source the installed environment cannot provide (an unknown gymnasium id, a
    parameter it lacks): the run stops with this message, not a traceback."""


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or infinite: the run stops, keeping its last good checkpoint."""
