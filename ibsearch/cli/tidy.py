"""``ibsearch duplicates``: the near-identical files of a library and the space they take."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from .app import command, with_library
from .output import emit


@command("Print the groups as a JSON list.")
@click.option("--threshold", type=float, default=None, metavar="LIKENESS",
              help="How alike files must be, from 0 (unrelated) to 1 (identical vectors); default 0.95 "
                   "(re-encodes and burst shots; README 'Near-duplicates').")  # fmt: skip
@click.option("--target", "targets", multiple=True, metavar="MODALITY",
              help="Only files of this modality (vision/image, text, audio...); repeatable.")  # fmt: skip
def duplicates(threshold: float | None, targets: Sequence[str], as_json: bool, **common: Any) -> None:
    """List the groups of near-identical files (copies, burst shots, re-encodes), largest first, with the
    space each takes and what removing all but its largest file would free. Nothing is removed.

    \b
    Examples:
      ibsearch duplicates
      ibsearch duplicates --target image --threshold 0.98 --json
    """
    groups = with_library(common, lambda lib: lib.duplicates(threshold, list(targets) or None))
    emit(as_json, [g.to_dict() for g in groups], lambda: _lines(groups))


def _lines(groups: list[Any]) -> list[str]:
    lines: list[str] = []
    for group in groups:
        data = group.to_dict()
        what = "copies" if data["copies"] else "near-identical"
        lines.append(f"{data['count']} files, {_size(data['bytes'])}, {_size(data['reclaimable'])} to free "
                     f"({data['modality']}, {what})")  # fmt: skip
        for n, file in enumerate(data["files"]):
            lines.append(f"  {'keep' if n == 0 else '    '}  {_size(file['size']):>9}  {file['path']}")
    freed = sum(g.reclaimable for g in groups)
    lines.append(
        f"{len(groups)} group(s) of near-duplicates; keeping the largest file of each frees {_size(freed)}"
    )
    return lines


def _size(count: int) -> str:
    return f"{count / 1e3:.1f} KB" if count < 1e6 else f"{count / 1e6:.1f} MB"
