"""The per-user cache: where it is, and the small tools that keep it consistent.

Everything ibsearch downloads or derives (checkpoints, per-tower weight files, remembered
checksums) lives under :func:`cache_dir`, never in the working directory. Writes are atomic
(temp file + rename) and processes that work on the same file take turns through :func:`file_lock`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import platformdirs

log = logging.getLogger(__name__)

#: Environment variable naming the cache folder (default: the platform's per-user cache dir).
ENV_CACHE = "IBSEARCH_CACHE"
#: Environment variable naming a local checkpoint file that replaces the model card's checkpoint.
ENV_CHECKPOINT = "IBSEARCH_CHECKPOINT"

#: ``progress`` arguments: True/False for a tqdm bar on stderr, or a callback ``(done_bytes, total_bytes)``.
Progress = bool | Callable[[int, int | None], None]

CHUNK = 1 << 20  # bytes per read when streaming or hashing


def cache_dir() -> Path:
    """The per-user cache folder: ``$IBSEARCH_CACHE``, else ``platformdirs.user_cache_dir("ibsearch")``.

    The folder is not created here; writers create what they need.
    """
    env = os.environ.get(ENV_CACHE, "").strip()
    root = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("ibsearch"))
    return root.absolute()


def file_sha256(path: Path, progress: Progress = False) -> str:
    """Hash the whole file (lowercase hex), reading it in 1 MiB chunks."""
    total = path.stat().st_size
    digest = hashlib.sha256()
    with progress_bar(progress, total, f"sha256 {path.name}") as report, open(path, "rb") as f:
        done = 0
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            report(done)
    return digest.hexdigest()


def known_sha256(path: Path, progress: Progress = False) -> str:
    """The file's sha256, hashed once and then remembered in the cache while its size/mtime/inode hold.

    Hashing 4.8 GB takes seconds; every later use of an unchanged file costs one ``stat``.
    """
    path = Path(path).absolute()
    st = path.stat()
    memo = _memo_path(path)
    try:
        data = json.loads(memo.read_text(encoding="utf-8"))
        if data["stat"] == _stat_key(st):
            return str(data["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = file_sha256(path, progress)
    remember_sha256(path, digest)
    return digest


@contextlib.contextmanager
def progress_bar(progress: Progress, total: int | None, desc: str, initial: int = 0) -> Iterator[Any]:
    """Yield ``report(done_bytes)``: a callback, a tqdm bar on stderr (TTY only), or nothing."""
    if callable(progress):
        callback = progress
        callback(initial, total)
        yield lambda done: callback(done, total)
        return
    stream: IO[str] = sys.stderr
    enabled = bool(progress) and hasattr(stream, "isatty") and stream.isatty()
    if not enabled:
        yield lambda done: None
        return
    from tqdm import tqdm

    with tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=stream,
        dynamic_ncols=True,
        miniters=1,
    ) as bar:
        last = [initial]

        def report(done: int) -> None:
            bar.update(done - last[0])
            last[0] = done

        yield report


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (temp file + rename); readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _memo_path(path: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return cache_dir() / "digests" / f"{key}.json"


def remember_sha256(path: Path, digest: str) -> None:
    """Note ``digest`` for ``path`` as it is now, so :func:`known_sha256` need not hash it again."""
    path = Path(path).absolute()
    try:
        record = {"path": str(path), "stat": _stat_key(path.stat()), "sha256": digest}
        atomic_write_text(_memo_path(path), json.dumps(record))
    except OSError as exc:  # a read-only cache only costs a re-hash next time
        log.debug("cannot remember the digest of %s: %s", path, exc)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` exclusively, so that processes fetching or splitting one file take turns.

    A POSIX advisory lock (released by the OS if the holder dies); a no-op where ``fcntl`` is missing.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that is fetching %s", path.name)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def hash_into(digest: Any, path: Path) -> None:
    """Feed the bytes of ``path`` into a hashlib object."""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)


__all__ = [
    "CHUNK",
    "ENV_CACHE",
    "ENV_CHECKPOINT",
    "Progress",
    "atomic_write_text",
    "cache_dir",
    "file_lock",
    "file_sha256",
    "hash_into",
    "known_sha256",
    "progress_bar",
    "remember_sha256",
]
