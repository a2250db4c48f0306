"""The API's typed requests and responses (what ``/openapi.json`` describes and scripts rely on).

The query inputs of a request (its JSON fields and its upload fields) are the rows of the one table
:data:`ibsearch.terms.QUERY_INPUTS` offered to the API, so FastAPI declares both bodies from it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import UploadFile
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    create_model,
)

from ..files import display_path
from ..modality import MODALITIES
from ..terms import QUERY_INPUTS, Given, inputs_on

MAX_TERMS = 32  # terms of one kind in one query
MAX_TEXT = 10_000  # characters of one text term (the tower reads 77 tokens anyway)
MAX_K = 1000  # hits per query
MAX_OFFSET = 10_000  # hits skipped: the pages before this one
MAX_MOMENTS = 100  # moments of one file
MAX_ID = 2**63 - 1  # SQLite's largest integer
WEIGHT_SUFFIX = "_weight"  # the field of an upload's weights: image_weight beside image


def _unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


Text = Annotated[str, StringConstraints(max_length=MAX_TEXT), AfterValidator(_unicode)]
ItemId = Annotated[int, Field(ge=0, le=MAX_ID)]


class SearchSettings(BaseModel):
    """Where a query searches and what comes back (the fields of a request besides its inputs)."""

    model_config = ConfigDict(extra="forbid")

    target: list[Text] = Field(
        default_factory=list,
        max_length=len(MODALITIES) * 2,
        description="Modalities to search (vision or image, text, audio, depth, thermal, imu); default all.",
    )
    k: int = Field(10, ge=1, le=MAX_K, description="Number of hits, best first across targets.")
    segments: bool = Field(
        False, description="Segments instead of files: timestamped ones of long media, passages of texts."
    )
    include_like: bool = Field(False, description="Also return the items of like terms themselves.")
    path_prefix: Text | None = Field(None, description="Only files under this absolute folder.")
    path_glob: Text | None = Field(
        None, description="Only files whose path matches this glob ('*.png', '/photos/*/*.jpg')."
    )
    min_duration: float | None = Field(None, description="Only media at least this many seconds long.")
    max_duration: float | None = Field(None, description="Only media at most this many seconds long.")
    min_relevance: float | Literal["high", "medium", "low"] | None = Field(
        None,
        description="Leave out hits below this relevance: a number from 0 to 1 (0.99 lets about 1 in 100 "
        "unrelated items of each modality through) or a level (high 0.99, medium 0.95, low 0.8).",
    )
    keywords: bool = Field(True, description="Text terms also find files by the words of names and texts.")
    fold: bool = Field(True, description="Near-duplicates of a better hit are folded into it (its similar).")
    per_file: int = Field(
        1, ge=1, le=MAX_MOMENTS, description="With segments: up to this many moments of one file."
    )
    after: float | Text | None = Field(
        None, description="Only files taken (else modified) at or after this: Unix seconds or an ISO date."
    )
    before: float | Text | None = Field(
        None, description="Only files taken (else modified) at or before this: Unix seconds or an ISO date."
    )
    sort: Literal["relevance", "date"] = Field(
        "relevance", description="Order of the hits (date: newest first)."
    )
    offset: int = Field(
        0, ge=0, le=MAX_OFFSET, description="Skip this many hits (the next page: offset + k)."
    )


#: What one value of a JSON input field is, by how the input is given, and how it is described.
API_FIELDS: dict[Given, tuple[Any, str]] = {
    Given.TEXT: (Text, 'Terms, e.g. "a dog" or "-0.5=people".'),
    Given.STORED: (
        ItemId | Text,
        'Item ids whose stored vectors are reused ("more like this"): 12, or "0.5=12".',
    ),
}
#: An uploaded file of a multipart search (text sent in its place is refused with a message saying so).
Upload = Annotated[
    UploadFile | str, WithJsonSchema({"type": "string", "contentMediaType": "application/octet-stream"})
]


def _terms(kind: Any, description: str) -> Any:
    return (list[kind], Field(default_factory=list, max_length=MAX_TERMS, description=description))


#: A query: weighted terms, where to search, filters. Weights use the CLI's ``WEIGHT=`` prefix.
SearchRequest: type[SearchSettings] = create_model(
    "SearchRequest",
    __base__=SearchSettings,
    __doc__="A query: weighted terms, where to search, filters. Weights use the CLI's ``WEIGHT=`` prefix.",
    **{row.name: _terms(*API_FIELDS[row.given]) for row in inputs_on("api")},
)
#: A multipart search: the fields of :data:`SearchRequest` (lists repeated) plus the upload fields,
#: each with an optional ``<field>_weight`` per file, in the same order.
SearchForm: type[SearchSettings] = create_model(
    "SearchForm",
    __base__=SearchRequest,
    __doc__="The fields of SearchRequest (lists repeated), uploads, and a <field>_weight per upload.",
    **{row.name: _terms(Upload, f"{row.label} files: {row.help}") for row in inputs_on("upload")},
    **{row.name + WEIGHT_SUFFIX: _terms(float, f"The weight of each {row.name} file, in order (default 1).")
       for row in inputs_on("upload")},
)  # fmt: skip


class QueryInputInfo(BaseModel):
    """One query input the API takes: the page offers each (``given``: text, a stored item, a file)."""

    name: str = Field(description="The field that carries it (an upload field for a file).")
    kind: str = Field(description="The modality that embeds it, or like.")
    given: Given = Field(description="How it is given: text, stored (an item id) or file (an upload).")
    label: str = Field(description="What to call it on a page.")
    media: str | None = Field(None, description="For a file: the kind of file (image, video, depth...).")


def api_inputs() -> list[QueryInputInfo]:
    """The rows of the query table the API takes (JSON fields and uploads), in the table's order."""
    offered = [row for row in QUERY_INPUTS if row.offered("api") or row.offered("upload")]
    return [QueryInputInfo.model_validate(row.describe()) for row in offered]


