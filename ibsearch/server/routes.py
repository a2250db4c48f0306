"""The HTTP API: health, library info, search, and items (metadata, thumbnail, the file itself).

Every route takes its library work to the :class:`~ibsearch.server.service.LibraryService` (the
library's own thread); decoding a thumbnail and sending a file happen on other threads, so a
search never waits for them.
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Match
from starlette.types import Scope

from .. import maintenance
from ..errors import MediaError, UsageError
from ..files import display_path
from ..keywords import meaning_terms
from ..modality import TEXT
from ..store.records import FileRecord
from ..terms import Term, inputs_on
from .items import (
    MOMENT_KINDS,
    CheckedFile,
    ItemFileResponse,
    content_type,
    item_model,
    kind_of,
    result_model,
)
from .models import (
    ERRORS,
    MAX_ID,
    MAX_TERMS,
    Health,
    Info,
    Item,
    QueryInputInfo,
    SearchForm,
    SearchRequest,
    SearchResponse,
    SearchSettings,
    api_inputs,
    printable,
)
from .query import Uploads, form_terms, request_terms, search_options
from .record import INSTANCE_HEADER
from .service import LibraryService
from .thumbnails import Moment

router = APIRouter()

ItemId = Annotated[int, Path(ge=0, le=MAX_ID, description="An item id, as in the results.")]
JPEG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}
}
BYTES = {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
MEDIA: dict[int | str, dict[str, Any]] = {
    200: BYTES,
    206: {**BYTES, "description": "Part of the file (HTTP Range)."},
}
JSON, MULTIPART = "application/json", "multipart/form-data"
#: The parser's own bounds; the server's file limit (--max-upload-files) is checked before any is saved.
FORM_LIMITS: Any = {"max_files": len(inputs_on("upload")) * MAX_TERMS, "max_fields": 400,
                    "max_part_size": 64 * 1024}  # fmt: skip


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: ERRORS[code] for code in codes}


def service_of(request: Request) -> LibraryService:
    return request.app.state.service  # type: ignore[no-any-return]


@router.get("/healthz", response_model=Health, tags=["server"])
async def healthz(request: Request) -> JSONResponse:
    """``{"ok": true}`` while the server runs (no token needed)."""
    return JSONResponse({"ok": True}, headers={INSTANCE_HEADER: request.app.state.instance})


@router.get(
    "/api/info",
    response_model=Info,
    response_model_exclude_unset=True,
    responses=errors(401, 409),
    tags=["library"],
)
async def info(request: Request) -> Any:
    """What the library holds: what ``ibsearch info --json`` prints."""
    data = await service_of(request).run(maintenance.info)
    return Info.model_validate(printable(data))


def body_kind(scope: Scope) -> str:
    """The media type of a request's body, without its parameters ("" when it names none)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.decode("latin-1").split(";")[0].strip().lower()
    return ""


class BodyRoute(APIRoute):
    """A search route that reads its body before FastAPI does, so that what stops the reading keeps
    its own answer (FastAPI's would be a 400): an upload past the limit 413, a client gone a log line."""

    form = False  # whether it takes multipart forms (:class:`FormRoute`) or the rest (JSON)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        return (match, child) if (body_kind(scope) == MULTIPART) == self.form else (Match.NONE, {})

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            kind = body_kind(request.scope)
            if self.form:
                await request.form(**FORM_LIMITS)  # kept by the request for FastAPI's handler
            elif kind in (JSON, ""):
                await request.body()
            else:
                return JSONResponse({"error": f"send the query as {JSON} or {MULTIPART}, not {kind!r}"}, 415)
            return await handler(request)  # type: ignore[no-any-return]

        return handle


class FormRoute(BodyRoute):
    """The multipart search, at the same path as the JSON one."""

    form = True


SEARCH: dict[str, Any] = {
    "response_model": SearchResponse,
    "responses": errors(400, 401, 409, 413, 415, 422),
    "tags": ["search"],
}


async def search_json(
    request: Request,
    response: Response,
    query: SearchRequest,  # type: ignore[valid-type]
) -> SearchResponse:
    """Search with text and item ids (``like``); see ``SearchRequest``."""
    return await answer(request, response, query)


async def search(
    request: Request,
    response: Response,
    form: Annotated[SearchForm, Form(media_type=MULTIPART)],  # type: ignore[valid-type]
) -> SearchResponse:
    """Search with text, item ids (``like``) and uploaded files; see ``SearchRequest``.

    Send JSON, or ``multipart/form-data`` with the same fields plus files in the upload fields of
    ``SearchForm`` (each weighted by ``<field>_weight``; ``/api/inputs`` lists them). The answer's
    ``Server-Timing`` header says how long encoding the query and searching took; its ``search_id``
    names the uploads' vectors for the next page (``uploads_of``).
    """
    with Uploads() as uploads:
        files = await form_terms(form, uploads, request.app.state.config.max_upload_files)
        return await answer(request, response, form, files, uploads)


router.add_api_route("/api/search", search_json, methods=["POST"], route_class_override=BodyRoute, **SEARCH)
# OpenAPI has one operation per path and method: the multipart one's names both bodies, the JSON one
# by the schema FastAPI made for the route above.
JSON_BODY = {"schema": {"$ref": "#/components/schemas/SearchRequest"}}
router.add_api_route("/api/search", search, methods=["POST"], route_class_override=FormRoute,
                     openapi_extra={"requestBody": {"content": {JSON: JSON_BODY}}}, **SEARCH)  # fmt: skip


