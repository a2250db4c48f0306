"""The note a running server leaves in its library (``server.json``), so the command line can use it.

``ibsearch query`` reads it to send a query to the warm server instead of loading torch itself.
It holds the URL, the process id, a random instance id (the server names it in every ``/healthz``
answer, so a port reused by another process is not taken for this server), the token if there is
one (so the file is private: mode 0600) and the model settings the server runs with. A record
whose process is gone is stale: it is ignored, and removed when possible.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..files import atomic_write_text

RECORD_NAME = "server.json"
#: The response header of ``/healthz`` that names the answering server's instance.
INSTANCE_HEADER = "X-Ibsearch-Instance"


@dataclass(frozen=True)
class ServerRecord:
    """What a client needs to find and trust a running server."""

    url: str  # base URL, on a loopback address
    pid: int  # the server's process id
    instance: str  # random id of this run of the server
    library: str  # absolute library directory
    model_spec: str  # the model as the library names it (a registered name or a card's absolute path)
    token: str | None = None  # the bearer token, when the server requires one
    checkpoint: str | None = None  # the checkpoint the server was told to use, if any
    device: str = "auto"
    precision: str = "auto"

    def write(self, root: Path) -> Path:
        """Write the record into library ``root`` atomically, readable by its owner only."""
        path = root / RECORD_NAME
        # atomic_write's temporary file is created with mode 0600 and renamed: never readable by others.
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, root: Path) -> ServerRecord | None:
        """The record in library ``root``; None when there is none or it cannot be read."""
        try:
            data = json.loads((root / RECORD_NAME).read_text(encoding="utf-8"))
            names = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in names})
        except (OSError, ValueError, TypeError):
            return None

    def process_alive(self) -> bool:
        """Whether the recorded process still exists (it may be another one that reused the id)."""
        if self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # someone else's process: alive, though not ours to signal
        return True


def remove_record(root: Path, instance: str | None = None) -> None:
    """Delete the record in ``root`` (only if it is the one of ``instance``, when given)."""
    if instance is not None:
        found = ServerRecord.read(root)
        if found is None or found.instance != instance:
            return
    with contextlib.suppress(OSError):
        (root / RECORD_NAME).unlink()


__all__ = ["INSTANCE_HEADER", "RECORD_NAME", "ServerRecord", "remove_record"]