class Passage(BaseModel):
    """A passage of a text: the window of it that matched, and where it lies in the text."""

    text: str = Field(description="The passage, as it stands in the text.")
    char_start: int = Field(description="Offset of its first character in the file's text.")
    char_end: int = Field(description="Offset just past its last character.")
    page: int | None = Field(description="The page it begins on (PDF), from 1; None without pages.")


class Result(BaseModel):
    """One hit: an item (a file), or a stretch of it when ``start`` and ``end`` (or ``passage``) are set."""

    id: int = Field(description="The item id (stable for the file while it stays in the library).")
    path: str = Field(description="The file's path (odd bytes of non-UTF-8 names written as \\xNN).")
    path_bytes: str | None = Field(None, description="The name's exact bytes in base64, if not UTF-8.")
    score: float = Field(description="Cosine similarity to the query (its scale differs between modalities).")
    relevance: float | None = Field(
        None,
        description="The share of the library's items of this modality that score below this hit for the "
        "query (0 to 1, the same scale for every modality; README 'Relevance').",
    )
    level: str | None = Field(None, description="The relevance level reached: high, medium, low (or None).")
    sources: list[str] = Field(default_factory=list, description="What found it: meaning, keywords or both.")
    similar: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Near-duplicates folded into this hit, best first: path, score, relevance, start/end of a"
        " moment, and the item's id, thumbnail and media URLs (empty with fold false).",
    )
    taken: str | None = Field(None, description="When it was taken (else modified), ISO 8601.")
    modality: str = Field(description="The modality of the matching vector.")
    kind: str = Field(description="What the file holds: image, video, audio, text, depth, thermal, imu.")
    metadata: dict[str, Any] = Field(description="Media facts: width, height, duration, ...")
    start: float | None = Field(description="Segment start in seconds (None: the whole file).")
    end: float | None = Field(description="Segment end in seconds.")
    passage: Passage | None = Field(None, description="For a text's segment: the passage that matched.")
    thumbnail: str = Field(description="URL of a small JPEG picture of the item.")
    media: str = Field(description="URL of the file itself (HTTP Range supported).")


class SearchResponse(BaseModel):
    results: list[Result]


class Item(BaseModel):
    """An item of the library: one file."""

    id: int
    path: str
    path_bytes: str | None = None
    kind: str
    modality: str
    size: int
    metadata: dict[str, Any]
    added: float = Field(description="Unix time the file was first ingested.")
    updated: float = Field(description="Unix time of its last change.")
    thumbnail: str
    media: str


class RecentError(BaseModel):
    model_config = ConfigDict(extra="allow")

    path: str
    reason: str
    time: float


class Info(BaseModel):
    """What ``ibsearch info --json`` prints."""

    model_config = ConfigDict(extra="allow")

    library: str
    model: str
    model_description: str | None = None
    dim: int
    files: int
    files_by_kind: dict[str, int]
    vectors: dict[str, int]
    size_bytes: int
    errors: int
    recent_errors: list[RecentError]
    notes: list[str]


class Health(BaseModel):
    ok: bool


class ErrorResponse(BaseModel):
    """Every error: what was wrong, and for invalid fields which ones."""

    error: str
    detail: list[dict[str, Any]] | None = None


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Annotated[str, StringConstraints(max_length=512)]


def printable(data: Any) -> Any:
    """``data`` with every string valid UTF-8 (odd bytes of file names as ``\\xNN``), for JSON."""
    if isinstance(data, dict):
        return {printable(key): printable(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [printable(value) for value in data]
    return display_path(data) if isinstance(data, str) else data


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": what}
    for code, what in (
        (400, "The query or a value in it is wrong (the message says which)."),
        (401, "A token is required: Authorization: Bearer <token>."),
        (404, "No such item in the library."),
        (409, "The library cannot answer now (damaged, or being rebuilt)."),
        (413, "The request (an upload) is larger than the server's limit."),
        (415, "Unsupported content type."),
        (422, "A field is invalid, or an uploaded file cannot be read."),
        (507, "The disk holding the library is full (the message names the folder)."),
    )
}


__all__ = [
    "ERRORS",
    "ErrorResponse",
    "Health",
    "Info",
    "Item",
    "Passage",
    "Result",
    "QueryInputInfo",
    "SearchForm",
    "SearchRequest",
    "SearchResponse",
    "SearchSettings",
    "SignIn",
    "api_inputs",
    "printable",
]
