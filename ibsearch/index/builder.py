"""Building an index from a library's vectors: exact, or approximate trained, filled and tuned.

An approximate (IVF) index is trained on a random sample of the vectors (k-means on the inverted lists'
centroids), then filled in one pass over all of them; the same pass collects the exact neighbours of
some sample vectors, and :func:`.tuner.tune` picks the ``nprobe`` that reaches the recall target. The
outcome is recorded in the index (:class:`.persist.BuildRecord`) and so in its sidecar.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Protocol

import faiss
import numpy as np

from .faiss_index import EXACT, FaissIndex
from .persist import BuildRecord, IndexMeta, Tuning
from .policy import AUTO, IndexPolicy, short_of_target
from .policy import TRAIN_PER_LIST as MIN_TRAIN_PER_LIST
from .stream import write_exact
from .tuner import TruthCollector, tune

log = logging.getLogger(__name__)

#: k-means iterations when training the lists (FAISS's default is 25; 10 loses no recall we could
#: measure and keeps a 1M-vector build within minutes on 2 cores).
TRAIN_ITERATIONS = 10
#: Training vectors per list (FAISS warns below 39; more costs time linearly).
TRAIN_PER_LIST = 40
#: The tuner aims this far above the recall target, so that it holds for queries that are not library
#: vectors too: 500 queries measure recall to about +-0.005 (on 1M vectors, held-out queries came
#: within 0.003 of the tuned recall, BENCHMARKS.md).
RECALL_MARGIN = 0.005

Chunks = Iterable[tuple[np.ndarray, np.ndarray]]


class StoredVectors(Protocol):
    """The stored vectors of one index key, as a build reads them: all their ids (sorted), every
    ``(ids, vectors)`` chunk in id order, and the vectors of chosen ids."""

    def ids(self) -> np.ndarray: ...

    def chunks(self) -> Chunks: ...

    def fetch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def train_size(spec: str, dim: int, n: int) -> int:
    """How many of ``n`` vectors to train an index of ``spec`` on (0 for an exact index)."""
    if spec == EXACT:
        return 0
    lists = FaissIndex(dim, spec).nlist
    return min(n, TRAIN_PER_LIST * lists)


def trainable(spec: str, dim: int, n: int) -> bool:
    """Whether ``n`` vectors are enough to train ``spec``."""
    return spec == EXACT or n >= MIN_TRAIN_PER_LIST * FaissIndex(dim, spec).nlist


def build_exact(
    dim: int, chunks: Chunks, *, model_id: str | None, reason: str, declined: str = ""
) -> FaissIndex:
    """An exact index of every vector in ``chunks``, with its build record."""
    started = time.perf_counter()
    index = FaissIndex.build(dim, chunks, model_id=model_id)
    index.record = _record(index.ntotal, started, reason=reason, declined=declined)
    return index


def save_exact(
    path: str | os.PathLike[str],
    dim: int,
    chunks: Chunks,
    count: int,
    *,
    model_id: str | None,
    reason: str,
    declined: str = "",
) -> IndexMeta:
    """The file (and sidecar) of :func:`build_exact`'s index of the ``count`` vectors in ``chunks``,
    written to ``path`` as they are read, never held (:func:`.stream.write_exact`); returns the sidecar."""
    started = time.perf_counter()
    record = partial(_record, count, started, reason=reason, declined=declined)
    return write_exact(path, dim, chunks, count, model_id=model_id, record=record)


def exact_index(
    dim: int,
    chunks: Chunks,
    count: int,
    path: str | os.PathLike[str] | None,
    model_id: str | None,
    *,
    reason: str,
    declined: str = "",
) -> FaissIndex | None:
    """:func:`build_exact`'s index of the ``count`` vectors in ``chunks``, or with ``path`` its file (and
    sidecar) written there by :func:`save_exact` instead (None then)."""
    if path is None:
        return build_exact(dim, chunks, model_id=model_id, reason=reason, declined=declined)
    save_exact(path, dim, chunks, count, model_id=model_id, reason=reason, declined=declined)
    return None


def training_sample(
    spec: str, dim: int, ids: np.ndarray, fetch: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """The vectors to train an index of ``spec`` on (:func:`train_size`), picked at random among
    ``ids`` (all of an index key's, sorted) and read with ``fetch``: ``(ids, vectors)``."""
    size = train_size(spec, dim, len(ids))
    pick = np.sort(np.random.default_rng(len(ids)).choice(ids, size=min(size, len(ids)), replace=False))
    return fetch(pick)


def _record(count: int, started: float, **facts: Any) -> BuildRecord:
    """The build record of an index of ``count`` vectors just built (since ``started``, a
    ``perf_counter`` time)."""
    seconds = round(time.perf_counter() - started, 2)
    return BuildRecord(built=time.time(), built_count=count, build_seconds=seconds, **facts)


def build_approximate(
    dim: int,
    spec: str,
    sample: tuple[np.ndarray, np.ndarray],
    chunks: Chunks,
    policy: IndexPolicy,
    *,
    model_id: str | None,
    reason: str,
) -> FaissIndex:
    """An approximate index of ``spec`` over ``chunks``, trained on ``sample`` ``(ids, vectors)`` and
    tuned to ``policy.recall`` with up to ``policy.tune_queries`` of the sample vectors as queries.

    The returned index's ``record.tuning`` says what was reached; when even ``policy.max_scan`` of the
    lists fall short of the target, ``tuning.recall`` is below it (the caller may keep exact instead).
    Under ``auto`` the index is first filled with the sample alone and tuned: all the vectors are
    searched no better than a sample of them (each list holds more neighbours to tell apart; measured
    on six sets, BENCHMARKS.md), so when the sample falls short of the target, all of them would too,
    and the index comes back holding only the sample (its ``ntotal``), ``chunks`` unread.
    """
    started = time.perf_counter()
    index = FaissIndex(dim, spec, model_id=model_id)
    ivf: Any = faiss.extract_index_ivf(index._index)
    ivf.cp.niter = TRAIN_ITERATIONS
    ivf.cp.max_points_per_centroid = 1 << 30  # the sample is already the right size
    sample_ids, sample_vectors = sample
    index.train(sample_vectors)
    pick = np.random.default_rng(0).permutation(len(sample_ids))[: policy.tune_queries]
    queries = sample_vectors[pick], sample_ids[pick]
    top = max(1, int(policy.max_scan * index.nlist)) if policy.kind == AUTO else index.nlist
    aim = min(policy.recall + RECALL_MARGIN, 0.999)
    if policy.kind == AUTO:
        tuning = _filled_and_tuned(index, queries, [sample], policy.k, aim, top)
        if tuning.recall < policy.recall:
            index.record = _record(index.ntotal, started, reason=reason, tuning=tuning)
            log.info(
                "%s: recall %.3f on a sample of %d vectors, short of the target",
                spec,
                tuning.recall,
                index.ntotal,
            )
            return index
        index.remove(sample_ids)
    tuning = _filled_and_tuned(index, queries, chunks, policy.k, aim, top)
    index.record = _record(index.ntotal, started, reason=reason, tuning=tuning)
    log.info("built %s over %d vectors: nprobe %d, recall@%d %.3f", spec, index.ntotal, tuning.nprobe,
             tuning.k, tuning.recall)  # fmt: skip
    return index


def _filled_and_tuned(
    index: FaissIndex, queries: tuple[np.ndarray, np.ndarray], chunks: Chunks, k: int, aim: float, top: int
) -> Tuning:
    """Add ``chunks`` to ``index`` while collecting the exact top-``k`` of ``queries`` ``(vectors,
    ids)`` among them, then tune its ``nprobe`` (up to ``top``) to recall ``aim``."""
    truth = TruthCollector(queries[0], queries[1], k)
    for ids, vectors in chunks:
        index.add(ids, vectors)
        truth.add(ids, vectors)
    return tune(index, truth.queries, truth.query_ids, truth.truth(), aim, top)


def declined_reason(spec: str, tuning: Tuning, policy: IndexPolicy, filled: int, n: int) -> str:
    """Why ``auto`` keeps an exact index of ``n`` vectors rather than the index of ``spec`` that
    reached ``tuning`` filled with ``filled`` of them, in words."""
    on = f" filled with a sample of {filled:,} (all {n:,} only do worse)" if filled < n else ""
    return (
        f"{spec} reached recall {tuning.recall:.3f} < {policy.recall} with {policy.max_scan:.0%} of its "
        f"lists{on}: no faster than exact search on these vectors, so exact"
    )


def build_by_policy(
    dim: int,
    spec: str,
    n: int,
    policy: IndexPolicy,
    store: StoredVectors,
    *,
    reason: str,
    path: str | os.PathLike[str] | None = None,
    model_id: str | None = None,
) -> tuple[FaissIndex | None, str | None]:
    """The index of ``spec`` that ``policy`` gives the ``n`` vectors of ``store``, built from it, or with
    ``path`` an exact one written there instead (None then); and a warning when a kind the policy forces
    falls short of its recall target. An approximate kind too big for ``n`` to train, or (under ``auto``)
    one that misses the target, is declined for exact, and the reason says so."""
    if spec == EXACT:
        return exact_index(dim, store.chunks(), n, path, model_id, reason=reason), None
    if not trainable(spec, dim, n):
        why = f"{n:,} vectors are too few to train {spec}: exact until there are more"
        return exact_index(dim, store.chunks(), n, path, model_id, reason=why, declined=spec), None
    sample = training_sample(spec, dim, store.ids(), store.fetch)
    index = build_approximate(dim, spec, sample, store.chunks(), policy, model_id=model_id, reason=reason)
    del sample  # 335 MB at 1024-d: not kept through an exact build
    tuning = index.record.tuning
    if tuning is None or tuning.recall >= policy.recall:
        return index, None
    if policy.kind != AUTO:
        return index, short_of_target(spec, tuning.recall, policy.recall)
    why = declined_reason(spec, tuning, policy, index.ntotal, n)
    del index
    return exact_index(dim, store.chunks(), n, path, model_id, reason=why, declined=spec), None


__all__ = [
    "TRAIN_ITERATIONS",
    "StoredVectors",
    "build_approximate",
    "build_by_policy",
    "build_exact",
    "declined_reason",
    "exact_index",
    "save_exact",
    "train_size",
    "training_sample",
    "trainable",
]
