"""Where a library is by default, and what a user's relative paths mean: one answer for every caller.

The command line, the Python API and the command line's fast path through a running server
(:mod:`ibsearch.server.client`, which must not load the store or FAISS) all read ``--library`` and the
path filters the same way, through these functions.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_LIBRARY = "IBSEARCH_LIBRARY"


def default_library() -> Path:
    """``$IBSEARCH_LIBRARY``, else ``<platform data dir>/ibsearch/library``."""
    env = os.environ.get(ENV_LIBRARY, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("ibsearch")) / "library"


def library_dir(library: str | os.PathLike[str] | None) -> Path:
    """The library folder a command names (``--library``), else :func:`default_library`."""
    return Path(library).expanduser() if library else default_library()


def anchored_prefix(prefix: str) -> str:
    """A path prefix filter as an absolute path: relative to the current folder, ``~`` expanded."""
    return os.path.abspath(os.path.expanduser(prefix))


def anchored_glob(glob: str) -> str:
    """A path glob as matched against the stored absolute paths.

    A glob with a ``/`` that starts with neither ``/`` nor ``*`` is a path relative to the current
    folder (``images/*.png``), like a path prefix; a glob without a ``/`` (``*.png``), or one that
    starts with ``/`` or ``*``, is matched against the whole path as it is.
    """
    glob = os.path.expanduser(glob)
    if "/" in glob and not glob.startswith(("/", "*")):
        return os.path.join(os.getcwd(), glob)
    return glob


__all__ = ["ENV_LIBRARY", "anchored_glob", "anchored_prefix", "default_library", "library_dir"]
