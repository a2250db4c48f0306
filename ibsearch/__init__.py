"""ibsearch: cross-modal search over media with ImageBind."""

from .errors import IbsearchError

__version__ = "0.1.0"

__all__ = ["IbsearchError", "__version__"]
