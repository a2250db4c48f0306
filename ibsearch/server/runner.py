"""A running server: the socket bound first (so its address is known and printed), then uvicorn.

:class:`Server` binds ``config``'s address (port 0: a free one), builds the application over a
:class:`~ibsearch.server.service.LibraryService`, and serves until stopped, in the foreground
(``ibsearch serve``) or on a thread (tests, benchmarks). While it serves, a loopback server
leaves its :class:`~ibsearch.server.record.ServerRecord` in the library for the command line.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn

from ..closing import Closing
from ..errors import UsageError
from ..library import LibraryResources
from .app import create_app
from .config import ServerConfig
from .record import ServerRecord, remove_record
from .service import LibraryService

log = logging.getLogger(__name__)
START_TIMEOUT = 30.0  # seconds a server on a thread may take to start listening


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; :class:`UsageError` when that address is taken."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without it
    # every answer on a kept-alive connection waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host"
        ) from None
    sock.set_inheritable(True)
    return sock


#: The most bytes of a request's line and headers the server reads. h11's 16 KB is met by one item's
#: path: 4,096 bytes of a non-ASCII name percent-encoded take 12 KB. Past it uvicorn drops the
#: connection with a bare 400 that a client still sending often sees as a reset, not an answer.
REQUEST_HEAD_MOST = 1 << 20


class Server(Closing):
    """``ibsearch serve``: the library behind ``opener`` served with ``config`` (see the module docs)."""

    def __init__(
        self, opener: Callable[[], LibraryResources], config: ServerConfig, *, log_level: str = "warning"
    ) -> None:
        self.config = config
        self.instance = secrets.token_hex(16)
        self.socket = bind(config.host, config.port)
        try:
            self.service = LibraryService(opener)
        except BaseException:
            self.socket.close()
            raise
        self.port = int(self.socket.getsockname()[1])
        self.url = config.url(self.port)
        self.app = create_app(self.service, config, instance=self.instance)
        self._uvicorn = uvicorn.Server(
            uvicorn.Config(self.app, log_level=log_level, access_log=log_level in ("info", "debug"),
                           lifespan="off", server_header=False, timeout_graceful_shutdown=5,
                           h11_max_incomplete_event_size=REQUEST_HEAD_MOST)
        )  # fmt: skip
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None  # what ended the server's thread, if not a stop

    @property
    def library(self) -> Path:
        return self.service.library.root

    @property
    def sign_in_url(self) -> str:
        """The page's address with the token in its fragment (never sent to a server or logged)."""
        return f"{self.url}/#token={self.config.token}" if self.config.token else f"{self.url}/"

    def record(self) -> ServerRecord:
        lib = self.service.library
        return ServerRecord(
            url=self.url, pid=os.getpid(), instance=self.instance, library=str(lib.root.resolve()),
            model_spec=lib.model_spec, token=self.config.token, checkpoint=lib.checkpoint,
            device=lib.device, precision=lib.precision,
        )  # fmt: skip

    def serve(self, announce: Callable[[], None] | None = None) -> None:
        """Serve in the foreground until Ctrl-C or SIGTERM (or :meth:`stop`), then finish the requests
        under way. uvicorn runs on a thread of its own and this thread only waits for a signal; the
        handlers are in place before ``announce`` says where the server listens, so a signal sent as
        soon as that is read always stops the server cleanly."""
        asked = threading.Event()
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, lambda signum, frame: asked.set()) for sig in signals}
        try:
            self.start()
            if announce is not None:
                announce()
            while not asked.wait(0.2) and self._thread is not None and self._thread.is_alive():
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        """The server's thread: uvicorn on the bound socket, the record left while it serves."""
        written = self._write_record()
        try:
            self._uvicorn.run(sockets=[self.socket])
        except BaseException as exc:  # handed to the thread that waits for it (serve)
            self._failure = exc
        finally:
            if written:
                remove_record(self.library, self.instance)

    def _write_record(self) -> bool:
        if not self.config.loopback:
            return False  # the command line's fast path only talks to loopback servers
        try:
            self.record().write(self.library)
        except OSError as exc:
            log.warning("cannot leave a server record in %s (%s): ibsearch query will not use this server",
                        self.library, exc)  # fmt: skip
            return False
        return True

    def start(self) -> Server:
        """Serve on a background thread; returns once the server accepts connections."""
        self._thread = threading.Thread(target=self._run, name="ibsearch-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                if self._failure is not None:
                    raise self._failure
                raise UsageError(f"the server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Ask the server to finish (the requests under way are completed)."""
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=START_TIMEOUT)
            self._thread = None

    def close(self) -> None:
        """Stop serving, close the library and the socket."""
        self.stop()
        try:
            self.service.close()
        finally:
            self.socket.close()


__all__ = ["Server", "bind"]
