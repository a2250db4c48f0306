"""The one exception family of ibsearch.

Every error a user can cause derives from :class:`IbsearchError`. The message says what happened,
names the offending file or value, and says what to do next. The CLI turns these into
``Error: ...`` with exit code 1 in one place; library code never exits or prints.
"""

from __future__ import annotations

import errno

#: ``errno`` values of a write refused for space: a full disk, or a user's exhausted quota.
NO_SPACE = frozenset(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None)


class IbsearchError(Exception):
    """Base class for every error that ibsearch reports to a user."""


class MediaError(IbsearchError):
    """A file (or in-memory input) could not be decoded or preprocessed.

    ``path`` names the input (a path string, or a short description such as ``"<bytes>"``) and
    ``reason`` says why. ``transient`` is True when the failure says nothing about the file's content
    (a decoder crash, a time limit, an I/O or permission error): the file should be tried again next
    time rather than recorded as bad for good.
    """

    def __init__(self, path: str, reason: str, *, transient: bool = False) -> None:
        self.path = path
        self.reason = reason
        self.transient = transient
        super().__init__(f"cannot read {path!r}: {reason}")

    def __reduce__(self) -> tuple[type[MediaError], tuple[str, str], dict[str, bool]]:
        # Rebuilt from (path, reason) when it crosses a process boundary (worker pools); the keyword
        # goes as state, which BaseException.__setstate__ sets back on the rebuilt error.
        return (type(self), (self.path, self.reason), {"transient": self.transient})


class ModelError(IbsearchError):
    """A model config, model card or checkpoint is missing, malformed or does not match."""


class DownloadError(ModelError):
    """A checkpoint could not be downloaded or failed verification."""


class LibraryError(IbsearchError):
    """The library (database + indexes) is missing, inconsistent, or built with another model."""


class UsageError(IbsearchError):
    """A value given by the user (an option, a modality name, a query term) is invalid."""


class DiskFullError(IbsearchError):
    """A write failed because the disk (or the quota) holding ``folder`` (None: not known) is full.

    What was stored before is intact: a database write is rolled back whole and index files are
    replaced atomically, so freeing space and running the command again completes it.
    """

    def __init__(self, folder: str | None, detail: str) -> None:
        self.folder = folder
        where = f"for the files in {folder!r}" if folder else "on a disk this command writes to"
        super().__init__(
            f"no space left {where} ({detail}): free some space on that disk and run the command again"
        )


def out_of_space(exc: BaseException, folder: str | None) -> DiskFullError | None:
    """The :class:`DiskFullError` that ``exc`` amounts to when it is a write refused for space (a full
    disk or quota) in ``folder``, else None."""
    if isinstance(exc, OSError) and exc.errno in NO_SPACE:
        return DiskFullError(folder, exc.strerror or str(exc))
    return None
