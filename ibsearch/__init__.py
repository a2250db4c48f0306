"""ibsearch: cross-modal search over media with ImageBind.

``Searcher().query(audio="bark.wav", image="park.jpg")`` searches the default library;
``Library.open(...).ingest([...])`` builds it. See the README for the command line.
"""

from typing import Any

from .errors import IbsearchError

__version__ = "0.1.0"

# Heavier modules load on first use, so `import ibsearch` stays cheap.
_LAZY = {
    "Searcher": "query",
    "Hit": "query",
    "Library": "engine",
    "IngestSummary": "ingest",
    "Term": "terms",
    "weighted": "terms",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["IbsearchError", "__version__", *_LAZY]
