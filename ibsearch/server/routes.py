"""The HTTP API: health, library info, search, and items (metadata, thumbnail, the file itself).

Every route takes its library work to the :class:`~ibsearch.server.service.LibraryService` (the
library's own thread); decoding a thumbnail and sending a file happen on other threads, so a
search never waits for them.
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, JSONResponse

from .. import maintenance
from ..errors import MediaError, UsageError
from ..files import display_path
from ..modality import TEXT
from ..store.records import FileRecord
from .items import CheckedFile, ItemFileResponse, content_type, item_model, kind_of, result_model
from .models import ERRORS, MAX_ID, Health, Info, Item, SearchRequest, SearchResponse, printable
from .query import Uploads, read_form, request_terms, search_options
from .record import INSTANCE_HEADER
from .service import LibraryService

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
SEARCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SearchRequest"}},
            "multipart/form-data": {"schema": {"$ref": "#/components/schemas/SearchForm"}},
        },
    }
}
#: The parser's own bounds; the server's file limit (--max-upload-files) is checked before any is saved.
FORM_LIMITS = {"max_files": 6 * 32, "max_fields": 400, "max_part_size": 64 * 1024}


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


@router.post(
    "/api/search",
    response_model=SearchResponse,
    responses=errors(400, 401, 409, 413, 415, 422),
    openapi_extra=SEARCH_BODY,
    tags=["search"],
)
async def search(request: Request, response: Response) -> SearchResponse:
    """Search with text, item ids (``like``) and uploaded files; see ``SearchRequest``.

    Send JSON, or ``multipart/form-data`` with the same fields plus files in ``image``, ``audio``,
    ``video``, ``depth``, ``thermal``, ``imu`` (each weighted by ``<field>_weight``). The answer's
    ``Server-Timing`` header says how long encoding the query and searching took.
    """
    service = service_of(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    with Uploads() as uploads:
        if kind == "multipart/form-data":
            async with request.form(**FORM_LIMITS) as form:
                query, files = await read_form(form, uploads, request.app.state.config.max_upload_files)
        elif kind in ("application/json", ""):
            query, files = SearchRequest.model_validate_json(await request.body() or b"{}"), []
        else:
            return JSONResponse(  # type: ignore[return-value]
                {"error": f"send the query as application/json or multipart/form-data, not {kind!r}"}, 415
            )
        terms, options = request_terms(query), search_options(query)
        texts = [term.value for term in terms if term.kind == TEXT and isinstance(term.value, str)]
        started = time.perf_counter()
        try:
            terms += await request.app.state.decoder.vectors(files, uploads, service)
        except MediaError as exc:
            raise uploads.explain(exc) from None
        uploaded = time.perf_counter() - started
        found = await service.run(lambda _: service.search(terms, options), texts)
    encode = found.encode_seconds + uploaded
    response.headers["Server-Timing"] = (
        f"encode;dur={encode * 1000:.1f}, search;dur={found.search_seconds * 1000:.1f}"
    )
    return SearchResponse(results=[result_model(record, hit) for record, hit in found.hits])


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


def item_file_route(what: str, content: dict[int | str, dict[str, Any]]) -> Any:
    """The declaration of ``/api/items/{item_id}/<what>``, answered with ``content``; HEAD gets the
    same headers without the file (not in the schema: one operation per path and method there)."""
    path, responses = f"/api/items/{{item_id}}/{what}", {**content, **errors(401, 404, 409, 422)}

    def declare(endpoint: Any) -> Any:
        router.add_api_route(path, endpoint, methods=["HEAD"], response_class=Response,
                             include_in_schema=False)  # fmt: skip
        return router.get(path, response_class=Response, responses=responses, tags=["items"])(endpoint)

    return declare


@item_file_route("thumbnail", JPEG)
async def thumbnail(request: Request, item_id: ItemId) -> Response:
    """A small JPEG picture of the item: the image, a video's frame, a sound's waveform, a card."""
    record = await record_of(request, item_id)
    path = await run_in_threadpool(request.app.state.thumbnails.get, record, kind_of(record))
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@item_file_route("media", MEDIA)
async def media(request: Request, item_id: ItemId) -> Response:
    """The file itself, with its content type; HTTP Range requests get 206 and the asked part."""
    record = await record_of(request, item_id)
    checked = await run_in_threadpool(CheckedFile, record)
    return ItemFileResponse(
        checked,
        media_type=content_type(record),
        filename=display_path(os.path.basename(record.path)),
        content_disposition_type="inline",
        headers={"Content-Security-Policy": "sandbox", "Cache-Control": "private, max-age=3600"},
    )


__all__ = ["router"]
