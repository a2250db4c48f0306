"""A real HTTP file server on 127.0.0.1 for download tests: Range support, a request log, and faults.

Faults: ``cut_after[path] = n`` sends the full ``Content-Length`` but closes the connection after
``n`` body bytes (once, then the entry is removed); ``ignore_range`` answers every request with the
whole file and status 200, like servers without range support.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    path: str
    range: str | None  # the Range header as sent, or None
    status: int
    body_bytes: int  # bytes of body actually written


@dataclass
class FileServer:
    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)
    ignore_range: bool = False
    log: list[Request] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"


def start(state: FileServer) -> ThreadingHTTPServer:
    """Serve ``state`` on an ephemeral port in a daemon thread; ``shutdown()`` the result when done."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            sent_range = self.headers.get("Range")
            if path not in state.files:
                self._reply(404, b"not found", path, sent_range)
                return
            data = state.files[path]
            match = re.fullmatch(r"bytes=(\d+)-", sent_range or "")
            if match is None or state.ignore_range:
                self._reply(200, data, path, sent_range)
                return
            start = int(match.group(1))
            if start >= len(data):
                self._reply(416, b"", path, sent_range, {"Content-Range": f"bytes */{len(data)}"})
                return
            content_range = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._reply(206, data[start:], path, sent_range, {"Content-Range": content_range})

        def _reply(
            self, status: int, body: bytes, path: str, sent_range: str | None, extra: dict | None = None
        ) -> None:
            length = len(body)
            cut = state.cut_after.pop(path, None) if status in (200, 206) else None
            if cut is not None:
                body = body[:cut]
            # Logged before anything goes out: once the client has a reply (even a body-less 416) it may
            # send its next request at once, and that one must not be logged first.
            state.log.append(Request(path, sent_range, status, len(body)))
            self.send_response(status)
            self.send_header("Content-Length", str(length))
            self.send_header("Content-Type", "application/octet-stream")
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            if cut is not None:
                self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server
