"""Building an index from a library's vectors: exact, or approximate trained, filled and tuned.

An approximate (IVF) index is trained on a random sample of the vectors (k-means on the inverted lists'
centroids), then filled in one pass over all of them; the same pass collects the exact neighbours of
some sample vectors, and :func:`.tuner.tune` picks the ``nprobe`` that reaches the recall target. The
outcome is recorded in the index (:class:`.persist.BuildRecord`) and so in its sidecar.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import faiss
import numpy as np

from .faiss_index import EXACT, FaissIndex
from .persist import BuildRecord
from .policy import TRAIN_PER_LIST as MIN_TRAIN_PER_LIST
from .policy import IndexPolicy
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
    index.record = _record(index, started, reason=reason, declined=declined)
    return index


def _record(index: FaissIndex, started: float, **facts: Any) -> BuildRecord:
    """The build record of ``index``, just built (since ``started``, a ``perf_counter`` time)."""
    seconds = round(time.perf_counter() - started, 2)
    return BuildRecord(built=time.time(), built_count=index.ntotal, build_seconds=seconds, **facts)


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
    """
    started = time.perf_counter()
    index = FaissIndex(dim, spec, model_id=model_id)
    ivf: Any = faiss.extract_index_ivf(index._index)
    ivf.cp.niter = TRAIN_ITERATIONS
    ivf.cp.max_points_per_centroid = 1 << 30  # the sample is already the right size
    sample_ids, sample_vectors = sample
    index.train(sample_vectors)
    pick = np.random.default_rng(0).permutation(len(sample_ids))[: policy.tune_queries]
    truth = TruthCollector(sample_vectors[pick], sample_ids[pick], policy.k)
    for ids, vectors in chunks:
        index.add(ids, vectors)
        truth.add(ids, vectors)
    top = max(1, int(policy.max_scan * index.nlist)) if policy.kind == "auto" else index.nlist
    aim = min(policy.recall + RECALL_MARGIN, 0.999)
    tuning = tune(index, truth.queries, truth.query_ids, truth.truth(), aim, top)
    index.record = _record(index, started, reason=reason, tuning=tuning)
    log.info("built %s over %d vectors: nprobe %d, recall@%d %.3f", spec, index.ntotal, tuning.nprobe,
             tuning.k, tuning.recall)  # fmt: skip
    return index


__all__ = ["TRAIN_ITERATIONS", "build_approximate", "build_exact", "train_size", "trainable"]
