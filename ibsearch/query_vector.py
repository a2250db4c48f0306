"""The query embedder: a query's terms to the one vector that is searched for.

Combination rule (documented in the README): each term's vector is L2-normalized, multiplied by its
weight, summed, and the sum is L2-normalized again. A ``like`` term reuses an ingested file's stored
vector, a ``vector`` term is a raw embedding, and every other term is embedded by its modality's
tower through the same loaders as ingested files (:func:`~ibsearch.encoder.embed.embed_input`).

A :class:`TermCache` plugs in between a term and its tower (the server remembers recent texts).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .errors import UsageError
from .library import LibraryResources
from .modality import MODALITIES, QUERY_KINDS, TEXT
from .terms import LIKE, VECTOR, Term

#: How a term's vector is computed without a cache.
Compute = Callable[[Term], np.ndarray]


class TermCache(Protocol):
    """Where a :class:`QueryEmbedder` asks for each term's vector: the cache returns one it holds,
    or ``compute(term)`` (and may keep it)."""

    def vector(self, term: Term, compute: Compute) -> np.ndarray: ...


class QueryEmbedder:
    """Turns query terms into one query vector for ``library`` (its model, its stored vectors),
    asking ``cache`` for each term's vector first when one is given."""

    def __init__(self, library: LibraryResources, cache: TermCache | None = None) -> None:
        self.library = library
        self.cache = cache
        self.seconds = 0.0  # how long the last :meth:`embed` took

    def embed(self, terms: list[Term]) -> np.ndarray:
        """The combined, L2-normalized query vector ``(dim,)`` float32 of ``terms``."""
        started = time.perf_counter()
        try:
            return self._combine(terms)
        finally:
            self.seconds = time.perf_counter() - started

    def _combine(self, terms: list[Term]) -> np.ndarray:
        total = np.zeros(self.library.dim, dtype=np.float64)
        for term in terms:
            vec = self.term_vector(term).astype(np.float64)
            norm = np.linalg.norm(vec)
            if not np.isfinite(norm) or norm == 0:
                raise UsageError(f"query term {term.describe()} gave an empty vector")
            total += term.weight * vec / norm
        norm = np.linalg.norm(total)
        if norm < 1e-6:
            raise UsageError("the query terms cancel each other out; change their weights")
        return (total / norm).astype(np.float32)

    def term_vector(self, term: Term) -> np.ndarray:
        """One term's vector, through the cache when there is one."""
        return self.cache.vector(term, self.compute) if self.cache else self.compute(term)

    def compute(self, term: Term) -> np.ndarray:
        """One term's vector, computed: a stored vector, a raw one, or the tower's."""
        if term.kind == LIKE:
            return self._stored_vector(str(term.value))
        if term.kind == VECTOR:
            return self._raw_vector(term.value)
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

    def _raw_vector(self, value: Any) -> np.ndarray:
        try:
            vec = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise UsageError(f"a vector term must be numbers, got {type(value).__name__}") from None
        dim = self.library.dim
        if vec.shape not in ((dim,), (1, dim)):
            raise UsageError(f"a vector term must have shape ({dim},) for this library, got {vec.shape}")
        if not np.isfinite(vec).all():
            raise UsageError("a vector term holds NaN or infinite values")
        return vec.reshape(dim)

    def _stored_vector(self, path: str) -> np.ndarray:
        stored = self.library.store.vectors.of_file(os.path.abspath(path))
        # The file-level vectors: not timed segments, nor a note's passages (they have no start either).
        whole = [v.vector for v in stored if v.start is None and v.modality in MODALITIES]
        if not whole:
            raise UsageError(
                f"--like {path!r}: that file is not in the library; ingest it first or use --image/--audio"
            )
        # A video has a picture and a sound vector: --like means both, equally.
        return np.mean([v / np.linalg.norm(v) for v in whole], axis=0)


__all__ = ["QueryEmbedder", "TermCache"]
