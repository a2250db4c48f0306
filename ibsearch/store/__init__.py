"""The library database (SQLite, the source of truth): files, vectors, errors and settings.

This package knows nothing of models or FAISS; :mod:`ibsearch.library` composes it with
:mod:`ibsearch.index` and :mod:`ibsearch.encoder`.
"""

from ..idsets import IdSetSummary
from .records import (
    ErrorRecord,
    FileRecord,
    FileStat,
    StoredVector,
    Upserted,
    VectorError,
    VectorRow,
    Verified,
)
from .schema import SCHEMA_VERSION
from .store import Store

__all__ = [
    "SCHEMA_VERSION",
    "ErrorRecord",
    "FileRecord",
    "FileStat",
    "IdSetSummary",
    "StoredVector",
    "Store",
    "Upserted",
    "VectorError",
    "VectorRow",
    "Verified",
]
