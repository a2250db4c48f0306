"""The library database (SQLite, the source of truth): files, vectors, errors and settings.

This package knows nothing of models or FAISS; :mod:`ibsearch.library` composes it with
:mod:`ibsearch.index` and :mod:`ibsearch.encoder`.
"""

from ..idsets import IdSetSummary
from .database import Store
from .records import (
    ErrorRecord,
    FileEntry,
    FileRecord,
    FileStat,
    PassageSpan,
    StoredVector,
    Upserted,
    VectorEntry,
    VectorError,
    VectorRow,
    Verified,
    vector_entries,
)
from .schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "ErrorRecord",
    "FileEntry",
    "FileRecord",
    "FileStat",
    "IdSetSummary",
    "PassageSpan",
    "StoredVector",
    "Store",
    "Upserted",
    "VectorEntry",
    "VectorError",
    "VectorRow",
    "Verified",
    "vector_entries",
]
