"""How library code reports progress: through callbacks. Only the command line draws bars.

A long task (a download, hashing a checkpoint, an ingest) is started with ``progress(task, unit)``,
which returns the task's :data:`TaskProgress`; that is called with ``(done, total)`` as work is done.
"""

from __future__ import annotations

from collections.abc import Callable

#: Progress of one task: ``(done, total)`` in the task's unit (total None when unknown).
TaskProgress = Callable[[int, int | None], None]
#: Starts a task and returns its :data:`TaskProgress`: ``progress("download x.pth", "B")``.
Progress = Callable[[str, str], TaskProgress]

BYTES = "B"
FILES = "file"


def start(progress: Progress | None, task: str, unit: str) -> TaskProgress | None:
    """The task's callback, or None when nobody listens (``progress`` is None or False)."""
    return progress(task, unit) if callable(progress) else None


__all__ = ["BYTES", "FILES", "Progress", "TaskProgress", "start"]
