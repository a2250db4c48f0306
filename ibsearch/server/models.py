"""The API's typed requests and responses (what ``/openapi.json`` describes and scripts rely on)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ..files import display_path
from ..modality import MODALITIES

MAX_TERMS = 32  # terms of one kind in one query
MAX_TEXT = 10_000  # characters of one text term (the tower reads 77 tokens anyway)
MAX_K = 1000  # hits per query
MAX_ID = 2**63 - 1  # SQLite's largest integer
#: Upload fields of a multipart search and the kind of file each holds.
FILE_FIELDS = ("image", "audio", "video", "depth", "thermal", "imu")


def _unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


Text = Annotated[str, StringConstraints(max_length=MAX_TEXT), AfterValidator(_unicode)]
ItemId = Annotated[int, Field(ge=0, le=MAX_ID)]


class SearchRequest(BaseModel):
    """A query: weighted terms, where to search, filters. Weights use the CLI's ``WEIGHT=`` prefix."""

    model_config = ConfigDict(extra="forbid")

    text: list[Text] = Field(
        default_factory=list, max_length=MAX_TERMS, description='Text terms, e.g. "a dog" or "-0.5=people".'
    )
    like: list[ItemId | Text] = Field(
        default_factory=list,
        max_length=MAX_TERMS,
        description='Item ids whose stored vectors are reused ("more like this"): 12, or "0.5=12".',
    )
    target: list[Text] = Field(
        default_factory=list,
        max_length=len(MODALITIES) * 2,
        description="Modalities to search (vision or image, text, audio, depth, thermal, imu); default all.",
    )
    k: int = Field(10, ge=1, le=MAX_K, description="Number of hits, best first across targets.")
    segments: bool = Field(False, description="Timestamped segments of long media instead of files.")
    include_like: bool = Field(False, description="Also return the items of like terms themselves.")
    path_prefix: Text | None = Field(None, description="Only files under this absolute folder.")
    path_glob: Text | None = Field(
        None, description="Only files whose path matches this glob ('*.png', '/photos/*/*.jpg')."
    )
    min_duration: float | None = Field(None, description="Only media at least this many seconds long.")
    max_duration: float | None = Field(None, description="Only media at most this many seconds long.")


class Result(BaseModel):
    """One hit: an item (a file), or a stretch of it when ``start`` and ``end`` are set."""

    id: int = Field(description="The item id (stable for the file while it stays in the library).")
    path: str = Field(description="The file's path (odd bytes of non-UTF-8 names written as \\xNN).")
    path_bytes: str | None = Field(None, description="The name's exact bytes in base64, if not UTF-8.")
    score: float = Field(description="Cosine similarity to the query.")
    modality: str = Field(description="The modality of the matching vector.")
    kind: str = Field(description="What the file holds: image, video, audio, text, depth, thermal, imu.")
    metadata: dict[str, Any] = Field(description="Media facts: width, height, duration, ...")
    start: float | None = Field(description="Segment start in seconds (None: the whole file).")
    end: float | None = Field(description="Segment end in seconds.")
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


def form_schema() -> dict[str, Any]:
    """The JSON schema of a multipart search: the fields of :class:`SearchRequest` (lists repeated)
    plus the upload fields, each with an optional ``<field>_weight`` per file, in the same order."""
    schema = SearchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    properties: dict[str, Any] = dict(schema["properties"])
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    for name in FILE_FIELDS:
        properties[name] = {"type": "array", "items": binary, "maxItems": MAX_TERMS, "title": name}
        properties[f"{name}_weight"] = {"type": "array", "items": {"type": "number"}, "maxItems": MAX_TERMS}
    return {"title": "SearchForm", "type": "object", "properties": properties, "additionalProperties": False}


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
    "FILE_FIELDS",
    "ErrorResponse",
    "Health",
    "Info",
    "Item",
    "Result",
    "SearchRequest",
    "SearchResponse",
    "SignIn",
    "form_schema",
    "printable",
]
