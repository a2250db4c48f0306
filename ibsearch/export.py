"""``ibsearch export``: every vector of a library with its file, as a Parquet shard of the public format
(:mod:`.shards`, which :func:`ibsearch.transfer.import_vectors` reads back) or as ``.npy`` with JSON-lines
rows and a manifest.

Export writes every vector with its file's path, media info, size, mtime and hash, in file order, so
``export`` then ``import`` into another library gives the same hits for the same queries.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import UsageError, out_of_space
from .files import path_fields
from .ingest.commit import PREPROCESS_VERSION, TEXT_SEGMENTS
from .library import LibraryResources
from .progress import Progress, start
from .shards import ShardRow, ShardWriter

FORMATS = ("parquet", "npy")


@dataclass
class ExportSummary:
    """What one export wrote."""

    rows: int = 0
    files: int = 0
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "files": self.files, "outputs": self.outputs}


def export_vectors(
    lib: LibraryResources, output: str, *, format: str = "parquet", progress: Progress | None = None
) -> ExportSummary:
    """Write every vector of the library with its file to ``output`` (a Parquet shard that
    ``import_vectors`` reads back), or with ``format="npy"`` to ``output`` (a ``(n, dim)`` float32
    array) plus ``<output stem>.jsonl`` (one row per vector, in the same order, the shard's other
    columns) and ``<output stem>.json`` (model, dimension, preprocessing, rows)."""
    if format not in FORMATS:
        raise UsageError(f"unknown export format {format!r}; use parquet or npy")
    store = lib.store
    summary = ExportSummary()
    report = start(progress, "export", "vector")
    model_id, dim = store.model_id or lib.model_id, store.dim or lib.dim
    with store.snapshot():
        # Shards hold no passages (see shard_rows): a note's passages are computed again by an ingest.
        total = store.vectors.count() - store.vectors.counts().get(TEXT_SEGMENTS, 0)
        sink: _NpySink | ShardWriter = (
            _NpySink(output, total, dim)
            if format == "npy"
            else ShardWriter(output, model_id=model_id, dim=dim, preprocess_version=PREPROCESS_VERSION)
        )
        files: set[int] = set()
        with sink:
            for rows, vectors, versions in store.vectors.chunks_with_files(leave_out=TEXT_SEGMENTS):
                sink.write([_shard_row(r, v) for r, v in zip(rows, versions, strict=True)], vectors)
                files.update(r.file_id for r in rows)
                summary.rows += len(rows)
                if report is not None:
                    report(summary.rows, total)
    summary.files = len(files)
    summary.outputs = [output]
    if isinstance(sink, _NpySink):
        summary.outputs = sink.finish(model_id, dim, summary.rows)
    return summary


def _shard_row(row: Any, version: str) -> ShardRow:
    return ShardRow(row.path, row.modality, row.start, row.end, row.info, row.size, row.mtime_ns,
                    row.content_hash, None if version == PREPROCESS_VERSION else version)  # fmt: skip


class _NpySink:
    """Writes an ``.npy`` export: the vectors array, a JSON-lines file of rows, a manifest."""

    def __init__(self, output: str, total: int, dim: int) -> None:
        self.output = output
        stem = output[:-4] if output.endswith(".npy") else output
        self.rows_path, self.manifest_path = stem + ".jsonl", stem + ".json"
        self.parts = (output + ".part", self.rows_path + ".part")
        try:
            self.array = np.lib.format.open_memmap(self.parts[0], "w+", np.float32, (total, dim))
            # The array is written through a memory map: a page the disk has no room for kills the
            # process (SIGBUS) instead of raising, so its blocks are reserved first.
            with open(self.parts[0], "r+b") as fh:
                os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            self._discard()
            full = out_of_space(exc, os.path.dirname(os.path.abspath(output)))
            if full is None:
                raise
            raise full from None
        self.rows = open(self.parts[1], "w", encoding="utf-8")
        self.done = 0

    def write(self, rows: list[ShardRow], vectors: np.ndarray) -> None:
        self.array[self.done : self.done + len(rows)] = vectors
        self.done += len(rows)
        for r in rows:
            fields = {**path_fields(r.path), "modality": r.modality, "start": r.start, "end": r.end,
                      "metadata": r.metadata, "size": r.size, "mtime_ns": r.mtime_ns, "hash": r.hash,
                      "preprocess_version": r.preprocess_version or PREPROCESS_VERSION}  # fmt: skip
            self.rows.write(json.dumps(fields, sort_keys=True) + "\n")

    def __enter__(self) -> _NpySink:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.array.flush()
        del self.array
        self.rows.close()
        if exc_type is None:
            os.replace(self.parts[0], self.output)
            os.replace(self.parts[1], self.rows_path)
        else:  # a failed export leaves nothing half written behind
            self._discard()

    def _discard(self) -> None:
        for path in self.parts:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def finish(self, model_id: str, dim: int, rows: int) -> list[str]:
        """Write the manifest; returns the three files written."""
        data = {"format": "ibsearch-npy-1", "model_id": model_id, "dim": dim, "rows": rows,
                "preprocess_version": PREPROCESS_VERSION, "vectors": os.path.basename(self.output),
                "rows_file": os.path.basename(self.rows_path)}  # fmt: skip
        with open(self.manifest_path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
        return [self.output, self.rows_path, self.manifest_path]


__all__ = ["FORMATS", "ExportSummary", "export_vectors"]
