"""From an API request to query terms and search options, uploads included.

A JSON body is a :data:`~ibsearch.server.models.SearchRequest`. A multipart form
(:data:`~ibsearch.server.models.SearchForm`) carries the same fields (lists as repeated fields) plus
uploaded files in the upload fields of the query table (``image``, ``audio``, ...), each weighted by
the matching ``<field>_weight`` values in order. Uploads are written into a private folder (mode
0700) under names the server makes up, and the folder is deleted when the query is over: nothing a
client sends ever names a path on disk.
Path filters are only compared with the paths stored in the database.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..closing import Closing
from ..errors import MediaError, UsageError
from ..options import SearchOptions
from ..terms import INPUTS_BY_NAME, LIKE, Given, Term, inputs_on, parse_term
from .models import MAX_ID, WEIGHT_SUFFIX, SearchSettings
from .security import UploadTooLarge

_SUFFIX = re.compile(r"\.[a-z0-9]{1,5}")
_ITEM_ID = re.compile(r"[0-9]{1,19}")


def request_terms(request: SearchSettings) -> list[Term]:
    """The terms of the JSON input fields of ``request`` (a ``SearchRequest`` or ``SearchForm``);
    stored items are given by their ids (``like``), resolved later."""
    return [
        like_term(value) if row.given is Given.STORED else parse_term(row.name, value)
        for row in inputs_on("api")
        for value in getattr(request, row.name)
    ]


def like_term(value: int | str) -> Term:
    """A ``like`` term of an item id: ``12`` or ``"0.5=12"``."""
    if isinstance(value, int):
        return Term(LIKE, value)
    term = parse_term("like", value)
    text = str(term.value).strip()
    if not _ITEM_ID.fullmatch(text) or int(text) > MAX_ID:
        raise UsageError(f"like term {value!r} must be an item id, optionally weighted: 12 or 0.5=12")
    return Term(LIKE, int(text), term.weight)


def search_options(request: SearchSettings) -> SearchOptions:
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
        targets=request.target or None,
        k=request.k,
        path_glob=glob,
        path_prefix=request.path_prefix,
        min_duration=request.min_duration,
        max_duration=request.max_duration,
        segments=request.segments,
        include_like=request.include_like,
        min_relevance=request.min_relevance,
        keywords=request.keywords,
        fold=request.fold,
        per_file=request.per_file,
        after=request.after,
        before=request.before,
        sort=request.sort,
        offset=request.offset,
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
        return INPUTS_BY_NAME[field].term(str(path), weight)

    def explain(self, exc: MediaError) -> MediaError:
        """``exc`` naming the upload as the client called it, rather than the saved copy."""
        if exc.path not in self.names:
            return exc
        return MediaError(self.names[exc.path], exc.reason, transient=exc.transient)


def _copy(source: BinaryIO, path: Path) -> None:
    source.seek(0)
    with open(path, "xb") as fh:
        shutil.copyfileobj(source, fh)


async def form_terms(form: SearchSettings, uploads: Uploads, max_files: int) -> list[Term]:
    """The upload terms of a multipart search (a ``SearchForm``) of at most ``max_files`` files
    (:class:`UploadTooLarge` beyond them, before any is saved), saved into ``uploads``."""
    uploaded = {row.name: getattr(form, row.name) for row in inputs_on("upload")}
    if sum(len(files) for files in uploaded.values()) > max_files:
        raise UploadTooLarge(f"at most {max_files} files per search on this server (--max-upload-files)")
    terms = []
    for field, files in uploaded.items():
        weights = getattr(form, field + WEIGHT_SUFFIX)
        if len(weights) > len(files):
            raise UsageError(f"{len(weights)} {field}{WEIGHT_SUFFIX} values for {len(files)} {field} files")
        for position, upload in enumerate(files):
            if not isinstance(upload, UploadFile):
                raise UsageError(f"form field {field!r} must be a file upload, got text")
            weight = weights[position] if position < len(weights) else 1.0
            terms.append(await uploads.add(field, upload, weight))
    return terms


__all__ = ["Uploads", "form_terms", "like_term", "request_terms", "search_options"]