async def answer(
    request: Request,
    response: Response,
    query: SearchSettings,
    files: list[Term] | None = None,
    uploads: Uploads | None = None,
) -> SearchResponse:
    """The hits of a search, its uploaded ``files`` (saved in ``uploads``) decoded first, and those
    of an earlier search (``uploads_of``) reused."""
    service, kept = service_of(request), request.app.state.kept_uploads
    terms, options = request_terms(query), search_options(query)
    # The texts as the tower embeds them (quotes and -word exclusions out), encoded with those waiting.
    texts = [t.value for t in meaning_terms(terms, options) if t.kind == TEXT and isinstance(t.value, str)]
    vectors = kept.get(query.uploads_of) if query.uploads_of else []
    started = time.perf_counter()
    if files and uploads:
        try:
            vectors = vectors + await request.app.state.decoder.vectors(files, uploads, service)
        except MediaError as exc:
            raise uploads.explain(exc) from None
    uploaded = time.perf_counter() - started
    found = await service.run(lambda _: service.search(terms + vectors, options), texts)
    encode = found.encode_seconds + uploaded
    response.headers["Server-Timing"] = (
        f"encode;dur={encode * 1000:.1f}, search;dur={found.search_seconds * 1000:.1f}"
    )
    search_id = kept.keep(vectors) if files else query.uploads_of
    return SearchResponse(
        results=[result_model(record, hit) for record, hit in found.hits], search_id=search_id
    )


@router.get("/api/inputs", response_model=list[QueryInputInfo], responses=errors(401), tags=["search"])
async def inputs() -> list[QueryInputInfo]:
    """The query inputs a search takes (the table the command line and Python share), for the page."""
    return api_inputs()


async def record_of(request: Request, item_id: int) -> FileRecord:
    service = service_of(request)
    return await service.run(lambda lib: service.item(lib, item_id))


@router.get("/api/items", response_model=Item, responses=errors(400, 401, 404), tags=["items"])
async def item_at(
    request: Request, path: Annotated[str, Query(max_length=4096, description="An absolute path.")]
) -> Item:
    """The item stored under ``path`` (looked up in the database; the disk is not read)."""
    if not path.startswith("/"):
        raise UsageError(f"path must be absolute, got {path!r}")
    service = service_of(request)
    return item_model(await service.run(lambda lib: service.item(lib, path)))


@router.get("/api/items/{item_id}", response_model=Item, responses=errors(401, 404, 422), tags=["items"])
async def item(request: Request, item_id: ItemId) -> Item:
    """An item's metadata."""
    return item_model(await record_of(request, item_id))


def item_file_route(what: str, content: dict[int | str, dict[str, Any]], *refused: int) -> Any:
    """The declaration of ``/api/items/{item_id}/<what>``, answered with ``content`` (or one of the
    ``refused`` error codes); HEAD gets the same headers without the file (not in the schema: one
    operation per path and method there)."""
    path, responses = f"/api/items/{{item_id}}/{what}", {**content, **errors(*refused, 401, 404, 409, 422)}

    def declare(endpoint: Any) -> Any:
        router.add_api_route(path, endpoint, methods=["HEAD"], response_class=Response,
                             include_in_schema=False)  # fmt: skip
        return router.get(path, response_class=Response, responses=responses, tags=["items"])(endpoint)

    return declare


Seconds = Annotated[float | None, Query(ge=0, le=1e7, description="Seconds into a sound or a video.")]


@item_file_route("thumbnail", JPEG, 400)  # 400: a moment (start, end) of a file without one
async def thumbnail(
    request: Request, item_id: ItemId, start: Seconds = None, end: Seconds = None
) -> Response:
    """A small JPEG picture of the item: the image, a video's frame, a sound's waveform, a card; with
    ``start`` (and ``end``), a video's frame at ``start`` or the waveform with that span marked."""
    record = await record_of(request, item_id)
    kind = kind_of(record)
    if (start is None) != (end is None) or (start is not None and kind not in MOMENT_KINDS):
        raise UsageError(
            f"start and end go together, and only for a sound or a video (item {item_id} is {kind})"
        )
    moment = Moment(start, end) if start is not None and end is not None else None
    cache = {"Cache-Control": "private, max-age=3600"}
    if moment and kind == "audio":
        drawn = await run_in_threadpool(request.app.state.thumbnails.marked, record, moment)
        return Response(drawn, media_type="image/jpeg", headers=cache)
    path = await run_in_threadpool(request.app.state.thumbnails.get, record, kind, moment)
    return FileResponse(path, media_type="image/jpeg", headers=cache)


TEXT_HEAD = 64 * 1024  # of a note, for its charset


@item_file_route("media", MEDIA)
async def media(request: Request, item_id: ItemId) -> Response:
    """The file itself, with its content type; HTTP Range requests get 206 and the asked part."""
    record = await record_of(request, item_id)
    checked = await run_in_threadpool(CheckedFile, record)
    head = os.pread(checked.fd, TEXT_HEAD, 0) if record.modality == TEXT else b""
    return ItemFileResponse(
        checked,
        media_type=content_type(record, head),
        filename=display_path(os.path.basename(record.path)),
        content_disposition_type="inline",
        headers={"Content-Security-Policy": "sandbox", "Cache-Control": "private, max-age=3600"},
    )


__all__ = ["router"]
