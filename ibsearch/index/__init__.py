"""Vector indexes: one FAISS index per modality mapping int64 vector ids to L2-normalized vectors.

This package knows nothing of files or models; the ids are the store's vector ids and
:mod:`ibsearch.index_sync` composes the two. Importing it sets FAISS's BLAS threshold (see
``exact.BLAS_THRESHOLD``). Exact or IVF (``faiss_index``), chosen by size and tuned to a recall
target (``policy``, ``builder``, ``tuner``), its candidates ranked by second codes (``refine``; the
lists themselves in ``lists``), kept in step with the database between saves (``live``), saved with a
sidecar and checksums (``persist``, ``digest``), checked row by row (``rows``); result arrays in ``results``;
how searches are run, passed with each search (``tuning``: ``SearchTuning``).
``TorchExactIndex`` (GPU exact search) imports torch only when constructed.
"""

from ..idsets import IdSetSummary, summarize_ids
from .exact import BLAS_THRESHOLD
from .faiss_index import EXACT, FaissIndex, StaleIndexError
from .live import LiveIndex
from .persist import BuildRecord, IndexMeta, Tuning, refine_path, sidecar_path, stamp
from .policy import IndexPolicy
from .torch_index import TorchExactIndex
from .tuning import SearchTuning

__all__ = [
    "BLAS_THRESHOLD",
    "EXACT",
    "BuildRecord",
    "FaissIndex",
    "IdSetSummary",
    "IndexMeta",
    "IndexPolicy",
    "LiveIndex",
    "SearchTuning",
    "StaleIndexError",
    "TorchExactIndex",
    "Tuning",
    "refine_path",
    "sidecar_path",
    "stamp",
    "summarize_ids",
]
