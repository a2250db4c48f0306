"""HTTP answers as RFC 9110 and the README describe them: files that ignore a ``Range`` header they
cannot use, and every 4xx the server makes as JSON ``{"error": "..."}``.

Starlette answers an invalid ``Range`` header (``items=0-1``, ``bytes=5-2``) with a plain-text 400,
where RFC 9110 (§14.2) has a server ignore it and send the whole file; a range that is valid but
starts past the end is still 416, with ``Content-Range: bytes */<size>``. Starlette's own 4xx
answers (that 416, and any other it makes itself) are plain text; :class:`JsonErrors` turns each
into the JSON every other error of the API is.
"""

from __future__ import annotations

import http
import json

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import FileResponse, MalformedRangeHeader
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RangeFileResponse(FileResponse):
    """A :class:`FileResponse` that sends the whole file (200) for a ``Range`` header it cannot use."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            return []  # no range: the whole file, as RFC 9110 §14.2 asks of an invalid Range


def error_text(status: int, headers: Headers, body: bytes) -> str:
    """What a plain 4xx answer says, for its JSON twin."""
    text = body.decode("utf-8", "replace").strip()
    size = headers.get("content-range", "").rpartition("*/")[2]
    if status == 416 and size.isdigit():
        return f"the range asked for starts past the end of the file ({size} bytes)"
    return text or http.HTTPStatus(status).phrase


class JsonErrors:
    """ASGI middleware: a 4xx answer that is not JSON is sent as ``{"error": <its text>}``, with its
    status and other headers unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        body = b""

        async def as_json(message: Message) -> None:
            nonlocal held, body
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
                if not content_type.startswith("application/json"):
                    held = message
                    return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                await send_json(send, held, body)

        await self.app(scope, receive, as_json)


async def send_json(send: Send, start: Message, body: bytes) -> None:
    """Send the answer begun by ``start`` (whose body was ``body``) as a JSON error."""
    headers = MutableHeaders(raw=list(start.get("headers", [])))
    text = json.dumps({"error": error_text(start["status"], headers, body)}).encode()
    headers["content-type"] = "application/json"
    headers["content-length"] = str(len(text))
    await send({**start, "headers": headers.raw})
    await send({"type": "http.response.body", "body": text})


__all__ = ["JsonErrors", "RangeFileResponse", "error_text"]
