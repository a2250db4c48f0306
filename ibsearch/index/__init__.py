"""Vector indexes: one FAISS index per modality mapping int64 vector ids to L2-normalized vectors.

This package knows nothing of files or models; the ids are the store's vector ids and
:mod:`ibsearch.library` composes the two. Importing it sets FAISS's BLAS threshold (see
``faiss_index.BLAS_THRESHOLD``).
``TorchExactIndex`` (GPU exact search) imports torch only when constructed.
"""

from ..idsets import IdSetSummary, summarize_ids
from .faiss_index import (
    BLAS_THRESHOLD,
    EXACT,
    FaissIndex,
    IndexMeta,
    StaleIndexError,
    sidecar_path,
)
from .torch_index import TorchExactIndex

__all__ = [
    "BLAS_THRESHOLD",
    "EXACT",
    "FaissIndex",
    "IdSetSummary",
    "IndexMeta",
    "StaleIndexError",
    "TorchExactIndex",
    "sidecar_path",
    "summarize_ids",
]
