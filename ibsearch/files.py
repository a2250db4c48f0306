"""Files on disk, done one way everywhere: content hashes, atomic replacement, and advisory locks.

Every layer needs these (the store hashes media, the weights cache hashes checkpoints, indexes and
caches are replaced atomically, writers take turns), so they live here, below all of them.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from .errors import out_of_space
from .progress import TaskProgress

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes per read when hashing or copying

#: The content hash of media files in a library (``files.hash``): BLAKE2b with a 32-byte digest.
MEDIA_HASH = "blake2b"
#: The checksum of checkpoints (what model cards and ``sha256sum`` use).
CHECKPOINT_HASH = "sha256"


def new_hash(algorithm: str) -> Any:
    """A hashlib object for ``algorithm`` (``MEDIA_HASH`` is BLAKE2b-256, ``CHECKPOINT_HASH`` sha256)."""
    if algorithm == MEDIA_HASH:
        return hashlib.blake2b(digest_size=32)
    return hashlib.new(algorithm)


def hash_into(
    digest: Any, path: str | os.PathLike[str], progress: Callable[[int, int | None], None] | None = None
) -> int:
    """Feed the bytes of ``path`` into a hashlib object; returns the number of bytes read."""
    done = 0
    with open(os.fspath(path), "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress(done, None)
    return done


def hash_file(
    path: str | os.PathLike[str], algorithm: str = MEDIA_HASH, progress: TaskProgress | None = None
) -> str:
    """The hex digest of the whole file (64 characters for both :data:`MEDIA_HASH` and sha256)."""
    digest = new_hash(algorithm)
    if progress is None:
        hash_into(digest, path)
    else:
        total = os.stat(os.fspath(path)).st_size
        progress(0, total)
        hash_into(digest, path, lambda done, _: progress(done, total))
    return str(digest.hexdigest())


# ------------------------------------------------------------------------------------ path names


def display_path(path: str | bytes) -> str:
    """A path as valid UTF-8 text for people and for text columns: bytes that are not UTF-8 (POSIX
    names may hold any) appear as ``\\xNN``. ``path`` is the name's bytes or an ``os.fsdecode`` string."""
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


def path_fields(path: str) -> dict[str, str]:
    """A path for JSON output: ``{"path": display_path(path)}``, plus ``"path_bytes"`` (the name's raw
    bytes in base64) when it is not valid UTF-8, so that a program can still open exactly that file."""
    raw = os.fsencode(path)
    fields = {"path": raw.decode("utf-8", "backslashreplace")}
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        fields["path_bytes"] = base64.b64encode(raw).decode("ascii")
    return fields


# ---------------------------------------------------------------------------------- atomic writes

TMP_SUFFIX = ".tmp"


def temp_prefix(path: str | os.PathLike[str]) -> str:
    """The name prefix of the temporary files :func:`atomic_write` makes for ``path`` (``.<name>.``)."""
    return "." + os.path.basename(os.fspath(path)) + "."


def is_temporary(name: str) -> bool:
    """Whether a file name is that of an :func:`atomic_write` temporary (``.<name>.XXXX.tmp``)."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform (Windows): the rename itself is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Replace ``path`` in one step: ``write(fileobj)`` fills a temp file beside it, fsync, rename.

    Readers see the old file or the new one, never half of one; a crash leaves at worst a temp file
    named ``.<name>.XXXX.tmp`` beside it. A full disk is a :class:`DiskFullError` (the old file stays).
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=TMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        full = out_of_space(exc, directory)
        if full is not None:
            raise full from None
        raise
    _fsync_dir(directory)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """:func:`atomic_write` of ``text`` as UTF-8."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


# ----------------------------------------------------------------------------------------- locks


class LockHeld(Exception):
    """Raised by :func:`file_lock` with ``wait=False`` when another process holds the lock."""


@contextlib.contextmanager
def file_lock(
    path: str | os.PathLike[str], *, wait: bool = True, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold the advisory lock file ``path`` exclusively (created if needed) for the ``with`` block.

    A POSIX ``flock``, released by the OS if the holder dies. With ``wait`` a held lock is waited for
    (``on_wait`` is called first, e.g. to log why); without, :class:`LockHeld` is raised at once.
    A no-op where ``fcntl`` does not exist.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(os.fspath(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            if not wait:
                raise LockHeld(os.fspath(path)) from None
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


__all__ = [
    "CHECKPOINT_HASH",
    "CHUNK",
    "MEDIA_HASH",
    "LockHeld",
    "atomic_write",
    "atomic_write_text",
    "file_lock",
    "hash_file",
    "display_path",
    "hash_into",
    "path_fields",
    "is_temporary",
    "new_hash",
    "temp_prefix",
]
