"""The FastAPI application: the API routes, the page, the sign-in, and errors as JSON.

Every error is an answer ``{"error": "...what was wrong..."}`` with a 4xx status: an invalid field
(422, with ``detail`` naming the fields), a wrong query (400), an unknown item (404), a changed file
(409), an upload beyond the limits (413: bytes, files, pixels), a file that cannot be decoded (422),
and Starlette's own (405, a range past the end of a file: 416; made JSON by :mod:`.responses`). A
client that goes away before its request is read costs one log line. A 500 is a bug.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.status import HTTP_204_NO_CONTENT

from .. import __version__
from ..errors import DiskFullError, IbsearchError, LibraryError, MediaError, UsageError
from .config import ServerConfig
from .decoding import UploadDecoder
from .items import FileChanged
from .models import ERRORS, SignIn
from .query import KeptUploads
from .responses import JsonErrors, RangeFileResponse
from .routes import router
from .security import TOKEN_COOKIE, Guard, UploadTooLarge, token_matches
from .service import ItemNotFound, LibraryService
from .thumbnails import Thumbnails

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
# The page's ES modules run only when served as JavaScript, whatever the system's MIME table says.
mimetypes.add_type("text/javascript", ".js")
#: The status of each kind of ibsearch error (the first match in this order wins).
STATUS: tuple[tuple[type[IbsearchError], int], ...] = (
    (ItemNotFound, 404),
    (FileChanged, 409),
    (UploadTooLarge, 413),
    (DiskFullError, 507),
    (MediaError, 422),
    (UsageError, 400),
    (LibraryError, 409),
    (IbsearchError, 400),
)


def new_app() -> FastAPI:
    """The application's routes, page and error answers, without a library or checks yet: what
    ``/openapi.json`` describes (:func:`create_app` adds the library and the checks)."""
    app = FastAPI(
        title="ibsearch",
        version=__version__,
        summary="Search a library of photos, sounds, videos and notes by meaning, from any modality.",
        docs_url=None,  # the interactive docs load scripts from a CDN; the page must work offline
        redoc_url=None,
    )
    app.include_router(router)
    app.add_api_route("/", page, methods=["GET", "HEAD"], include_in_schema=False)
    sign_in_errors: dict[int | str, dict[str, Any]] = {code: ERRORS[code] for code in (400, 401, 422)}
    app.add_api_route("/-/sign-in", sign_in, methods=["POST"], status_code=HTTP_204_NO_CONTENT,
                      responses=sign_in_errors, tags=["server"])  # fmt: skip
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(IbsearchError, ibsearch_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(ValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, gone)
    return app


def create_app(service: LibraryService, config: ServerConfig, *, instance: str = "") -> FastAPI:
    """The application serving ``service``'s library with ``config``'s checks (:mod:`.security`).

    ``instance`` names this run of the server in ``/healthz`` answers (see :mod:`.record`).
    """
    app = new_app()
    app.state.service = service
    app.state.config = config
    app.state.instance = instance
    app.state.decoder = UploadDecoder(config)
    app.state.kept_uploads = KeptUploads()
    thumbnails = app.state.thumbnails = Thumbnails(service.library.root)
    # The pictures of items removed since the last run go, on the library's thread before any request.
    service.submit(lambda lib: thumbnails.prune(lib.store.files.ids_among))
    app.add_middleware(JsonErrors)
    app.add_middleware(Guard, config=config)
    return app


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the API (the same as a running server's ``/openapi.json``)."""
    return new_app().openapi()


async def page(request: Request) -> Response:
    """The search page (static: everything it shows comes from the API)."""
    return RangeFileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                             headers={"Cache-Control": "no-cache"})  # fmt: skip


async def sign_in(request: Request, body: SignIn) -> Response:
    """Exchange the token (from the sign-in link the server printed) for a cookie the page sends."""
    config: ServerConfig = request.app.state.config
    if not token_matches(config, body.token):
        return JSONResponse({"error": "wrong token; use the sign-in link the server printed"}, 401)
    response = Response(status_code=HTTP_204_NO_CONTENT)
    response.set_cookie(TOKEN_COOKIE, body.token, httponly=True, samesite="strict", path="/")
    return response


def status_of(exc: IbsearchError) -> int:
    return next(code for kind, code in STATUS if isinstance(exc, kind))


async def ibsearch_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IbsearchError)
    return JSONResponse({"error": str(exc)}, status_of(exc))


async def invalid(request: Request, exc: Exception) -> Response:
    """422 naming each invalid field (without echoing the values sent)."""
    assert isinstance(exc, RequestValidationError | ValidationError)
    detail = [
        {"loc": [str(part) for part in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(d['loc']) or 'body'}: {d['msg']}" for d in detail[:5])
    return JSONResponse({"error": f"invalid request: {summary}", "detail": detail}, 422)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)


async def gone(request: Request, exc: Exception) -> Response:
    """A client that went away before its request was read (a closed tab, a slow upload given up):
    one line in the log, not a traceback per client. The answer goes nowhere."""
    client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
    log.warning("client %s went away before its %s %s was read", client, request.method, request.url.path)
    return Response(status_code=400)


__all__ = ["STATIC", "create_app", "new_app", "openapi_document"]
