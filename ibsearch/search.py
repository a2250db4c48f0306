"""Any-to-any search: embed the query terms, combine them, search the target modalities' indexes.

Combination rule (documented in the README): each term's vector is L2-normalized, multiplied by its
weight, summed, and the sum is L2-normalized again. Filters become the set of allowed vector ids,
which FAISS applies inside the search (an ID selector), so ``k`` hits come back whenever ``k``
matching vectors exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import UsageError
from .library import Library
from .modality import (
    AUDIO,
    DEPTH,
    IMU,
    INDEX_KEYS,
    QUERY_KINDS,
    TEXT,
    THERMAL,
    VISION,
    FileKind,
    canonical,
    modality_of_key,
    segments_key,
)
from .terms import LIKE, Term, terms_from_inputs


@dataclass(frozen=True)
class Hit:
    """One result: a file (or a stretch of it, with ``start``/``end`` in seconds) and its score."""

    path: str
    score: float
    modality: str
    metadata: dict[str, Any] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": self.path,
            "score": round(float(self.score), 6),
            "modality": self.modality,
            "metadata": self.metadata,
        }
        if self.start is not None:
            data["start"], data["end"] = self.start, self.end
        return data


class Searcher:
    """Query a library: ``Searcher().query(text="a dog barking", target="vision")``.

    ``library`` is an opened :class:`~ibsearch.library.Library` or a library directory (default: the
    default library); ``model``, ``checkpoint``, ``device`` and ``precision`` are as for
    :meth:`Library.open`. Only the towers that the query's inputs need are loaded.
    """

    def __init__(
        self,
        library: Library | str | os.PathLike[str] | None = None,
        *,
        model: str | None = None,
        checkpoint: str | None = None,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        if isinstance(library, Library):
            self.library = library
            self._owned = False
        else:
            self.library = Library.open(
                library, model=model, checkpoint=checkpoint, device=device, precision=precision
            )
            self._owned = True

    def close(self) -> None:
        if self._owned:
            self.library.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the Python API

    def query(
        self,
        text: Any = None,
        image: Any = None,
        audio: Any = None,
        *,
        like: Any = None,
        vision: Any = None,
        video: Any = None,
        depth: Any = None,
        thermal: Any = None,
        imu: Any = None,
        target: str | list[str] | None = None,
        k: int = 10,
        path_glob: str | None = None,
        path_prefix: str | None = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
        segments: bool = False,
    ) -> list[Hit]:
        """Search with any mix of inputs; each keyword takes one input, a list, or ``weighted(x, w)``.

        Inputs: ``text`` strings; ``image``/``vision`` paths, bytes, PIL images or HxWx3 uint8
        arrays; ``audio`` paths or bytes; ``like`` paths of ingested files (their stored vectors).
        ``video`` paths (the picture of a video); ``depth``/``thermal``/``imu`` paths, bytes or arrays
        (see the README's conventions). ``target``: modality name(s) to search (``image`` is
        an alias of ``vision``; default all). ``segments=True`` returns timestamped segments of long
        media (best segment per file, with ``start``/``end`` seconds) instead of whole files.
        """
        inputs = [
            (TEXT, text, None), (VISION, image, None), (VISION, vision, None), (AUDIO, audio, None),
            (DEPTH, depth, None), (THERMAL, thermal, None), (IMU, imu, None), (LIKE, like, None),
            (VISION, video, FileKind.VIDEO),
        ]  # fmt: skip
        terms = [term for kind, given, media in inputs for term in terms_from_inputs(kind, given, media)]
        targets = [target] if isinstance(target, str) else target
        return self.search(
            terms,
            targets=targets,
            k=k,
            path_glob=path_glob,
            path_prefix=path_prefix,
            min_duration=min_duration,
            max_duration=max_duration,
            segments=segments,
        )

    def search(
        self,
        terms: list[Term],
        *,
        targets: list[str] | None = None,
        k: int = 10,
        path_glob: str | None = None,
        path_prefix: str | None = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
        segments: bool = False,
    ) -> list[Hit]:
        """Search with parsed :class:`Term` objects (what the CLI calls)."""
        if not terms:
            raise UsageError(
                "a query needs at least one input: --text, --image, --audio, --video, --depth, --thermal, "
                "--imu or --like"
            )
        if k < 1:
            raise UsageError(f"k must be at least 1, got {k}")
        lib = self.library
        present = lib.modalities_present()
        if not present:
            raise UsageError(f"library {str(lib.root)!r} is empty; run 'ibsearch ingest PATH' first")
        wanted = [canonical(t) for t in targets] if targets else present
        query = self.embed(terms)
        ranges = {}
        if min_duration is not None or max_duration is not None:
            ranges["duration"] = (min_duration, max_duration)
        filtered = bool(path_glob or path_prefix or ranges)
        found: list[tuple[float, int]] = []
        counts = lib.store.counts()
        for modality in dict.fromkeys(wanted):
            key = segments_key(modality) if segments else modality
            if key not in INDEX_KEYS or not counts.get(key):
                continue
            allowed = None
            if filtered:
                allowed = lib.store.select_vector_ids(key, under=path_prefix, glob=path_glob, ranges=ranges)
                if not len(allowed):
                    continue
            found += self._top(key, query, k, allowed, per_file=segments)
        found.sort(key=lambda item: -item[0])
        rows = lib.store.rows_for_vectors([i for _, i in found])
        hits: list[Hit] = []
        seen_files: set[int] = set()
        for score, vid in found:
            row = rows.get(vid)
            if row is None:
                continue  # deleted by a concurrent ingest since the index was read
            if segments and row.file_id in seen_files:
                continue  # the best segment of each file only
            seen_files.add(row.file_id)
            hits.append(Hit(row.path, score, modality_of_key(row.modality), row.info, row.start, row.end))
            if len(hits) == k:
                break
        return hits

    def _top(
        self, key: str, query: np.ndarray, k: int, allowed: np.ndarray | None, per_file: bool
    ) -> list[tuple[float, int]]:
        """Top hits of one index; with ``per_file``, enough hits to give ``k`` distinct files."""
        index = self.library.index(key)
        want = k
        while True:
            scores, ids = index.search(query[None, :], want, allowed_ids=allowed)
            found = [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
            if not per_file or len(found) < want:
                return found
            files = {
                row.file_id for row in self.library.store.rows_for_vectors([i for _, i in found]).values()
            }
            if len(files) >= k:
                return found
            want *= 4

    def embed(self, terms: list[Term]) -> np.ndarray:
        """The combined, L2-normalized query vector ``(dim,)`` float32 of ``terms``."""
        total = np.zeros(self.library.dim, dtype=np.float64)
        for term in terms:
            vec = self._term_vector(term).astype(np.float64)
            norm = np.linalg.norm(vec)
            if not np.isfinite(norm) or norm == 0:
                raise UsageError(f"query term {term.describe()} gave an empty vector")
            total += term.weight * vec / norm
        norm = np.linalg.norm(total)
        if norm < 1e-6:
            raise UsageError("the query terms cancel each other out; change their weights")
        return (total / norm).astype(np.float32)

    def _term_vector(self, term: Term) -> np.ndarray:
        if term.kind == LIKE:
            return self._stored_vector(str(term.value))
        from .encoder.embed import embed_input

        value = term.value
        if term.kind == TEXT:
            if not isinstance(value, str):
                raise UsageError(f"a text term must be a string, got {type(value).__name__}")
            value = value.encode("utf-8")  # read exactly like a text file
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str) and not os.path.exists(value):
            raise UsageError(f"{term.media or term.kind} query file {value!r} does not exist")
        kind = term.media or QUERY_KINDS[term.kind]
        return embed_input(self.library.encoder(), kind, term.kind, value)

    def _stored_vector(self, path: str) -> np.ndarray:
        stored = self.library.store.file_vectors(os.path.abspath(path))
        whole = [v.vector for v in stored if v.start is None]
        if not whole:
            raise UsageError(
                f"--like {path!r}: that file is not in the library; ingest it first or use --image/--audio"
            )
        # A video has a picture and a sound vector: --like means both, equally.
        return np.mean([v / np.linalg.norm(v) for v in whole], axis=0)
