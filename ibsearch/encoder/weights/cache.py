"""The per-user cache: where it is, and the small tools that keep it consistent.

Everything ibsearch downloads or derives (checkpoints, per-tower weight files, remembered
checksums) lives under :func:`cache_dir`, never in the working directory. Writes are atomic
(temp file + rename) and processes that work on the same file take turns through a file lock
(:func:`ibsearch.files.file_lock`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import platformdirs

from ...files import CHECKPOINT_HASH, atomic_write_text, hash_file
from ...progress import TaskProgress

log = logging.getLogger(__name__)

#: Environment variable naming the cache folder (default: the platform's per-user cache dir).
ENV_CACHE = "IBSEARCH_CACHE"
#: Environment variable naming a local checkpoint file that replaces the model card's checkpoint.
ENV_CHECKPOINT = "IBSEARCH_CHECKPOINT"


def cache_dir() -> Path:
    """The per-user cache folder: ``$IBSEARCH_CACHE``, else ``platformdirs.user_cache_dir("ibsearch")``.

    The folder is not created here; writers create what they need.
    """
    env = os.environ.get(ENV_CACHE, "").strip()
    root = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("ibsearch"))
    return root.absolute()


def known_sha256(path: Path, progress: TaskProgress | None = None) -> str:
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
    digest = hash_file(path, CHECKPOINT_HASH, progress if callable(progress) else None)
    record_sha256(path, digest)
    return digest


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _memo_path(path: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return cache_dir() / "digests" / f"{key}.json"


def sidecar_path(path: Path) -> Path:
    """Where the recorded digest of a downloaded ``path`` lives (``<file>.sha256``)."""
    return path.with_name(path.name + ".sha256")


def record_sha256(path: Path, digest: str, *, sidecar: bool = False) -> None:
    """Record ``digest`` as the sha256 of ``path`` as it is now (the one way a digest is recorded).

    The record is keyed by the file's size, mtime and inode, so :func:`known_sha256` need not hash
    an unchanged file again. With ``sidecar`` (downloads) a ``<file>.sha256`` in ``sha256sum -c``
    format is written too: the digest the file had when it arrived, checked on every later use.
    """
    path = Path(path).absolute()
    if sidecar:
        atomic_write_text(sidecar_path(path), f"{digest}  {path.name}\n")
    try:
        record = {"path": str(path), "stat": _stat_key(path.stat()), "sha256": digest}
        atomic_write_text(_memo_path(path), json.dumps(record))
    except OSError as exc:  # a read-only cache only costs a re-hash next time
        log.debug("cannot remember the digest of %s: %s", path, exc)


def recorded_sha256(path: Path) -> str | None:
    """The digest recorded in ``<file>.sha256`` when ``path`` was downloaded (or first verified), or None."""
    try:
        text = sidecar_path(path).read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    match = re.match(r"\s*([0-9a-fA-F]{64})\b", text)
    return match.group(1).lower() if match else None


__all__ = [
    "ENV_CACHE",
    "ENV_CHECKPOINT",
    "cache_dir",
    "known_sha256",
    "record_sha256",
    "recorded_sha256",
    "sidecar_path",
]
