"""ibsearch: cross-modal search over media with ImageBind.

``Searcher().query(audio="bark.wav", image="park.jpg")`` searches the default library;
``Library.open(...).ingest([...])`` builds it. See the README for the command line.
"""

from .errors import IbsearchError
from .lazy import lazy_getattr

__version__ = "0.1.0"

# Heavier modules load on first use, so `import ibsearch` stays cheap.
_LAZY = {
    "Searcher": "search",
    "Hit": "hits",
    "Library": "engine",
    "IngestSummary": "ingest",
    "Term": "terms",
    "weighted": "terms",
}


__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = ["IbsearchError", "__version__", *_LAZY]
