"""From an API request to query terms and search options, uploads included.

A JSON body is a :class:`~ibsearch.server.models.SearchRequest`. A multipart form carries the same
fields (lists as repeated fields) plus uploaded files in the fields ``image``, ``audio``, ``video``,
``depth``, ``thermal`` and ``imu``, each weighted by the matching ``<field>_weight`` values in
order. Uploads are written into a private folder (mode 0700) under names the server makes up, and
the folder is deleted when the query is over: nothing a client sends ever names a path on disk.
Path filters are only compared with the paths stored in the database.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from ..closing import Closing
from ..errors import MediaError, UsageError
from ..modality import AUDIO, DEPTH, IMU, THERMAL, VISION, FileKind
from ..search import SearchOptions
from ..terms import LIKE, Term, parse_term
from .models import FILE_FIELDS, MAX_ID, MAX_TERMS, MAX_TEXT, SearchRequest
from .security import UploadTooLarge

#: The modality, and the file kind when it is not the modality's usual one, of each upload field.
UPLOAD_KINDS: dict[str, tuple[str, FileKind | None]] = {
    "image": (VISION, None),
    "audio": (AUDIO, None),
    "video": (VISION, FileKind.VIDEO),
    "depth": (DEPTH, None),
    "thermal": (THERMAL, None),
    "imu": (IMU, None),
}
LIST_FIELDS = ("text", "like", "target")
WEIGHT_SUFFIX = "_weight"
_SUFFIX = re.compile(r"\.[a-z0-9]{1,5}")
_ITEM_ID = re.compile(r"[0-9]{1,19}")


def request_terms(request: SearchRequest) -> list[Term]:
    """The text and ``like`` terms of ``request`` (``like`` values are item ids, resolved later)."""
    terms = [parse_term("text", text) for text in request.text]
    return terms + [like_term(value) for value in request.like]


def like_term(value: int | str) -> Term:
    """A ``like`` term of an item id: ``12`` or ``"0.5=12"``."""
    if isinstance(value, int):
        return Term(LIKE, value)
    term = parse_term("like", value)
    text = str(term.value).strip()
    if not _ITEM_ID.fullmatch(text) or int(text) > MAX_ID:
        raise UsageError(f"like term {value!r} must be an item id, optionally weighted: 12 or 0.5=12")
    return Term(LIKE, int(text), term.weight)


def search_options(request: SearchRequest) -> SearchOptions:
    """The :class:`SearchOptions` of ``request``; relative path filters are refused (the server's
    working folder means nothing to a client)."""
    if request.path_prefix is not None and not request.path_prefix.startswith("/"):
        raise UsageError(
            f"path_prefix must be an absolute folder (starting with /), got {request.path_prefix!r}"
        )
    glob = request.path_glob
    if glob is not None and (glob.startswith("~") or ("/" in glob and not glob.startswith(("/", "*")))):
        raise UsageError(
            f"path_glob {glob!r} must start with / or *, or name no folder at all ('*.png'); "
            "relative paths mean nothing to the server"
        )
    return SearchOptions(
        request.target or None,
        request.k,
        glob,
        request.path_prefix,
        request.min_duration,
        request.max_duration,
        request.segments,
        request.include_like,
    )


class Uploads(Closing):
    """Uploaded query files in a private temporary folder, deleted (with the folder) on :meth:`close`."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="ibsearch-upload-"))  # mode 0700
        self.names: dict[str, str] = {}  # saved path -> how to name the upload in messages

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    async def add(self, field: str, upload: UploadFile, weight: float) -> Term:
        """Save one upload of ``field`` and return its query term."""
        name = os.path.basename(upload.filename or "") or "upload"
        ext = os.path.splitext(name)[1].lower()
        path = self.folder / f"{len(self.names):02d}-{field}{ext if _SUFFIX.fullmatch(ext) else ''}"
        await run_in_threadpool(_copy, upload.file, path)
        self.names[str(path)] = f"{name} (uploaded as {field})"
        modality, media = UPLOAD_KINDS[field]
        return Term(modality, str(path), weight, media)

    def explain(self, exc: MediaError) -> MediaError:
        """``exc`` naming the upload as the client called it, rather than the saved copy."""
        if exc.path not in self.names:
            return exc
        return MediaError(self.names[exc.path], exc.reason, transient=exc.transient)


def _copy(source: BinaryIO, path: Path) -> None:
    source.seek(0)
    with open(path, "xb") as fh:
        shutil.copyfileobj(source, fh)


async def read_form(form: FormData, uploads: Uploads, max_files: int) -> tuple[SearchRequest, list[Term]]:
    """The request and the upload terms of a multipart search form of at most ``max_files`` files
    (:class:`UploadTooLarge` beyond them, before any is saved)."""
    fields: dict[str, Any] = {}
    for name in form.keys():
        if name in FILE_FIELDS or (
            name.endswith(WEIGHT_SUFFIX) and name[: -len(WEIGHT_SUFFIX)] in FILE_FIELDS
        ):
            continue
        values = form.getlist(name)
        if any(not isinstance(value, str) for value in values):
            raise UsageError(
                f"form field {name!r} must not be a file; upload files as {', '.join(FILE_FIELDS)}"
            )
        if name in LIST_FIELDS:
            fields[name] = values
        elif values[-1] != "":  # an empty optional field (a form left blank) is no value
            fields[name] = values[-1]
    request = SearchRequest.model_validate(fields)
    uploaded = {field: form.getlist(field) for field in FILE_FIELDS}
    for field, files in uploaded.items():
        if len(files) > MAX_TERMS:
            raise UsageError(f"at most {MAX_TERMS} {field} files per query, got {len(files)}")
    if sum(len(files) for files in uploaded.values()) > max_files:
        raise UploadTooLarge(f"at most {max_files} files per search on this server (--max-upload-files)")
    terms = []
    for field, files in uploaded.items():
        weights = form.getlist(field + WEIGHT_SUFFIX)
        if len(weights) > len(files):
            raise UsageError(f"{len(weights)} {field}{WEIGHT_SUFFIX} values for {len(files)} {field} files")
        for position, upload in enumerate(files):
            if not isinstance(upload, UploadFile):
                raise UsageError(f"form field {field!r} must be a file upload, got text")
            weight = _weight(field, weights[position]) if position < len(weights) else 1.0
            terms.append(await uploads.add(field, upload, weight))
    return request, terms


def _weight(field: str, raw: Any) -> float:
    try:
        return float(str(raw)[:MAX_TEXT])
    except ValueError:
        raise UsageError(f"{field}{WEIGHT_SUFFIX} must be a number, got {str(raw)[:40]!r}") from None


__all__ = ["UPLOAD_KINDS", "Uploads", "like_term", "read_form", "request_terms", "search_options"]
