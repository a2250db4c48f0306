"""Turning planned work into pipeline rows, and the rows' results back into finished files.

A file's parts arrive in any order (its picture batch, its sound batch, its segments); each file is
reported once, when all its parts are in, exactly as :func:`ibsearch.encoder.embed.embed_files` would
report it. A segments result waits for the file-level vector it belongs to, so that a file that fails
gets the reason a local ingest would give (the file-level decode fails first there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..encoder.work import (
    Batch,
    FileVectors,
    FileWork,
    Segments,
    finished,
    plan_batches,
    take_batch,
    take_segments,
)
from ..errors import MediaError
from ..modality import TEXT
from .pipeline import RowResult, batch_row, segments_row


class Collector:
    """The rows of one cluster run, and what their results make of the files."""

    def __init__(self, works: list[FileWork], batch_size: int, remote: Callable[[str], str]) -> None:
        self.works = works
        self.rows: list[dict[str, Any]] = []
        self._row_of: dict[int, Batch | tuple[int, str]] = {}
        sources = {w.index: remote(str(w.item.source)) for w in works}
        for work in works:
            # Shards hold no passages (their text and span): a note's come from a local ingest instead.
            work.plan.pop(TEXT, None)
        for batch in plan_batches(works, batch_size):
            self._add(batch, batch_row(len(self.rows), batch, works, sources))
        for work in works:
            for modality in work.streamed:
                row = segments_row(len(self.rows), work, modality, sources[work.index])
                self._add((work.index, modality), row)
        self._waiting: dict[tuple[int, str], RowResult] = {}  # segments results before their file vector
        self.reported = 0

    def _add(self, origin: Batch | tuple[int, str], row: dict[str, Any]) -> None:
        self._row_of[len(self.rows)] = origin
        self.rows.append(row)

    def take(self, result: RowResult) -> Iterator[tuple[int, FileVectors | MediaError]]:
        """Record one row's result; yield ``(work index, outcome)`` of each file it finishes."""
        origin = self._row_of[result.row]
        if isinstance(origin, Batch):
            for index, (reason, transient) in result.errors.items():
                self._fail(index, reason, transient)
            take_batch(self.works, origin, result.vectors)
            touched = list(origin.members)
        else:
            index, modality = origin
            work = self.works[index]
            if work.plan.get(modality) == Segments.LONG and result.whole is not None:
                work.result.put(modality, result.whole[None, :], [(None, None)])  # no batch row for it
            self._waiting[(index, modality)] = result
            touched = [index]
        for index in touched:
            self._settle_segments(index)
        for index, outcome in finished(self.works[i] for i in touched):
            self.reported += 1
            yield index, outcome

    def _settle_segments(self, index: int) -> None:
        """Apply the segments results of file ``index`` whose file-level vector is in (as a local
        ingest streams segments only after the file-level pass succeeded)."""
        work = self.works[index]
        for modality in work.streamed:
            result = self._waiting.get((index, modality))
            if result is None or work.error is not None:
                continue
            long_audio = work.plan.get(modality) == Segments.LONG
            if not long_audio and modality not in work.result.vectors:
                continue  # wait for the file-level vector
            del self._waiting[(index, modality)]
            if result.errors:
                self._fail(index, *result.errors[index])
                continue
            vectors, spans = result.segments or ([], [])
            work.result.encoded += result.encoded
            take_segments(work, modality, [np.asarray(v) for v in vectors], list(spans))

    def _fail(self, index: int, reason: str, transient: bool) -> None:
        work = self.works[index]
        if work.error is None:
            name = work.item.source if isinstance(work.item.source, str) else "<bytes>"
            work.fail(MediaError(name, reason, transient=transient))


__all__ = ["Collector"]
