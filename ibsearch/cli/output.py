"""What the command line prints: JSON for programs, lines for people, progress bars on stderr.

Every string goes out as valid UTF-8, whatever bytes a file name holds (see ``files.display_path``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

import click

from ..files import display_path


def progress_bars() -> Any:
    """A :data:`ibsearch.progress.Progress` that draws one tqdm bar per task on stderr (None off a TTY)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    def start(task: str, unit: str) -> Any:
        in_bytes = unit == "B"
        bar = tqdm(desc=task, unit=unit, unit_scale=in_bytes, unit_divisor=1024 if in_bytes else 1000,
                   file=sys.stderr, dynamic_ncols=True, leave=True)  # fmt: skip

        def update(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)
            if total is not None and done >= total:
                bar.close()

        return update

    return start


def _printable(data: Any) -> Any:
    """``data`` with every string valid UTF-8 (a non-UTF-8 file name shows its odd bytes as \\xNN)."""
    if isinstance(data, str):
        return display_path(data)
    if isinstance(data, dict):
        return {key: _printable(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_printable(value) for value in data]
    return data


def say(text: str, err: bool = False) -> None:
    """Print a line for people; file names that are not UTF-8 cannot break the terminal or a pipe."""
    click.echo(display_path(text), err=err)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(_printable(data), ensure_ascii=False, indent=None))


def emit(as_json: bool, data: Any, lines: Callable[[], Iterable[str]]) -> None:
    """Print ``data`` as JSON, or the human-readable ``lines()``."""
    if as_json:
        echo_json(data)
        return
    for line in lines():
        say(line)


def format_meta(meta: dict[str, Any]) -> str:
    parts = []
    if meta.get("width") and meta.get("height"):
        parts.append(f"{meta['width']}x{meta['height']}")
    if meta.get("duration") is not None:
        parts.append(f"{float(meta['duration']):.1f}s")
    return " ".join(parts)


def mmss(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"
