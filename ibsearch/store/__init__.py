"""The library database (SQLite, the source of truth): files, vectors, errors, settings.

This package knows nothing of models or FAISS; the engine composes it with ``ibsearch.index``.
"""

from .db import Store
from .records import (
    ErrorRecord,
    FileRecord,
    FileStat,
    IdSetSummary,
    StoredVector,
    Upserted,
    VectorError,
    VectorRow,
    hash_file,
)
from .schema import SCHEMA_VERSION

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
    "hash_file",
]
