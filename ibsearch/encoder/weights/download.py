"""Checkpoint downloads into the cache: resumable, checksummed, atomic.

A download streams into ``<file>.part`` in the cache (never the working directory), resumes with an
HTTP ``Range`` request after an interruption, checks the size and sha256 computed while streaming,
and only then renames the file into place, so a partial file is never taken for a complete one.
The digest of every downloaded file is recorded in a ``<file>.sha256`` sidecar (``sha256sum -c``
format) and checked again when the file is used later.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ...errors import DownloadError
from ...files import CHECKPOINT_HASH, CHUNK, file_lock, hash_file, hash_into, new_hash
from ...progress import TaskProgress
from .cache import ENV_CACHE, ENV_CHECKPOINT, known_sha256, record_sha256, recorded_sha256, sidecar_path

log = logging.getLogger(__name__)

_USER_AGENT = "ibsearch/0.1"


def verify_file(
    path: Path, expected: str | None, *, source: str, progress: TaskProgress | None = None
) -> str:
    """Check ``path`` against its recorded digest and against ``expected``; return its sha256.

    A file that differs from what was recorded at download, or from ``expected``, is renamed to
    ``<file>.corrupt`` and a :class:`DownloadError` says so. A file without a record (placed by hand)
    gets one now. ``source`` (the URL) is named in the messages.
    """
    recorded = recorded_sha256(path)
    digest = known_sha256(path, progress)
    if recorded is not None and digest != recorded:
        aside = _move_aside(path)
        raise DownloadError(
            f"{path} changed since it was downloaded from {source} (sha256 {digest}, recorded {recorded}); "
            f"it was moved to {aside}. Run the command again to download it afresh."
        )
    if expected is not None and digest != expected:
        aside = _move_aside(path)
        raise DownloadError(
            f"checksum mismatch for {path} (from {source}): sha256 is {digest} but the model card expects "
            f"{expected}. The file was moved to {aside}; run the command again to download it afresh, "
            "or fix the card's sha256 if the published file changed."
        )
    if recorded is None:
        record_sha256(path, digest, sidecar=True)
    return digest


def download(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    progress: TaskProgress | None = None,
    timeout: float = 60.0,
    retries: int = 3,
) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there; return ``dest``.

    Streams into ``<dest>.part`` (kept across interruptions, resumed with a ``Range`` request),
    checks the byte count and the sha256 (against ``sha256`` when given), records the digest in
    ``<dest>.sha256`` and renames the file into place. ``timeout`` applies to connecting and to each
    read; an interrupted transfer is resumed up to ``retries`` times. Raises :class:`DownloadError`
    with the URL, the path to place the file at by hand, and the environment variable to use instead.
    """
    dest = Path(dest).absolute()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(_lock_path(dest), on_wait=lambda: log.info("waiting for another download of %s", url)):
            return _download_locked(url, dest, sha256, progress, timeout, retries)
    except OSError as exc:  # network failures became DownloadError inside; what is left is the disk
        raise DownloadError(
            f"cannot write the download of {url} into {dest.parent}: {exc.strerror or exc}. "
            f"Free some space there or set {ENV_CACHE} to another folder."
        ) from None


def _download_locked(
    url: str, dest: Path, sha256: str | None, progress: TaskProgress | None, timeout: float, retries: int
) -> Path:
    if dest.exists():
        verify_file(dest, sha256, source=url)
        return dest
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            digest = _fetch(url, part, dest, progress=progress, timeout=timeout)
            break
        except _Interrupted as exc:
            now = part.stat().st_size if part.exists() else 0
            attempt += 1
            if attempt > retries:
                raise DownloadError(
                    f"download of {url} was interrupted ({exc}) after {now} bytes; the partial file "
                    f"{part} is kept: run the command again to resume. {_manual_hint(url, dest)}"
                ) from None
            log.warning("download of %s interrupted (%s); resuming from byte %d", url, exc, now)
            if now <= before:
                time.sleep(min(2.0**attempt, 10.0))  # no progress: back off before asking again
    if sha256 is not None and digest != sha256:
        aside = _move_aside(part, dest.with_name(dest.name + ".corrupt"))
        raise DownloadError(
            f"checksum mismatch for {url}: downloaded sha256 {digest}, the model card expects {sha256}. "
            f"The download was moved to {aside} and not used; run the command again to retry, or fix "
            "the card's sha256 if the published file changed."
        )
    os.replace(part, dest)
    record_sha256(dest, digest, sidecar=True)
    log.info("downloaded %s to %s (sha256 %s)", url, dest, digest)
    return dest


