"""Which kind of index each modality gets, and when an index must be built again.

Below :attr:`IndexPolicy.exact_below` vectors an index is exact (``Flat``): a query scans every vector,
which is cheap there, and results are exact. From that size on, ``auto`` builds an approximate IVF index
(:func:`approximate_spec`) whose search parameter is tuned to a recall target when it is built
(:mod:`.builder`). A library can force a kind instead (``exact``, or a FAISS factory string).

The defaults come from ``scripts/bench_search.py`` on a 2-core CPU (BENCHMARKS.md): the exact limit is
where one exact query stops being cheap next to the approximate one, the full-scan limit where an exact
search over a filter's vectors stops being cheaper than the filtered approximate search.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import UsageError
from .persist import BuildRecord

EXACT = "Flat"
AUTO = "auto"
EXACT_KIND = "exact"

#: Vectors per index key from which ``auto`` builds an approximate index (see BENCHMARKS.md).
DEFAULT_EXACT_BELOW = 100_000
#: Filtered searches allowing at most this many vectors are exact over exactly those, read from the
#: database (as Qdrant's ``full_scan_threshold``); above it the filter runs inside the approximate search,
#: which then probes more lists (all of them for a filter of under 1/nprobe of the vectors). Reading a
#: vector back costs about 14 us; at 1M vectors the two ways cost the same at 500 to 1,000 allowed.
DEFAULT_FULL_SCAN_BELOW = 1_000
#: IVF lists with a graph (HNSW) coarse quantizer from this many on: it finds a query's lists without
#: scanning every centroid (8 MB of them at 2048 lists of 1024-d).
HNSW_QUANTIZER_FROM = 2048
#: Training vectors per IVF list: FAISS's k-means warns below 39.
TRAIN_PER_LIST = 39
#: What an approximate index stores per vector (see BENCHMARKS.md for the measured choice): 4-bit
#: product-quantizer codes of 4 dimensions each, scanned in SIMD registers (FAISS's fast scan), whose
#: candidates are ranked by 16-bit float codes of the same vectors' residuals (:mod:`.refine`). At 1M x
#: 1024 the fast scan answered in half the time of SQ8 codes alone at the same recall (2.66 against
#: 5.65 ms). 8-bit ranking codes capped recall@10 at 0.94 on tight clusters (300k vectors, 2,000
#: centres, every true neighbour among the candidates): their step is as coarse as the gaps between
#: a cluster's near-equal members, which 16-bit floats tell apart (0.996).
DIMS_PER_PQ_CODE = 4
REFINE_CODES = "SQfp16"
#: Codes for a dimension that 4-bit fast scan cannot split evenly: 8-bit scalar codes, scanned directly.
PLAIN_CODES = "SQ8"


@dataclass(frozen=True)
class IndexPolicy:
    """The index choice of one library (remembered in its database); every field has a default."""

    kind: str = AUTO  # "auto", "exact", or a FAISS factory string such as "IVF1024,Flat"
    exact_below: int = DEFAULT_EXACT_BELOW  # auto: exact below this many vectors per index key
    recall: float = 0.95  # recall@k against exact search that an approximate index is tuned to
    k: int = 10  # the k of that recall
    full_scan_below: int = DEFAULT_FULL_SCAN_BELOW  # filters allowing at most this many: exact search
    retrain_after: float = 0.5  # rebuild once this fraction of the built vectors was added or removed
    tune_queries: int = 500  # library vectors used as queries when tuning
    max_scan: float = 0.3  # auto: if the recall needs more of the lists than this, exact is kept

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind.strip():
            raise UsageError(f"index kind must be auto, exact or a FAISS factory string, got {self.kind!r}")
        object.__setattr__(self, "kind", _normal_kind(self.kind))
        if not 0 < self.recall < 1:
            raise UsageError(f"recall target must lie between 0 and 1 (e.g. 0.95), got {self.recall!r}")
        for name in ("exact_below", "k", "full_scan_below", "tune_queries"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (1 if name in ("k", "tune_queries") else 0):
                raise UsageError(f"index setting {name} must be a whole number, got {value!r}")
        if not 0 < self.retrain_after or not 0 < self.max_scan <= 1:
            raise UsageError(
                "index settings retrain_after and max_scan must be positive (max_scan at most 1)"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> IndexPolicy:
        """A policy from a remembered setting (unknown keys, from a newer version, are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def with_changes(self, **changes: Any) -> IndexPolicy:
        """This policy with some fields changed (None values leave a field as it is)."""
        return IndexPolicy(**{**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})


def _normal_kind(kind: str) -> str:
    low = kind.strip().lower()
    return low if low in (AUTO, EXACT_KIND) else (EXACT_KIND if kind.strip() == EXACT else kind.strip())


def nlist_for(n: int) -> int:
    """IVF lists for ``n`` vectors: the power of two nearest 2 * sqrt(n), with at least
    :data:`TRAIN_PER_LIST` vectors per list to train on. FAISS's guideline is 4 to 16 * sqrt(n); at 1M
    vectors 2048 lists needed the same vectors scanned per query as 4096 for recall 0.95 and a quarter
    of the k-means time (BENCHMARKS.md)."""
    lists = 2 ** round(math.log2(max(2 * math.sqrt(max(n, 1)), 1)))
    return int(max(1, min(lists, 65536, 2 ** int(math.log2(max(n // TRAIN_PER_LIST, 1))))))


def approximate_spec(n: int, dim: int) -> str:
    """The FAISS factory string ``auto`` uses for ``n`` vectors of ``dim`` dimensions, e.g.
    ``IVF2048_HNSW32,PQ256x4fs,Refine(SQfp16)`` at 1M x 1024."""
    lists = nlist_for(n)
    coarse = f"IVF{lists}_HNSW32" if lists >= HNSW_QUANTIZER_FROM else f"IVF{lists}"
    m, rest = divmod(dim, DIMS_PER_PQ_CODE)
    if rest or m % 2:  # fast scan packs two 4-bit codes to a byte
        return f"{coarse},{PLAIN_CODES}"
    return f"{coarse},PQ{m}x4fs,Refine({REFINE_CODES})"


def wanted_spec(policy: IndexPolicy, n: int, dim: int) -> str:
    """The spec an index of ``n`` vectors of ``dim`` should have under ``policy`` (``Flat`` for exact)."""
    if policy.kind == EXACT_KIND:
        return EXACT
    if policy.kind != AUTO:
        return policy.kind
    return EXACT if n < policy.exact_below else approximate_spec(n, dim)


def rebuild_reason(policy: IndexPolicy, spec: str, record: BuildRecord, n: int, dim: int) -> str | None:
    """Why an index of kind ``spec`` now holding ``n`` vectors of ``dim`` should be built again (None:
    keep it)."""
    # An approximate spec that was tried and not kept is tried again once the library has doubled.
    retry_later = spec == EXACT and bool(record.declined) and n < 2 * record.built_count
    if policy.kind != AUTO:
        if spec != wanted_spec(policy, n, dim) and not retry_later:
            return f"the library's index kind is {policy.kind!r}"
    elif spec == EXACT:
        if n < policy.exact_below or retry_later:
            return None
        return f"{n:,} vectors reached the exact limit of {policy.exact_below:,}"
    elif n < policy.exact_below // 2:
        return f"{n:,} vectors, under half the exact limit of {policy.exact_below:,}: exact is cheap"
    if spec != EXACT and record.changed > policy.retrain_after * max(record.built_count, 1):
        return f"{record.changed:,} vectors added or removed since it was built on {record.built_count:,}"
    return None


def short_of_target(spec: str, recall: float, target: float) -> str:
    """Why an index of ``spec`` that reached ``recall`` is not what the library asked for, in words."""
    return (
        f"{spec} reached recall {recall:.3f}, below the recall target {target}, even scanning all its "
        "lists (its codes are too coarse for these vectors): 'ibsearch reindex --index auto' picks a kind "
        "that reaches it, or exact"
    )


def why_kind(policy: IndexPolicy, spec: str, n: int) -> str:
    """Why ``policy`` gives ``n`` vectors an index of ``spec``, in words."""
    if policy.kind != AUTO:
        return f"the library's index kind is {policy.kind!r}"
    if spec == EXACT:
        return f"auto: {n:,} vectors, below the exact limit of {policy.exact_below:,}"
    return f"auto: {n:,} vectors, from the exact limit of {policy.exact_below:,} on: approximate"


__all__ = [
    "AUTO",
    "DEFAULT_EXACT_BELOW",
    "DEFAULT_FULL_SCAN_BELOW",
    "EXACT_KIND",
    "IndexPolicy",
    "approximate_spec",
    "nlist_for",
    "rebuild_reason",
    "short_of_target",
    "wanted_spec",
    "why_kind",
]
