"""How library code reports progress: through callbacks. Only the command line draws bars.

A long task (a download, hashing a checkpoint, an ingest) is started with ``progress(task, unit)``,
which returns the task's :class:`TaskProgress`; that is called with ``(done, total)`` as work is done,
and, by a task that works through files, with ``current=`` the file under way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class TaskProgress(Protocol):
    """Progress of one task: ``(done, total)`` in the task's unit (total None when unknown), and the
    item under way when the task names one (an ingest's current file)."""

    def __call__(self, done: int, total: int | None, current: str | None = None) -> None: ...


#: Starts a task and returns its :class:`TaskProgress`: ``progress("download x.pth", "B")``.
Progress = Callable[[str, str], TaskProgress]

BYTES = "B"
FILES = "file"
#: An ingest's unit: the inputs the model encodes (a picture, a 6 s window of sound, a passage), so
#: that an hour of audio weighs what it costs, not what a photo does.
INPUTS = "input"


def start(progress: Progress | None, task: str, unit: str) -> TaskProgress | None:
    """The task's callback, or None when nobody listens (``progress`` is None or False)."""
    return progress(task, unit) if callable(progress) else None


__all__ = ["BYTES", "FILES", "INPUTS", "Progress", "TaskProgress", "start"]
