"""How a server is set up: where it listens, who may use it, and how much one request may send
and make it decode.

The defaults are the safe ones: a loopback address, so nothing on the network can reach the
server, and a ``Host`` check, so that a web page elsewhere cannot reach it through DNS rebinding
either. Any other address needs a token, checked on every ``/api`` request.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass

from ..errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 100.0
#: Files one search may upload; each is decoded and run through a tower.
DEFAULT_MAX_UPLOAD_FILES = 8
#: Pixels (in millions) the images of one search may hold in all: a 9000 x 9000 JPEG is a few
#: hundred kilobytes yet takes seconds to decode. 100: one picture as large as Pillow decodes at all
#: (89 megapixels) and a few small ones, or a dozen 8-megapixel photos.
DEFAULT_MAX_UPLOAD_MEGAPIXELS = 100.0
#: The names a browser may use for a loopback server (the ``Host`` header, without the port).
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
#: Addresses that mean "every interface".
WILDCARDS = frozenset({"0.0.0.0", "::", "[::]", ""})
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) can only be reached from this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh random token (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class ServerConfig:
    """Where a server listens and what it lets through.

    A host other than a loopback address needs a ``token`` (:class:`UsageError` without one);
    :meth:`for_host` makes one up in that case, as ``ibsearch serve`` does.
    """

    host: str = DEFAULT_HOST  # address to bind; loopback by default
    port: int = DEFAULT_PORT  # TCP port; 0 picks a free one
    token: str | None = None  # required as "Authorization: Bearer <token>" on /api when set
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB  # largest request body (uploads) in megabytes
    max_upload_files: int = DEFAULT_MAX_UPLOAD_FILES  # most files one search may upload
    max_upload_megapixels: float = DEFAULT_MAX_UPLOAD_MEGAPIXELS  # most image pixels one search decodes

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UsageError(f"--port must be between 0 and 65535, got {self.port}")
        if not self.max_upload_mb > 0:
            raise UsageError(f"--max-upload-mb must be more than 0, got {self.max_upload_mb}")
        if not self.max_upload_files >= 1:
            raise UsageError(f"--max-upload-files must be at least 1, got {self.max_upload_files}")
        if not self.max_upload_megapixels > 0:
            raise UsageError(f"--max-upload-megapixels must be more than 0, got {self.max_upload_megapixels}")
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise UsageError(f"--token must be at least {MIN_TOKEN_LENGTH} characters long")
        if self.token is None and not self.loopback:
            raise UsageError(
                f"refusing to serve on {self.host!r} without a token: anyone on the network could read "
                "the library; give --token T (or leave it out on the command line to have one generated), "
                f"or bind {DEFAULT_HOST}"
            )

    @classmethod
    def for_host(
        cls,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        token: str | None = None,
        max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
        max_upload_files: int = DEFAULT_MAX_UPLOAD_FILES,
        max_upload_megapixels: float = DEFAULT_MAX_UPLOAD_MEGAPIXELS,
    ) -> ServerConfig:
        """A config for ``host``, with a generated token when a non-loopback host has none."""
        if token is None and not is_loopback(host):
            token = new_token()
        return cls(host, port, token, max_upload_mb, max_upload_files, max_upload_megapixels)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def allowed_hosts(self) -> frozenset[str] | None:
        """The ``Host`` names a request may carry (lower case, no port), or None for any.

        Only a loopback server needs the check: a page elsewhere could otherwise reach it through
        DNS rebinding. Any other server requires its token, which such a page does not have, and may
        be reached under names the server cannot know. The address it was bound to is one of them
        (any of 127.0.0.0/8, as its URL names it: a ``Host`` of ``127.0.0.2`` or ``[0:0:0:0:0:0:0:1]``).
        """
        if not self.loopback:
            return None
        name = self.host.strip().lower()
        return LOOPBACK_NAMES | {f"[{name.strip('[]')}]" if ":" in name else name}

    def url(self, port: int | None = None) -> str:
        """The base URL of the server (``port``: the one actually bound, when :attr:`port` is 0)."""
        name = self.host.strip()
        if name in WILDCARDS:
            name = DEFAULT_HOST if ":" not in name else "[::1]"
        elif ":" in name and not name.startswith("["):
            name = f"[{name}]"
        return f"http://{name}:{self.port if port is None else port}"


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ServerConfig", "is_loopback", "new_token"]
