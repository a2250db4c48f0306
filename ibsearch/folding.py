"""Near-duplicates folded: a hit whose vector is within a threshold of a better hit of the same
modality folds into it (``Hit.similar``: "and 4 similar"); what "within a threshold" means for a
library (:class:`Closeness`), which ``ibsearch duplicates`` (:mod:`ibsearch.duplicates`) shares.

**The threshold is a cosine rescaled to the library's spread.** ImageBind's cosines sit on a different
scale per modality (two unrelated pictures score far lower than two unrelated notes), and a model can
crowd all its vectors into a narrow cone (the tiny test model's unrelated pictures score 0.9999). So
a pair's likeness is ``(cos - m) / (1 - m)``, where ``m`` is the mean cosine between two of the
library's vectors of that modality (estimated from a sample of them: ``m = |mean vector|^2``, no pairs
needed): 1 for identical vectors (copies share them), 0 for what two unrelated files typically score.
Near-duplicates are those at :data:`FOLD_THRESHOLD` or above: 0.95, which with ImageBind's vision
spread (``m`` about 0.3 to 0.5) is a cosine of about 0.965 to 0.975, where re-encodes (0.98 and up)
and burst shots (about 0.95 to 0.98) lie and two photos of one scene taken apart (about 0.85 to 0.93)
do not.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .errors import UsageError
from .hits import Hit
from .index.exact import inner_products
from .library import LibraryResources
from .modality import segments_key
from .options import SearchOptions

#: Likeness (a cosine rescaled to the library's spread, see above) from which a file is a near-duplicate.
FOLD_THRESHOLD = 0.95
#: Below this distance (1 - cosine) vectors are the same whatever the spread: float32 rounding of one.
SAME_VECTOR = 1e-6


class Closeness:
    """How far apart (``1 - cosine``) two vectors of a modality of ``library`` may be to be near-duplicates
    at a ``threshold`` likeness; the spread of each modality is sampled once and kept while its id
    range stays the same."""

    def __init__(self, library: LibraryResources, threshold: float = FOLD_THRESHOLD) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            raise UsageError(f"--threshold must be a likeness from 0 to 1 (1: identical), got {threshold!r}")
        self.library, self.threshold = library, float(threshold)
        self._spreads: dict[str, tuple[tuple[int, int] | None, float]] = {}

    def limit(self, modality: str) -> float:
        """The largest ``1 - cosine`` of two near-duplicate vectors of ``modality``."""
        return max((1.0 - self.threshold) * self.spread(modality), SAME_VECTOR)

    def spread(self, modality: str) -> float:
        """``1 - m``: how far from identical two of the library's vectors of ``modality`` typically are
        (1.0, the plain cosine, with fewer than two vectors)."""
        ends = self.library.store.vectors.id_range(modality)
        kept = self._spreads.get(modality)
        if kept is not None and kept[0] == ends:
            return kept[1]
        sample, spread = self.library.store.vectors.sample(modality), 1.0
        if len(sample) >= 2:
            n = len(sample)
            total = sample.astype(np.float64).sum(axis=0)
            mean_cosine = (float(total @ total) - n) / (n * (n - 1))  # over distinct pairs, unbiased
            spread = min(max(1.0 - mean_cosine, 0.0), 1.0)
        self._spreads[modality] = (ends, spread)
        return spread


class Folding:
    """Folds the near-duplicates among a search's hits into the best of them (``Hit.similar``)."""

    def __init__(self, library: LibraryResources, threshold: float = FOLD_THRESHOLD) -> None:
        self.library = library
        self.closeness = Closeness(library, threshold)

    def fold_similar(self, hits: list[Hit], opts: SearchOptions) -> list[Hit]:
        """``hits`` (best first) with each one near a better hit of its modality (another file's)
        folded into the first such hit, with ``opts.fold``. Hits found by keywords alone (no vector)
        neither fold nor take others in."""
        if not opts.fold or sum(h.vector_id is not None for h in hits) < 2:
            return hits
        ids, vectors = self._vectors(hits, opts)
        row_of = {int(i): n for n, i in enumerate(ids.tolist())}
        rows = np.array([row_of.get(h.vector_id, -1) if h.vector_id is not None else -1 for h in hits])
        modality = np.array([h.modality for h in hits])
        files = np.array([-1 if h.file_id is None else h.file_id for h in hits])
        limits = {m: self.closeness.limit(m) for m in set(modality[rows >= 0].tolist())}
        near = _near_pairs(inner_products(vectors, vectors), rows, modality, files, limits)
        leaders: list[int] = []
        folded: dict[int, list[Hit]] = {}
        for n, (hit, near_n) in enumerate(zip(hits, near.tolist(), strict=True)):
            into = next((j for j in leaders if near_n[j]), None)  # the first better hit it is near
            if into is None:
                leaders.append(n)
            else:
                folded.setdefault(into, []).append(hit)
        return [
            replace(hits[n], similar=hits[n].similar + tuple(folded[n])) if n in folded else hits[n]
            for n in leaders
        ]

    def _vectors(self, hits: list[Hit], opts: SearchOptions) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of the hits' vectors: from the memory of the exact indexes they came from
        (no database read: 11 us a vector), the rest (an approximate index's) in one store call."""
        wanted: dict[str, list[int]] = {}
        for hit in hits:
            if hit.vector_id is not None:
                key = segments_key(hit.modality) if opts.segments else hit.modality
                wanted.setdefault(key, []).append(hit.vector_id)
        found = [self.library.index(key).vectors_of(np.array(ids, np.int64)) for key, ids in wanted.items()]
        held = np.concatenate([f[0] for f in found])
        rest = set(v for ids in wanted.values() for v in ids) - set(held.tolist())
        if rest:
            found.append(self.library.store.vectors.by_id(sorted(rest)))
        return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])


def _near_pairs(
    products: np.ndarray, rows: np.ndarray, modality: np.ndarray, files: np.ndarray, limits: dict[str, float]
) -> np.ndarray:
    """``near[i, j]``: hit ``i`` is a near-duplicate of hit ``j`` (both with a vector, of one modality,
    of two files, within the limit of ``i``'s modality); ``products`` are the vectors' inner products,
    the hits' vectors at ``rows`` (-1: none)."""
    held = rows >= 0
    at = np.maximum(rows, 0)
    limit = np.array([limits[str(m)] if h else -np.inf for m, h in zip(modality, held, strict=True)])
    near = 1.0 - products[np.ix_(at, at)] <= limit[:, None]
    near &= held[:, None] & held[None, :]
    near &= modality[:, None] == modality[None, :]
    near &= files[:, None] != files[None, :]
    return near


__all__ = ["FOLD_THRESHOLD", "Closeness", "Folding"]
