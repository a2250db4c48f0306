"""What every request passes before it reaches a route, and the headers every answer carries.

- **Host**: a loopback server answers only requests addressed to a loopback name, so a web page
  elsewhere cannot reach it by pointing its own domain at 127.0.0.1 (DNS rebinding).
- **Origin**: browsers name where a request comes from (``Sec-Fetch-Site``); ``/api`` requests from
  another site are refused, and no CORS header ever allows reading an answer from elsewhere.
- **Token**: when the server has one, every ``/api`` request must carry it, as
  ``Authorization: Bearer <token>`` (scripts) or as the cookie the page's sign-in sets.
- **Size**: a request body larger than the upload limit is refused with 413, by its
  ``Content-Length`` before it is read, or as soon as the bytes received pass the limit.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import IbsearchError
from .config import ServerConfig

TOKEN_COOKIE = "ibsearch_token"
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
FOREIGN_SITES = ("cross-site", "same-site")


class UploadTooLarge(IbsearchError):
    """A request body beyond the server's upload limit (answered with 413)."""


def host_name(header: str) -> str:
    """The host of a ``Host`` header, lower case, without the port (``[::1]`` keeps its brackets)."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if ":" in value else value


def too_large(limit: int) -> str:
    return (
        f"the request is larger than this server's upload limit of {limit / 1048576:g} MB (--max-upload-mb)"
    )


class Guard:
    """ASGI middleware doing the checks of the module docs for ``config``."""

    def __init__(self, app: ASGIApp, config: ServerConfig) -> None:
        self.app = app
        self.config = config
        self.hosts = config.allowed_hosts()
        self.limit = config.max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if refused is not None:
            await answer(send, *refused)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise UploadTooLarge(too_large(self.limit))
            return message

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in HEADERS if name not in names]
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", PAGE_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, counted, with_headers)

    def refusal(self, scope: Scope) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """``(status, message, extra headers)`` when the request must not go further."""
        headers = Headers(scope=scope)
        host = host_name(headers.get("host", ""))
        if self.hosts is not None and host not in self.hosts:
            return 400, f"this server answers only requests for {', '.join(sorted(self.hosts))}", []
        api = scope["path"] == "/api" or scope["path"].startswith("/api/")
        if api and headers.get("sec-fetch-site", "") in FOREIGN_SITES:
            return 403, "requests from other web sites are refused", []
        if api and self.config.token is not None and not self.signed_in(headers):
            return (
                401,
                "a token is required: send 'Authorization: Bearer <token>' or use the sign-in link",
                [(b"www-authenticate", b"Bearer")],
            )
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            return 413, too_large(self.limit), [(b"connection", b"close")]
        return None

    def signed_in(self, headers: Headers) -> bool:
        expected = (self.config.token or "").encode()
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected):
            return True
        cookie = cookie_parser(headers.get("cookie", "")).get(TOKEN_COOKIE, "")
        return hmac.compare_digest(cookie.encode(), expected)


def token_matches(config: ServerConfig, given: str) -> bool:
    """Whether ``given`` is the server's token (in constant time)."""
    return config.token is not None and hmac.compare_digest(given.encode(), config.token.encode())


async def answer(send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]]) -> None:
    """Send a JSON error ``{"error": message}`` with ``status``."""
    body = json.dumps({"error": message}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += extra + HEADERS
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["TOKEN_COOKIE", "Guard", "UploadTooLarge", "answer", "host_name", "token_matches"]
