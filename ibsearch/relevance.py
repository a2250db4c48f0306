"""Calibrated relevance: a hit's raw score (a cosine) mapped to a relevance that means the same for
every pair of query kind and target modality (ImageBind's cosines live on different scales per pair),
so that hits of several modalities interleave and one threshold means one thing (README "Relevance").

**What a relevance is.** A hit's relevance ``r`` is the share of the library's items of its index
(its modality, or that modality's segments) that score below it for this query: ``0.99`` means one
item in a hundred of that modality scores as high. Most of a library is unrelated to any one query, so
``min_relevance r`` lets about ``1 - r`` of the unrelated items of each modality through.

**How it is estimated** (chosen by measurement, BENCHMARKS.md "Calibrated relevance"): per query, from its
scores against a fixed sample of each index's vectors (:data:`SAMPLE_SIZE`, kept in memory per index key and
drawn again when the index changes). An exact index's search scores every vector anyway: its scores at a fixed
sample of the rows are taken from that product instead (:class:`~ibsearch.index.exact.ScoreSample`), so only
an approximate index's sample is scored apart. Up to the sample's top :data:`TAIL_SHARE` a score's share is
read off the sample itself (the empirical distribution); beyond it, where a sample has few or no points, from
an exponential tail fitted to those top scores (a generalized Pareto of shape 0, by its mean excess). The tail
also orders the hits that beat every sampled item (true matches): by how far beyond the sample they lie, in
that modality's own spread. A modality of fewer than :data:`EMPIRICAL_FROM` vectors is scored with a normal
fitted to them. Because the sample is scored with the query vector itself, a weighted mix of inputs is
calibrated the same way as a single one (nothing depends on which tower made the query).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from .hits import Hit
from .index.exact import ScoreSample, hashed_first, inner_products
from .library import LibraryResources
from .modality import segments_key
from .options import SearchOptions

#: Vectors of each index a query is scored against (8 MB of 1024-d float32 per index key).
SAMPLE_SIZE = 2048
#: The top share of the sample where the fitted tail takes over from the sample itself (11 of 2048).
TAIL_SHARE = 0.005
#: With fewer sampled vectors than this (a modality of a few items), the normal fit alone.
EMPIRICAL_FROM = 64
#: The least spread of scores assumed (a modality of one item, or of copies, has none).
MIN_SPREAD = 0.01
#: A score from here up is the query's own vector (``--like`` of a file, a copy of it): nothing can be
#: more relevant, whatever a small modality's fit says, so its share above is nil.
SAME_VECTOR = 0.9999


@dataclass(frozen=True)
class RelevanceScale:
    """One query's scale on one index: its scores against the index's sample, ascending (``scores``),
    where the tail starts (the top ``in_tail`` of them) and how fast it falls (``excess``: the mean of
    the tail's scores above its start), with the normal fitted to them (``mean``, ``spread``) for a
    sample too small to have a tail of its own."""

    scores: np.ndarray
    in_tail: int
    excess: float
    mean: float
    spread: float

    @classmethod
    def of(cls, scores: np.ndarray, tail_share: float = TAIL_SHARE) -> RelevanceScale:
        """The scale of the sample's ``scores`` ``(n,)`` (n >= 1) for one query."""
        ordered = np.sort(np.asarray(scores, dtype=np.float64))
        n = len(ordered)
        in_tail = max(1, math.ceil(tail_share * n))
        top = ordered[n - in_tail :]
        excess = max(float(top.mean() - top[0]), MIN_SPREAD / 10)
        return cls(ordered, in_tail, excess, float(ordered.mean()), max(float(ordered.std()), MIN_SPREAD))

    def log_share_above(self, scores: np.ndarray) -> np.ndarray:
        """The natural log of the share of the index's items expected to score above each of ``scores``
        ``(m,)``: the sample's share, or the fitted tail's beyond the sample's top ``in_tail`` (never
        -inf, so that it orders the hits beyond every sampled item)."""
        x = np.asarray(scores, dtype=np.float64)
        n = len(self.scores)
        if n < EMPIRICAL_FROM:
            return _same_first(x, _log_normal_above(x, self.mean, self.spread))
        start = self.scores[n - self.in_tail]  # (in_tail - 0.5) / n of the sample lie above it
        body = np.log1p(-np.interp(x, self.scores, (np.arange(n) + 0.5) / n))
        # Beyond it, an exponential tail (a generalized Pareto of shape 0, fitted by its mean excess):
        # scores of unrelated items have heavier tails than a normal fitted to all of them (a library
        # is made of topics), and a bounded fit would give every true match the same relevance, 1.
        tail = math.log((self.in_tail - 0.5) / n) - (x - start) / self.excess
        return _same_first(x, np.where(x > start, tail, body))

    def relevance(self, scores: np.ndarray) -> np.ndarray:
        """The relevance of each of ``scores`` ``(m,)``: the share of the index's items expected to
        score below it, in [0, 1]."""
        return -np.expm1(self.log_share_above(scores))


def _same_first(scores: np.ndarray, log_above: np.ndarray) -> np.ndarray:
    """``log_above`` with the scores of the query's own vector (:data:`SAME_VECTOR`) at -inf."""
    return np.where(scores >= SAME_VECTOR, -np.inf, log_above)


def _log_normal_above(x: np.ndarray, mean: float, spread: float) -> np.ndarray:
    """log P(X > x) for X normal(mean, spread), accurate far into the tail (where 1 - CDF rounds to 0)."""
    z = (x - mean) / spread
    out = np.empty_like(z)
    for i, value in enumerate(z.tolist()):
        if value < 30.0:
            out[i] = math.log(0.5 * math.erfc(value / math.sqrt(2.0)))
        else:  # erfc underflows: the asymptotic series' first terms
            out[i] = -0.5 * value * value - math.log(value * math.sqrt(2.0 * math.pi)) - value**-2
    return out


@dataclass
class _Sample:
    """The sample of one index key, and the state of the index it was drawn from."""

    index: weakref.ref[Any]
    size: int
    ids: np.ndarray  # the sampled ids, in the order of the index's ids
    rows: np.ndarray  # where they are among the index's ids (sorted): an exact index's rows
    vectors: np.ndarray | None = None  # (n, dim) float32, read when first needed


class Calibration:
    """Relevance of ``library``'s hits for a query (one per :class:`~ibsearch.search.Searcher`: the
    samples it keeps serve every query until their index changes)."""

    def __init__(self, library: LibraryResources, sample_size: int = SAMPLE_SIZE) -> None:
        self.library = library
        self.sample_size = sample_size
        self._samples: dict[str, _Sample] = {}

    def sample(self, key: str) -> np.ndarray:
        """Up to ``sample_size`` vectors ``(n, dim)`` of index ``key``, the same ones while the index
        is unchanged; a changed index (added to, removed from, rebuilt or reloaded) is sampled again,
        and since the sample is the ids first in a fixed hashed order, mostly the same ones."""
        kept = self._sample(key)
        if kept.vectors is None:  # read when first scored apart: an exact index's search never needs them
            index = self.library.index(key)
            found, vectors = index.vectors_of(kept.ids)  # from its memory, where it holds them as they are
            rest = np.setdiff1d(kept.ids, found)
            if len(rest):  # (an approximate index holds codes; a vector gone from the store is left out)
                found, more = self.library.store.vectors.by_id(rest)
                vectors = np.concatenate([vectors, more])
            kept.vectors = vectors
        return kept.vectors

    def _sample(self, key: str) -> _Sample:
        index = self.library.index(key)
        kept = self._samples.get(key)
        if kept is not None and kept.index() is index and kept.size == index.ntotal:
            return kept
        ids = index.ids()
        at = hashed_first(ids, self.sample_size)
        kept = self._samples[key] = _Sample(weakref.ref(index), index.ntotal, ids[at], at)
        return kept

    def asking(self, keys: list[str]) -> dict[str, ScoreSample]:
        """What a search of the indexes ``keys`` fills with the query's scores at each one's sample,
        where it scores every vector anyway (an exact index), for :meth:`apply`."""
        drawn = {key: self._sample(key) for key in keys}
        return {key: ScoreSample(sample.ids, sample.rows) for key, sample in drawn.items()}

    def scale(self, query: np.ndarray, key: str, given: ScoreSample | None = None) -> RelevanceScale:
        """The scale of ``query`` ``(dim,)`` on index ``key``: its scores against a sample of the index,
        those its search ``given`` when it has them, else against the key's sample of vectors."""
        if given is not None and given.scores is not None and len(given.scores) == 1:
            return RelevanceScale.of(given.scores[0])
        return RelevanceScale.of(inner_products(self.sample(key), query[None])[0])

    def apply(
        self,
        query: np.ndarray,
        hits: list[Hit],
        opts: SearchOptions,
        sampled: dict[str, ScoreSample] | None = None,
    ) -> list[Hit]:
        """``hits`` (of the search for ``query`` ``(dim,)``) with their relevance set, best first by
        relevance across modalities, those below ``opts.min_relevance`` left out; ``sampled`` is what
        the search filled (:meth:`asking`), if any."""
        ranked: list[tuple[float, int, Hit]] = []
        least = None if opts.min_relevance is None else float(opts.min_relevance)  # validated: a number
        for key, members in _by_key(hits, opts).items():
            scale = self.scale(query, key, None if sampled is None else sampled.get(key))
            log_above = scale.log_share_above(np.array([hits[i].score for i in members]))
            for i, log_share in zip(members, log_above.tolist(), strict=True):
                relevance = -math.expm1(log_share)
                if least is None or relevance >= least:
                    ranked.append((log_share, i, hits[i].changed(relevance=relevance)))
        ranked.sort(key=lambda item: item[:2])  # the rarest score first; ties keep the search's order
        return [hit for _, _, hit in ranked]


def _by_key(hits: list[Hit], opts: SearchOptions) -> dict[str, list[int]]:
    """The positions of ``hits`` by the index key each came from."""
    keys: dict[str, list[int]] = {}
    for i, hit in enumerate(hits):
        keys.setdefault(segments_key(hit.modality) if opts.segments else hit.modality, []).append(i)
    return keys


__all__ = ["SAMPLE_SIZE", "Calibration", "RelevanceScale"]
