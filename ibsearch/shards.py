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

import json
import math
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .closing import Closing
from .errors import LibraryError, UsageError
from .files import display_path
from .modality import INDEX_KEYS, MODALITIES, modality_of_key

FORMAT = "1"
KEY_FORMAT, KEY_MODEL, KEY_DIM, KEY_PREPROCESS = (
    "ibsearch.format", "ibsearch.model_id", "ibsearch.dim", "ibsearch.preprocess_version",
)  # fmt: skip
REQUIRED = ("path", "modality", "vector")
ROW_GROUP = 16384  # rows per Parquet row group (64 MB of 1024-d vectors)


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
    """One shard, read back file by file (:meth:`files`), every row checked."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        _, pq = _arrow()
        self.path = os.fspath(path)
        try:
            self._file = pq.ParquetFile(self.path)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {self.path!r} as a Parquet shard: {exc}") from None
        schema = self._file.schema_arrow
        missing = [c for c in REQUIRED if c not in schema.names]
        if missing:
            raise UsageError(
                f"shard {self.path!r} lacks the column(s) {', '.join(missing)}; a shard needs path, modality "
                "and vector (see 'ibsearch import --help')"
            )
        meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
        vector_type = schema.field("vector").type
        fixed = getattr(vector_type, "list_size", None)
        dim = meta.get(KEY_DIM) or fixed
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
        """Every file of the shard with its rows and vectors, in the order its last row appears."""
        expected, errors = self._plan()
        pending: dict[str, FileRows] = {}
        row = 0
        for batch in self._file.iter_batches(batch_size=4096, columns=list(dict.fromkeys(self.columns))):
            vectors, unusable = _unit_rows(self._vectors(batch, dim, row))
            data = _pydict(batch.drop_columns(["vector"]))
            for i in range(batch.num_rows):
                path = _row_path(data, i)
                if path is None:
                    continue
                group = pending.setdefault(path, FileRows(path, error=errors.get(path)))
                if unusable[i] and group.error is None:
                    name = os.path.basename(self.path)
                    group.error = f"shard {name!r} row {row + i}: a zero or non-finite vector"
                if group.error is None:
                    group.rows.append(_shard_row(data, i, path))
                    group.vectors.append(vectors[i])
                expected[path] -= 1
                if not expected[path]:
                    yield pending.pop(path)
            row += batch.num_rows

    def _plan(self) -> tuple[Counter[str], dict[str, str]]:
        """Rows per file, and why files are refused (bad modality, spans, repeated whole-file vectors)."""
        names = ("path", "path_bytes", "modality", "start", "end", "metadata")
        table = self._file.read(columns=[c for c in names if c in self.columns])
        data = _pydict(table)
        counts: Counter[str] = Counter()
        errors: dict[str, str] = {}
        seen: set[tuple[str, str]] = set()
        for i in range(table.num_rows):
            path = _row_path(data, i)
            if path is None:
                raise UsageError(f"row {i} of shard {self.path!r} has no path; every row needs one")
            counts[path] += 1
            problem = _row_problem(data, i)
            key = str(data["modality"][i])
            if problem is None and key in MODALITIES and (path, key) in seen:
                problem = f"more than one whole-file {key} vector"
            seen.add((path, key))
            if problem is not None and path not in errors:
                errors[path] = f"shard {os.path.basename(self.path)!r} row {i}: {problem}"
        return counts, errors

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


_NORM_SLACK = 1e-5  # vectors further than this from unit length are normalized (ranking is by cosine)


def _unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``vectors`` L2-normalized where they are not already, and which rows cannot be (zero, NaN, Inf)."""
    vectors = np.array(vectors, dtype=np.float32)  # a copy: Arrow's memory is read-only
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    unusable = ~np.isfinite(norms) | (norms == 0)
    off = ~unusable & (np.abs(norms - 1) > _NORM_SLACK)
    vectors[off] /= norms[off, None].astype(np.float32)
    return vectors, unusable


_OPTIONAL = ("path_bytes", "start", "end", "metadata", "size", "mtime_ns", "hash", "preprocess_version")


def _pydict(table: Any) -> dict[str, list[Any]]:
    """The columns of a table or batch as lists, the optional ones that are absent as lists of None."""
    data: dict[str, list[Any]] = table.to_pydict()
    for name in _OPTIONAL:
        data.setdefault(name, [None] * table.num_rows)
    return data


def _row_path(data: dict[str, list[Any]], i: int) -> str | None:
    raw = data["path_bytes"][i]
    if raw is not None:
        return os.fsdecode(bytes(raw))
    text = data["path"][i]
    return None if text is None else os.path.abspath(os.path.expanduser(str(text)))


def _row_problem(data: dict[str, list[Any]], i: int) -> str | None:
    """What is wrong with a row's modality and span, or None."""
    key, start, end = (
        data["modality"][i],
        data["start"][i],
        data["end"][i],
    )
    if key not in INDEX_KEYS:
        return f"modality {key!r} is not one of {', '.join(INDEX_KEYS)}"
    metadata = data["metadata"][i]
    if metadata is not None and not isinstance(_json_object(metadata), dict):
        return f"metadata {metadata[:60]!r} is not a JSON object"
    if modality_of_key(key) == key:
        return None if start is None and end is None else f"a {key} row with start/end: use {key}.segments"
    if (
        start is None
        or end is None
        or not math.isfinite(start)
        or not math.isfinite(end)
        or not 0 <= start <= end
    ):
        return f"a {key} row needs start and end seconds with 0 <= start <= end, got {start!r}, {end!r}"
    return None


def _json_object(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _shard_row(data: dict[str, list[Any]], i: int, path: str) -> ShardRow:
    metadata = data["metadata"][i]
    info = json.loads(metadata) if metadata else None
    return ShardRow(path, data["modality"][i], data["start"][i], data["end"][i], info, data["size"][i],
                    data["mtime_ns"][i], data["hash"][i], data["preprocess_version"][i])  # fmt: skip


__all__ = ["FORMAT", "FileRows", "ShardInfo", "ShardReader", "ShardRow", "ShardWriter", "shard_metadata"]
