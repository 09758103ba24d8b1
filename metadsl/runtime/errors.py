"""The runtime's own errors, at the bottom of its imports: a run stops on either with its
message, never a traceback."""

from __future__ import annotations


class TaskError(ValueError):
    """A task source the installed environment cannot provide (an unknown gymnasium id, a
    parameter it lacks): the run stops with this message, not a traceback."""


class SettingError(ValueError):
    """Settings that cannot run together, such as an odd population with mirrored sampling
    set by `--set` (the checker sees only the spec's own values): a usage error."""


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or infinite: the run stops, keeping its last good checkpoint."""


class Stopped(BaseException):
    """A signal ended the run (SIGTERM, SIGHUP, or Ctrl-C): raised from its handler so the
    run says where its last checkpoint is. A BaseException: no `except Exception` in a
    training step swallows it."""

    def __init__(self, name: str, status: int):
        super().__init__(name)
        self.name, self.status = name, status
