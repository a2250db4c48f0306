"""The Parquet shard: how vectors travel between libraries, and from jobs that computed them elsewhere.

One row per vector. Columns (only ``path``, ``modality`` and ``vector`` are required):

- ``path`` (string): the file's absolute path, readable form; ``path_bytes`` (binary), the exact bytes
  of a path that is not valid UTF-8, wins over it;
- ``modality`` (string): ``vision``, ``text``, ``audio``, ``depth``, ``thermal`` or ``imu`` for a vector
  of the whole file, ``audio.segments`` or ``vision.segments`` for a timestamped segment of it;
- ``start``, ``end`` (float64): a segment's span in seconds, null for whole-file vectors;
- ``metadata`` (string): the file's media info as a JSON object (``{"duration": 12.5}``);
- ``vector`` (fixed-size list, or list, of float32): the embedding, of the library's dimension;
- ``size``, ``mtime_ns`` (int64), ``hash`` (string): the file's size, mtime and BLAKE2b content hash
  when its vectors were computed, so an import can tell whether the file on disk is still that file;
- ``preprocess_version`` (string): the preprocessing of that row's vectors, where it differs from the
  shard's.

The schema's key-value metadata says which model computed the vectors: ``ibsearch.model_id``,
``ibsearch.dim``, ``ibsearch.preprocess_version`` and ``ibsearch.format`` (:func:`shard_metadata`).
All rows of one file belong in one shard. :class:`ShardWriter` writes shards (what ``export`` and a
cluster job use); :class:`ShardReader` reads one back file by file, checking every row.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .closing import Closing
from .errors import LibraryError, UsageError
from .files import display_path
from .modality import MODALITIES
from .shard_rows import parse_metadata, path_problem, pydict, row_path, row_problem, unit_rows

FORMAT = "1"
KEY_FORMAT, KEY_MODEL, KEY_DIM, KEY_PREPROCESS = (
    "ibsearch.format", "ibsearch.model_id", "ibsearch.dim", "ibsearch.preprocess_version",
)  # fmt: skip
REQUIRED = ("path", "modality", "vector")
ROW_GROUP = 16384  # rows per Parquet row group (64 MB of 1024-d vectors)
BATCH_ROWS = 4096  # rows a reader holds at a time (16 MB of 1024-d vectors); a bigger file comes in parts
UNUSABLE = "a zero or non-finite vector, or one whose length float32 cannot hold (no unit vector of it)"


def _arrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(
            "Parquet shards need pyarrow: pip install 'ibsearch[parquet]' (or pip install pyarrow)"
        ) from None
    return pa, pq


@dataclass(frozen=True)
class ShardInfo:
    """What a shard says about the vectors it holds (None where it says nothing)."""

    model_id: str | None
    dim: int | None
    preprocess_version: str | None
    rows: int


@dataclass(frozen=True)
class ShardRow:
    """One vector's row, without the vector itself (that travels as an array beside the rows)."""

    path: str  # os.fsdecode form: opens the file, even for non-UTF-8 names
    modality: str  # an index key: a modality, or "<modality>.segments"
    start: float | None = None
    end: float | None = None
    metadata: dict[str, Any] | None = None
    size: int | None = None
    mtime_ns: int | None = None
    hash: str | None = None
    preprocess_version: str | None = None  # overrides the shard's ``ibsearch.preprocess_version``


@dataclass
class FileRows:
    """All rows of one file read from a shard (``error`` says why the file is refused, if it is)."""

    path: str
    rows: list[ShardRow] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    error: str | None = None
    #: A file of more rows than a batch: ``parts()`` reads its rows and vectors a batch at a time
    #: (``rows`` and ``vectors`` stay empty).
    parts: Callable[[], Iterator[tuple[list[ShardRow], np.ndarray]]] | None = None


@dataclass
class _Facts:
    """What a reader's first pass learns of one file: its rows, where they lie, why it is refused."""

    first: int
    last: int = 0
    rows: int = 0
    left: int = 0  # rows not read yet by the second pass
    error: str | None = None