class _Interrupted(Exception):
    """The transfer broke off after it started; the ``.part`` file holds what arrived."""


class _Restart(Exception):
    """The ``.part`` file cannot be continued (the server cannot resume it); start from byte 0."""


def _fetch(url: str, part: Path, dest: Path, *, progress: TaskProgress | None, timeout: float) -> str:
    """One request: continue ``part`` (or start it) until complete; return the sha256 of the whole file."""
    for _ in range(2):
        try:
            return _fetch_once(url, part, dest, progress=progress, timeout=timeout)
        except _Restart as exc:
            log.info("cannot resume %s (%s); downloading from the start", url, exc)
            part.unlink(missing_ok=True)
    raise DownloadError(
        f"the server for {url} answers range requests inconsistently. {_manual_hint(url, dest)}"
    )


def _fetch_once(url: str, part: Path, dest: Path, *, progress: TaskProgress | None, timeout: float) -> str:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # The part may already hold the whole file (an interruption right at the end).
            total = _range_total(exc.headers.get("Content-Range", ""))
            exc.close()
            if total == offset:
                return hash_file(part, CHECKPOINT_HASH)
            raise _Restart(f"HTTP 416 for bytes {offset}- of a {total}-byte file") from None
        exc.close()
        raise DownloadError(
            f"cannot download {url}: HTTP {exc.code} {exc.reason}. {_manual_hint(url, dest)}"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if offset:
            raise _Interrupted(f"reconnecting failed: {_reason(exc)}") from None
        raise DownloadError(f"cannot download {url}: {_reason(exc)}. {_manual_hint(url, dest)}") from None

    with response:
        digest = new_hash(CHECKPOINT_HASH)
        length = response.headers.get("Content-Length")
        if offset and response.status == 206:
            start = _range_start(response.headers.get("Content-Range", ""))
            if start != offset:
                raise _Restart(f"asked for bytes {offset}-, got Content-Range {start}-")
            hash_into(digest, part)
            mode = "ab"
        else:
            # A plain 200 (also the answer of servers that ignore Range): the body is the whole file.
            offset, mode = 0, "wb"
        total = offset + int(length) if length is not None else None
        done = offset
        report = progress if callable(progress) else (lambda done, total: None)
        report(done, total)
        with open(part, mode) as out:
            try:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _Interrupted(_reason(exc)) from None
                    if not chunk:
                        break
                    out.write(chunk)  # an OSError here is the disk's, reported by download()
                    digest.update(chunk)
                    done += len(chunk)
                    report(done, total)
            finally:
                out.flush()
                os.fsync(out.fileno())
        if total is not None and done < total:
            raise _Interrupted(f"connection closed at byte {done} of {total}")
        if total is not None and done > total:
            raise _Restart(f"received {done} bytes, more than the announced {total}")
    return digest.hexdigest()


def _manual_hint(url: str, dest: Path) -> str:
    return (
        f"To install the file by hand, download {url} on a machine with internet access and put it at "
        f"{dest} "
        f"(the cache folder is set by {ENV_CACHE}), or point {ENV_CHECKPOINT} (CLI: --checkpoint) at an "
        "existing copy. To try ibsearch without the real weights, make a random-weight model with "
        "'ibsearch model random imagebind_small small.pth' and use '--model small.json' (its search "
        "results are meaningless)."
    )


def _reason(exc: BaseException) -> str:
    reason: Any = getattr(exc, "reason", None) or exc
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host name ({reason.strerror or reason}) (is this machine offline?)"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timed out"
    return str(reason) or type(reason).__name__


def _range_start(content_range: str) -> int | None:
    match = re.match(r"\s*bytes\s+(\d+)-", content_range)
    return int(match.group(1)) if match else None


def _range_total(content_range: str) -> int | None:
    match = re.search(r"/(\d+)\s*$", content_range)
    return int(match.group(1)) if match else None


def _lock_path(dest: Path) -> Path:
    """The lock file that processes fetching ``dest`` take turns on."""
    return dest.with_name(dest.name + ".lock")


def _move_aside(path: Path, aside: Path | None = None) -> Path:
    aside = aside or path.with_name(path.name + ".corrupt")
    os.replace(path, aside)
    if sidecar_path(path).exists() and path.suffix != ".part":
        sidecar_path(path).unlink(missing_ok=True)
    return aside


__all__ = ["download", "record_sha256", "recorded_sha256", "sidecar_path", "verify_file"]
