"""What the command line prints: JSON for programs, lines for people, progress bars on stderr.

Every string goes out as valid UTF-8, whatever bytes a file name holds (see ``files.display_path``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import click

from ..encoder.media.taken import stored_taken
from ..files import display_path
from .screen import status_line


def progress_bars() -> Any:
    """A :data:`ibsearch.progress.Progress` that keeps one status line on stderr (None off a TTY),
    erased when the command ends, before an error is printed (see :mod:`.screen`)."""
    line = status_line()
    context = click.get_current_context(silent=True)
    if line is not None and context is not None:
        context.call_on_close(line.close)
    return line


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
    taken = stored_taken(meta)
    if taken is not None:
        # The local date and time; one read from the file's mtime is not when it was taken: said so.
        when = datetime.fromtimestamp(taken).strftime("%Y-%m-%d %H:%M")
        parts.append(f"{'modified' if meta.get('taken_from') == 'file' else 'taken'} {when}")
    return " ".join(parts)


def by_extension(counts: dict[str, int], shown: int = 5) -> str:
    """Counts by extension in words, most first: ``.page 989, .svg 295 and 3 more``."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    text = ", ".join(f"{ext} {n}" for ext, n in ordered[:shown])
    return text + (f" and {len(ordered) - shown} more" if len(ordered) > shown else "")


def report_ingest(data: dict[str, Any], as_json: bool) -> None:
    """The summary: JSON, or in words with the failed (and, with -v, skipped) files on stderr and,
    last, what was skipped and what failed, counted by extension."""
    if as_json:
        echo_json(data)  # with the files named in PATHS that were not indexed in not_indexed
        return
    for named in data["not_indexed"]:  # said even without -v
        say(f"error: {named['path']} was not indexed: {named['reason']}", err=True)
    click.echo(
        "added {added}, updated {updated}, unchanged {unchanged}, removed {removed}, "
        "failed {nfailed}, encoded {encoded}".format(nfailed=len(data["failed"]), **data)
    )
    for bad in data["failed"]:
        say(f"  failed: {bad['path']}: {bad['reason']}", err=True)
    for passed in data.get("skipped_files", []):
        say(f"  skipped: {passed['path']}: {passed['reason']}", err=True)
    if data["known_bad"]:
        click.echo(
            f"  {data['known_bad']} known bad file(s) skipped, unchanged since they failed (ibsearch info)"
        )
    if data["skipped"]:
        click.echo(f"skipped {data['skipped']}: {by_extension(data['skipped_by_extension'])}")
    if data["failed"]:
        click.echo(f"failed {len(data['failed'])}: {by_extension(data['failed_by_extension'])}")


def last_ingest_line(last: dict[str, Any]) -> str:
    """``info``'s line on the last ingest: when, what it added, failed and skipped."""
    line = f"last run  {last['time']}: added {last['added']}, updated {last['updated']}"
    for what in ("failed", "skipped"):
        counts = last[f"{what}_by_extension"]
        if counts:
            line += f"; {what} {sum(counts.values())}: {by_extension(counts)}"
    return line


def mmss(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"
