"""What a command shows on a terminal while it works: one status line on stderr, redrawn in place and
cleared when the work ends, and the warnings of the libraries it uses counted instead of shown.

One line, not a bar per task: a task (a download, hashing a checkpoint, an ingest) is drawn only once
it reports progress, and its line is cleared as soon as it is done, so nothing is left behind (a
checkpoint whose hash was remembered never shows a bar at all). The time left is estimated from the
work the task counts (bytes, or an ingest's model inputs) at the average rate since it began, and
counts down every second between reports (a batch of a long recording's windows takes a while).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

from ..files import display_path
from ..progress import BYTES, TaskProgress

#: Least seconds between two redraws of a task that is not done (a terminal is slow to write to).
REDRAW_SECONDS = 0.1
#: Seconds of progress before the time left is estimated.
SETTLE_SECONDS = 1.0
ERASE_LINE = "\r\x1b[K"


@dataclass
class _Task:
    name: str
    unit: str
    done: int = 0
    total: int | None = None
    current: str | None = None
    began: float = 0.0  # time.monotonic() of its first report: where its rate starts
    estimate: tuple[float, float] | None = None  # (when, seconds left then), from its last report

    def line(self, now: float, width: int) -> str:
        """The task's status line, at most ``width`` characters."""
        parts = [self.name]
        if self.total:
            parts.append(f"{min(100, 100 * self.done // self.total):3d}%")
        if self.unit == BYTES:
            parts.append(f"{_size(self.done)}" + (f" of {_size(self.total)}" if self.total else ""))
        elif self.unit != "input":
            parts.append(f"{self.done}" + (f"/{self.total}" if self.total else "") + f" {self.unit}s")
        left = self.seconds_left(now)
        if left is not None:
            parts.append(f"about {_clock(left)} left")
        text = "  ".join(parts)
        if self.current:
            room = width - len(text) - 2
            if room >= 12:
                name = display_path(self.current)
                text += "  " + (name if len(name) <= room else "..." + name[-(room - 3) :])
        return text[:width]

    def reported(self, now: float) -> None:
        """Estimate the time left at the average rate so far (once there is a rate to speak of)."""
        if self.total and self.done > 0 and now - self.began >= SETTLE_SECONDS:
            self.estimate = (now, (self.total - self.done) * (now - self.began) / self.done)

    def seconds_left(self, now: float) -> float | None:
        if self.estimate is None:
            return None
        when, left = self.estimate
        return max(0.0, left - (now - when))


@dataclass
class StatusLine:
    """A :data:`ibsearch.progress.Progress` that keeps one line on ``stream`` (a terminal) up to date
    with the task that reported last."""

    stream: IO[str]
    tasks: list[_Task] = field(default_factory=list)  # those under way, the one reported last at the end
    drawn_at: float = 0.0
    drawn: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: threading.Event = field(default_factory=threading.Event)
    ticking: threading.Thread | None = None

    def __call__(self, name: str, unit: str) -> TaskProgress:
        task = _Task(name, unit)

        def update(done: int, total: int | None, current: str | None = None) -> None:
            with self.lock:
                self._update(task, done, total, current)

        return update

    def _update(self, task: _Task, done: int, total: int | None, current: str | None) -> None:
        now = time.monotonic()
        if task not in self.tasks and not task.began:
            task.began = now
        moved = done != task.done or total != task.total
        task.done, task.total, task.current = done, total, current
        if moved:
            task.reported(now)
        if task in self.tasks:
            self.tasks.remove(task)
        if total is not None and done >= total:  # done: its line goes, another task's comes back
            if self.tasks:
                self._draw(now)
            else:
                self._erase()
            return
        self.tasks.append(task)
        if now - self.drawn_at >= REDRAW_SECONDS:
            self._draw(now)
        if self.ticking is None and not self.closed.is_set():
            self.ticking = threading.Thread(target=self._tick, name="ibsearch-status", daemon=True)
            self.ticking.start()

    def _tick(self) -> None:
        """Redraw every second: the time left moves on between reports."""
        while not self.closed.wait(1.0):
            with self.lock:
                if self.tasks and not self.closed.is_set():
                    self._draw(time.monotonic())

    def _draw(self, now: float) -> None:
        width = _width(self.stream) - 1  # the last column would wrap on some terminals
        self.stream.write(ERASE_LINE + self.tasks[-1].line(now, width))
        self.stream.flush()
        self.drawn_at, self.drawn = now, True

    def _erase(self) -> None:
        if self.drawn:
            self.stream.write(ERASE_LINE)
            self.stream.flush()
            self.drawn = False

    def close(self) -> None:
        """Erase the line and draw no more (when the command ends, before an error is printed)."""
        self.closed.set()
        with self.lock:
            self.tasks.clear()
            self._erase()


def _width(stream: IO[str]) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 80


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def status_line() -> StatusLine | None:
    """The status line of a command on a terminal (None when stderr is not one: nothing is drawn)."""
    return StatusLine(sys.stderr) if sys.stderr.isatty() else None


@contextmanager
def warnings_counted(shown: bool) -> Iterator[Counter[tuple[str, str, str]]]:
    """Count the warnings Python's ``warnings`` module would print while the block runs (Pillow's
    about palette images, torch's...) instead of printing them: one file after another they would
    scroll the screen and say nothing about the library. With ``shown`` each kind is then listed
    once on stderr with how many times it came."""
    counts: Counter[tuple[str, str, str]] = Counter()
    # Recorded, not shown; kept until the block ends (a warning is a few hundred bytes).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every occurrence is recorded: the number is real
        yield counts  # filled when the block ends
        for said in caught:
            counts[(said.category.__name__, str(said.message).strip(), _package(said.filename))] += 1
    if shown:
        for (category, message, where), n in sorted(counts.items(), key=lambda item: -item[1]):
            times = "once" if n == 1 else f"{n} times"
            sys.stderr.write(display_path(f"warning from {where} ({times}): {category}: {message}") + "\n")


def _package(filename: str) -> str:
    """The package a warning came from: the folder after site-packages (``PIL``), else the file's name."""
    parts = filename.replace("\\", "/").split("/")
    for marker in ("site-packages", "dist-packages"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return parts[parts.index(marker) + 1].removesuffix(".py")
    return os.path.basename(filename)


__all__ = ["StatusLine", "status_line", "warnings_counted"]
