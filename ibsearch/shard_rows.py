"""The checks every row of a shard passes (:mod:`.shards`): its path, modality, span, metadata and vector.

A shard comes from elsewhere, so nothing in it is taken on trust: a path must be absolute and
normalized (no ``..``, ``.``, ``//``, NUL or empty name: the library would otherwise hold, and its
server look up, a path relative to whatever folder it runs in), metadata must be a JSON object of
finite numbers, nested no deeper than :data:`MAX_DEPTH`, and a vector must scale to unit length in
float32.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from .encoder.media.taken import stored_taken
from .modality import INDEX_KEYS, TEXT, modality_of_key, segments_key

MAX_DEPTH = 64  # metadata nesting: media info is flat; deeper is not media info (and could exhaust the stack)
_NORM_SLACK = 1e-5  # vectors further than this from unit length are normalized (ranking is by cosine)
_F32 = np.finfo(np.float32)
_OPTIONAL = ("path_bytes", "start", "end", "metadata", "size", "mtime_ns", "hash", "preprocess_version")


def unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``vectors`` L2-normalized where they are not already, and which rows cannot be: zero, NaN or Inf,
    a length float32 cannot hold (``3e38`` in every value), or too little of one to scale in float32
    (denormals like ``1.4e-45``, whose scaled copy would not be of unit length)."""
    vectors = np.array(vectors, dtype=np.float32)  # a copy: Arrow's memory is read-only
    wide = vectors.astype(np.float64)
    norms = np.linalg.norm(wide, axis=1)
    unusable = ~np.isfinite(norms) | (norms < _F32.tiny) | (norms > _F32.max)
    off = ~unusable & (np.abs(norms - 1) > _NORM_SLACK)
    vectors[off] = (wide[off] / norms[off, None]).astype(np.float32)
    unusable |= np.abs(np.linalg.norm(vectors.astype(np.float64), axis=1) - 1) > _NORM_SLACK
    return vectors, unusable


def pydict(table: Any) -> dict[str, list[Any]]:
    """The columns of a table or batch as lists, the optional ones that are absent as lists of None."""
    data: dict[str, list[Any]] = table.to_pydict()
    for name in _OPTIONAL:
        data.setdefault(name, [None] * table.num_rows)
    return data


def row_path(data: dict[str, list[Any]], i: int) -> str | None:
    """The path of row ``i`` as given (``path_bytes`` wins over ``path``), or None when it has none."""
    raw = data["path_bytes"][i]
    if raw is not None:
        return os.fsdecode(bytes(raw))
    text = data["path"][i]
    return None if text is None else str(text)


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot name a file of the library, or None."""
    if not path:
        return "an empty path"
    if "\0" in path:
        return f"a path with a NUL byte ({path!r})"
    if not os.path.isabs(path):
        return f"a relative path {path!r}: a shard's paths must be absolute"
    if os.path.normpath(path) != path:
        return f"path {path!r} is not absolute and normalized (no '..', '.', '//' or trailing '/')"
    return None


def row_problem(data: dict[str, list[Any]], i: int) -> str | None:
    """What is wrong with a row's modality, span and metadata, or None."""
    key, start, end = (
        data["modality"][i],
        data["start"][i],
        data["end"][i],
    )
    if key not in INDEX_KEYS:
        return f"modality {key!r} is not one of {', '.join(INDEX_KEYS)}"
    if key == segments_key(TEXT):
        return (
            f"a {key} row: shards carry no passages (a passage's text and character span); leave them out,"
            " 'ibsearch ingest' of the note computes them"
        )
    metadata = data["metadata"][i]
    if metadata is not None:
        problem = metadata_problem(str(metadata))
        if problem is not None:
            return problem
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


def metadata_problem(text: str) -> str | None:
    """Why ``text`` is not a row's metadata (a JSON object of finite numbers, shallow), or None."""
    depth = max_depth(text)
    if depth > MAX_DEPTH:
        return f"metadata nested {depth} deep (at most {MAX_DEPTH})"
    try:
        value = parse_metadata(text)
    except ValueError as exc:
        return f"metadata {text[:60]!r} is not a JSON object of finite numbers ({exc})"
    if not isinstance(value, dict):
        return f"metadata {text[:60]!r} is not a JSON object"
    if value.get("taken") is not None and stored_taken(value) is None:
        taken = value["taken"]
        return f"metadata 'taken' must be when it was taken in Unix seconds (years 1 to 9999), got {taken!r}"
    return None


def max_depth(text: str) -> int:
    """An upper bound of how deep JSON ``text`` nests (brackets inside strings count too)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def parse_metadata(text: str) -> Any:
    """JSON ``text`` with NaN, Infinity and out-of-range numbers refused (a ValueError): stored media
    info must be what SQLite's JSON functions and every JSON reader accept."""
    return json.loads(text, parse_float=_finite, parse_constant=_no_constant)


__all__ = ["MAX_DEPTH", "metadata_problem", "parse_metadata", "path_problem", "pydict", "row_path",
           "row_problem", "unit_rows"]  # fmt: skip