def shard_metadata(model_id: str, dim: int, preprocess_version: str) -> dict[str, str]:
    """The schema metadata of a shard of vectors computed by ``model_id`` with that preprocessing."""
    return {
        KEY_FORMAT: FORMAT,
        KEY_MODEL: model_id,
        KEY_DIM: str(int(dim)),
        KEY_PREPROCESS: preprocess_version,
    }


class ShardWriter(Closing):
    """Writes a Parquet shard: ``with ShardWriter(path, model_id=..., dim=1024, preprocess_version=...)
    as w: w.write(rows, vectors)``. The file appears under its name only when closed without error."""

    def __init__(
        self, path: str | os.PathLike[str], *, model_id: str, dim: int, preprocess_version: str
    ) -> None:
        pa, pq = _arrow()
        self.path, self.dim, self.rows = os.fspath(path), int(dim), 0
        self._part = self.path + ".part"
        self._schema = pa.schema(
            [("path", pa.string()), ("path_bytes", pa.binary()), ("modality", pa.string()),
             ("start", pa.float64()), ("end", pa.float64()), ("metadata", pa.string()),
             ("vector", pa.list_(pa.float32(), self.dim)), ("size", pa.int64()), ("mtime_ns", pa.int64()),
             ("hash", pa.string()), ("preprocess_version", pa.string())],
            metadata=shard_metadata(model_id, self.dim, preprocess_version),
        )  # fmt: skip
        self._writer = pq.ParquetWriter(self._part, self._schema, compression="zstd")
        self._done = False

    def write(self, rows: Sequence[ShardRow], vectors: np.ndarray) -> None:
        """Append ``rows`` with their ``vectors`` ``(len(rows), dim)``."""
        pa, _ = _arrow()
        vecs = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(rows), self.dim)
        raw = [os.fsencode(r.path) for r in rows]
        columns = {
            "path": [display_path(b) for b in raw],
            "path_bytes": [None if _utf8(b) else b for b in raw],
            "modality": [r.modality for r in rows],
            "start": [r.start for r in rows],
            "end": [r.end for r in rows],
            "metadata": [
                None if r.metadata is None else json.dumps(r.metadata, sort_keys=True) for r in rows
            ],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel(), pa.float32()), self.dim),
            "size": [r.size for r in rows],
            "mtime_ns": [r.mtime_ns for r in rows],
            "hash": [r.hash for r in rows],
            "preprocess_version": [r.preprocess_version for r in rows],
        }
        self._writer.write_table(pa.table(columns, schema=self._schema), row_group_size=ROW_GROUP)
        self.rows += len(rows)

    def close(self) -> None:
        """Finish the file and give it its name (only once; a failed write leaves no file behind)."""
        if self._done:
            return
        self._done = True
        self._writer.close()
        os.replace(self._part, self.path)

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
            return
        self._done = True
        self._writer.close()
        os.unlink(self._part)


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class ShardReader:
    """One shard, read back file by file (:meth:`files`), every row checked, ``batch_rows`` rows at a time.

    Memory stays bounded by the batch size and the shard's number of files, not its rows: a file of
    more rows than a batch comes back to be read in parts (:attr:`FileRows.parts`).
    """

    def __init__(self, path: str | os.PathLike[str], *, batch_rows: int = BATCH_ROWS) -> None:
        pa, pq = _arrow()
        self.path, self.batch_rows = os.fspath(path), max(1, int(batch_rows))
        self.name = os.path.basename(self.path)
        try:
            self._file = pq.ParquetFile(self.path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise UsageError(f"cannot read {self.path!r} as a Parquet shard: {exc}") from None
        schema = self._file.schema_arrow
        missing = [c for c in REQUIRED if c not in schema.names]
        if missing:
            raise UsageError(
                f"shard {self.path!r} lacks the column(s) {', '.join(missing)}; a shard needs path, modality "
                "and vector (see 'ibsearch import --help')"
            )
        meta = {k.decode(errors="replace"): v.decode(errors="replace")
                for k, v in (schema.metadata or {}).items()}  # fmt: skip
        vector_type = schema.field("vector").type
        value_type = getattr(vector_type, "value_type", None)
        if value_type is None or not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
            raise UsageError(
                f"shard {self.path!r} has a vector column of {vector_type}; it must be a list of float32"
            )
        dim = meta.get(KEY_DIM) or getattr(vector_type, "list_size", None)
        if dim is not None and not str(dim).isdigit():
            raise UsageError(f"shard {self.path!r} says its dimension ({KEY_DIM}) is {dim!r}, not a number")
        self.info = ShardInfo(meta.get(KEY_MODEL), int(dim) if dim else None, meta.get(KEY_PREPROCESS),
                              self._file.metadata.num_rows)  # fmt: skip
        self.columns = [c for c in schema.names if c in ShardRow.__dataclass_fields__ or c in REQUIRED]
        self.columns += ["path_bytes"] if "path_bytes" in schema.names else []

    def check(self, model_id: str, dim: int) -> None:
        """Refuse a shard of another model or dimension than the library's (a LibraryError)."""
        if self.info.model_id not in (None, model_id) or self.info.dim not in (None, dim):
            raise LibraryError(
                f"shard {self.path!r} holds vectors of model {self.info.model_id or 'unknown'!r} (dim "
                f"{self.info.dim or '?'}); this library uses model {model_id!r} (dim {dim}): import it "
                "into a library of that model (--model, --library)"
            )

    def files(self, dim: int) -> Iterator[FileRows]:
        """Every file of the shard with its rows and vectors, in the order its last row appears; a file
        of more than ``batch_rows`` rows comes with ``parts`` instead, after the others."""
        plan = self._plan()
        pending: dict[str, FileRows] = {}
        small = any(facts.rows <= self.batch_rows for facts in plan.values())
        for first, data, vectors, unusable in self._rows(dim) if small else ():
            for i in range(len(unusable)):
                path = str(row_path(data, i))  # the first pass refused a shard with a row without one
                facts = plan[path]
                if facts.rows > self.batch_rows:
                    continue
                group = pending.setdefault(path, FileRows(path, error=facts.error))
                self._take(group, data, i, first + i, vectors[i], unusable[i])
                facts.left -= 1
                if not facts.left:
                    yield pending.pop(path)
        for path, facts in plan.items():
            if facts.rows > self.batch_rows:
                group = FileRows(path, error=facts.error)
                group.parts = functools.partial(self._parts, group, facts, dim)
                yield group

    def _take(self, group: FileRows, data: dict[str, list[Any]], i: int, row: int, vector: np.ndarray,
              unusable: bool) -> None:  # fmt: skip
        """Add row ``i`` of a batch (the shard's ``row``) to ``group``, or refuse the file for it."""
        if unusable and group.error is None:
            group.error = f"shard {self.name!r} row {row}: {UNUSABLE}"
        if group.error is None:
            group.rows.append(_shard_row(data, i, group.path))
            group.vectors.append(vector)

    def _parts(self, group: FileRows, facts: _Facts, dim: int) -> Iterator[tuple[list[ShardRow], np.ndarray]]:
        """The rows of one big file, at most ``batch_rows`` at a time, in shard order; a refused row
        ends them, its reason set on ``group`` (read them all once before storing any)."""
        path = group.path
        meta = self._file.metadata
        ends = np.cumsum([meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        starts = ends - [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        wanted = [g for g in range(len(ends)) if ends[g] > facts.first and starts[g] <= facts.last]
        part = FileRows(path)
        for first, data, vectors, unusable in self._rows(dim, wanted, int(starts[wanted[0]])):
            for i in range(len(unusable)):
                if row_path(data, i) != path:
                    continue
                self._take(part, data, i, first + i, vectors[i], unusable[i])
                if part.error is not None:
                    group.error = part.error
                    return
                if len(part.rows) == self.batch_rows:
                    yield part.rows, np.stack(part.vectors)
                    part = FileRows(path)
        if part.rows:
            yield part.rows, np.stack(part.vectors)

    def _plan(self) -> dict[str, _Facts]:
        """Rows per file, and why files are refused (bad path, modality, spans, metadata, repeated
        whole-file vectors), read a batch at a time."""
        names = ("path", "path_bytes", "modality", "start", "end", "metadata")
        plan: dict[str, _Facts] = {}
        seen: set[tuple[str, str]] = set()
        row = 0
        for batch in self._batches([c for c in names if c in self.columns]):
            data = pydict(batch)
            for i in range(batch.num_rows):
                path = row_path(data, i)
                if path is None:
                    raise UsageError(f"row {row} of shard {self.path!r} has no path; every row needs one")
                facts = plan.setdefault(path, _Facts(first=row))
                facts.rows, facts.left, facts.last = facts.rows + 1, facts.left + 1, row
                problem = path_problem(path) or row_problem(data, i)
                key = str(data["modality"][i])
                if problem is None and key in MODALITIES and (path, key) in seen:
                    problem = f"more than one whole-file {key} vector"
                if key in MODALITIES:
                    seen.add((path, key))
                if problem is not None and facts.error is None:
                    facts.error = f"shard {self.name!r} row {row}: {problem}"
                row += 1
        return plan

    def _rows(
        self, dim: int, groups: list[int] | None = None, first: int = 0
    ) -> Iterator[tuple[int, dict[str, list[Any]], np.ndarray, np.ndarray]]:
        """``(shard row of the first, columns, unit vectors, unusable)`` per batch (of ``groups``)."""
        for batch in self._batches(list(dict.fromkeys(self.columns)), groups):
            vectors, unusable = unit_rows(self._vectors(batch, dim, first))
            yield first, pydict(batch.drop_columns(["vector"])), vectors, unusable
            first += batch.num_rows

    def _batches(self, columns: list[str], groups: list[int] | None = None) -> Iterator[Any]:
        """Record batches of ``columns`` (of row ``groups``); a page that cannot be read is a
        :class:`UsageError` naming the shard."""
        pa, pq = _arrow()
        # A handle of its own: a big file's parts are read while the files' scan is paused. Without
        # pre-buffering and reader threads, Arrow's allocator keeps no memory that grows with the
        # shard (with them, 116 MiB more at a million rows of 16-d vectors; scripts/bench_import.py).
        try:
            handle = pq.ParquetFile(self.path, pre_buffer=False)
            batches = handle.iter_batches(self.batch_rows, groups, columns, use_threads=False)
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    return
                yield batch
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise UsageError(
                f"shard {self.path!r} is damaged: {exc}; write it again (or import the shards that read)"
            ) from None

    def _vectors(self, batch: Any, dim: int, first_row: int) -> np.ndarray:
        column = batch.column("vector")
        if column.null_count:
            bad = first_row + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise UsageError(f"row {bad} of shard {self.path!r} has no vector")
        lengths = np.diff(column.offsets.to_numpy()) if hasattr(column, "offsets") else None
        if lengths is not None and (lengths != dim).any():
            bad = first_row + int(np.flatnonzero(lengths != dim)[0])
            raise LibraryError(
                f"row {bad} of shard {self.path!r} has a vector of {lengths[bad - first_row]} values; this "
                f"library's vectors have {dim} (another model?): import it into a library of that model"
            )
        values = column.flatten().to_numpy(zero_copy_only=False)
        if len(values) != batch.num_rows * dim:
            raise LibraryError(f"shard {self.path!r} holds vectors of another dimension than {dim}")
        return np.asarray(values, dtype=np.float32).reshape(batch.num_rows, dim)


def _shard_row(data: dict[str, list[Any]], i: int, path: str) -> ShardRow:
    metadata = data["metadata"][i]
    info = parse_metadata(metadata) if metadata else None
    return ShardRow(path, data["modality"][i], data["start"][i], data["end"][i], info, data["size"][i],
                    data["mtime_ns"][i], data["hash"][i], data["preprocess_version"][i])  # fmt: skip


__all__ = [
    "BATCH_ROWS",
    "FORMAT",
    "FileRows",
    "ShardInfo",
    "ShardReader",
    "ShardRow",
    "ShardWriter",
    "shard_metadata",
]
