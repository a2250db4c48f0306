"""Query terms: what a query is made of, and the CLI's ``WEIGHT=VALUE`` syntax for weights.

A query is a weighted sum of terms. Each term's vector is L2-normalized, multiplied by its weight
(default 1, negative allowed) and added; the sum is renormalized before searching.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import UsageError
from .modality import AUDIO, DEPTH, IMU, QUERY_KINDS, TEXT, THERMAL, VISION, FileKind, canonical

#: The term kinds besides the modalities: an ingested file whose stored vector is reused, and a raw
#: vector of the library's dimension (computed elsewhere, or taken from an export).
LIKE = "like"
VECTOR = "vector"


class Given(str, Enum):
    """How a query input is given."""

    TEXT = "text"  # a string, embedded by the text tower
    FILE = "file"  # a file (path, bytes, decoded picture or array), embedded by its modality's tower
    STORED = "stored"  # an ingested file (a path, or an item id over HTTP): its stored vector is reused
    VECTOR = "vector"  # a raw vector in the library's embedding space


@dataclass(frozen=True)
class QueryInput:
    """One row of the query vocabulary: every surface (CLI options, ``Searcher.query`` keywords, the
    HTTP API's fields and upload fields, the command line's fast path through a server, the page's
    input choices) is derived from :data:`QUERY_INPUTS`, so an input is added or renamed in one place.

    ``name`` is the option, keyword and field name; ``kind`` the :class:`Term` kind it makes (a
    modality, ``like`` or ``vector``); ``media`` the file kind when it is not the modality's usual one;
    ``aliases`` extra Python keywords; ``surfaces`` where it is offered: ``cli``, ``python``, ``api``
    (a JSON field) and ``upload`` (a multipart file field); ``label`` and ``help`` are for people.
    Every input is weighted the same way: ``WEIGHT=VALUE`` in text, ``weighted(x, w)`` in Python,
    a ``<name>_weight`` field beside an upload.
    """

    name: str
    kind: str
    given: Given
    help: str
    label: str
    media: FileKind | None = None
    aliases: tuple[str, ...] = ()
    surfaces: frozenset[str] = frozenset({"cli", "python"})

    @property
    def modality(self) -> str | None:
        """The tower that embeds it (None for a stored item or a raw vector)."""
        return self.kind if self.given in (Given.TEXT, Given.FILE) else None

    def offered(self, surface: str) -> bool:
        return surface in self.surfaces

    @property
    def metavar(self) -> str:
        """How the CLI shows its value: a weight prefix and a text or a path."""
        return "[W=]TEXT" if self.given is Given.TEXT else "[W=]PATH"

    def term(self, value: Any, weight: float = 1.0) -> Term:
        """The :class:`Term` of one value given for this input."""
        return Term(self.kind, value, weight, self.media)

    def describe(self) -> dict[str, Any]:
        """What the page needs to offer it: name, term kind, how it is given, label, and for a file
        the kind of file it is (``image``, ``video``, ``depth``...)."""
        media = self.media or (QUERY_KINDS[self.kind] if self.given is Given.FILE else None)
        return {"name": self.name, "kind": self.kind, "given": self.given.value, "label": self.label,
                "media": media.value if media else None}  # fmt: skip


_FILE_SURFACES = frozenset({"cli", "python", "upload"})

#: The query vocabulary, in the order the CLI and the page list it.
QUERY_INPUTS: tuple[QueryInput, ...] = (
    QueryInput(
        "text",
        TEXT,
        Given.TEXT,
        "A text query term (repeatable).",
        "text",
        surfaces=frozenset({"cli", "python", "api"}),
    ),
    QueryInput(
        "image",
        VISION,
        Given.FILE,
        "An image query term.",
        "image",
        aliases=(VISION,),
        surfaces=_FILE_SURFACES,
    ),
    QueryInput("audio", AUDIO, Given.FILE, "An audio query term.", "sound", surfaces=_FILE_SURFACES),
    QueryInput(
        "video",
        VISION,
        Given.FILE,
        "A video term (its picture).",
        "video",
        media=FileKind.VIDEO,
        surfaces=_FILE_SURFACES,
    ),
    QueryInput(
        "depth", DEPTH, Given.FILE, "A depth map (.png/.tif/.npy).", "depth map", surfaces=_FILE_SURFACES
    ),
    QueryInput(
        "thermal", THERMAL, Given.FILE, "A thermal image term.", "thermal image", surfaces=_FILE_SURFACES
    ),
    QueryInput(
        "imu", IMU, Given.FILE, "An IMU recording (.npy/.csv).", "motion (IMU)", surfaces=_FILE_SURFACES
    ),
    QueryInput(
        "like",
        "like",
        Given.STORED,
        "An ingested file: reuse its vector.",
        "more like",
        surfaces=frozenset({"cli", "python", "api"}),
    ),
    QueryInput(
        "vector",
        "vector",
        Given.VECTOR,
        "A raw vector in the library's embedding space.",
        "vector",
        surfaces=frozenset({"python"}),
    ),
)
#: The rows by name.
INPUTS_BY_NAME: dict[str, QueryInput] = {row.name: row for row in QUERY_INPUTS}


def inputs_on(surface: str) -> tuple[QueryInput, ...]:
    """The query inputs offered on ``surface`` (``cli``, ``python``, ``api``, ``upload``)."""
    return tuple(row for row in QUERY_INPUTS if row.offered(surface))


def python_keywords() -> dict[str, QueryInput]:
    """The keywords of ``Searcher.query`` that take inputs (names and aliases), in the table's order."""
    return {name: row for row in inputs_on("python") for name in (row.name, *row.aliases)}


def input_for(term: Term, surface: str) -> QueryInput | None:
    """The input of ``surface`` that carries ``term`` (e.g. the upload field of a file term over
    HTTP); None when that surface has none for it."""
    rows = (row for row in inputs_on(surface) if (row.kind, row.media) == (term.kind, term.media))
    return next(rows, None)


def no_input_message() -> str:
    """What a query without any input is told: the options it could have used."""
    options = [f"--{row.name}" for row in inputs_on("cli")]
    return f"a query needs at least one input: {', '.join(options[:-1])} or {options[-1]}"


_WEIGHTED = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)=(.*)$", re.S)


@dataclass(frozen=True)
class Term:
    """One query input: ``kind`` is a modality name or ``"like"``; ``value`` a text, path, bytes, image....

    ``media`` says what kind of file ``value`` is when that is not the modality's usual kind (a video
    file for a vision term); None means the usual one (:data:`ibsearch.modality.QUERY_KINDS`).
    """

    kind: str
    value: Any
    weight: float = 1.0
    media: FileKind | None = None

    def __post_init__(self) -> None:
        if self.kind not in (LIKE, VECTOR):
            object.__setattr__(self, "kind", canonical(self.kind))
        if not isinstance(self.weight, (int, float)) or not math.isfinite(self.weight):
            raise UsageError(f"term weight must be a finite number, got {self.weight!r}")
        if self.weight == 0:
            raise UsageError(f"term weight 0 for {self.describe()} has no effect; remove the term instead")

    def describe(self) -> str:
        """A short human description for messages (never the raw bytes of an input)."""
        what = self.media or self.kind
        if isinstance(self.value, str):
            return f"{what} {self.value!r}"
        return f"{what} <{type(self.value).__name__}>"


def weighted(value: Any, weight: float) -> tuple[Any, float]:
    """Mark a Python query input with a weight: ``query(audio=weighted("bark.wav", 0.5))``."""
    return _Weighted(value, float(weight))


class _Weighted(tuple):  # type: ignore[type-arg]
    """A (value, weight) pair that cannot be mistaken for an input that is itself a tuple."""

    def __new__(cls, value: Any, weight: float) -> _Weighted:
        return super().__new__(cls, (value, weight))


def parse_term(kind: str, raw: str) -> Term:
    """Parse a CLI term ``[WEIGHT=]VALUE`` (``0.5=bark.wav``, ``-1=people``, ``a dog``) given with
    the option ``--<kind>`` (a name of :data:`QUERY_INPUTS`, or a modality)."""
    weight = 1.0
    value = raw
    match = _WEIGHTED.match(raw)
    if match:
        weight = float(match.group(1))
        value = match.group(2)
    if not value.strip():
        raise UsageError(f"empty {kind} term {raw!r}; write WEIGHT=VALUE, e.g. 0.5=bark.wav")
    row = INPUTS_BY_NAME.get(kind)
    return row.term(value, weight) if row else Term(kind, value, weight)


def python_terms(given: dict[str, Any]) -> list[Term]:
    """The terms of ``Searcher.query``'s input keywords (``given``: keyword -> a single input, a list
    of them, or ``weighted(...)`` pairs; None for none), in the table's order."""
    terms = []
    for name, row in python_keywords().items():
        inputs = given.get(name)
        for item in [] if inputs is None else inputs if isinstance(inputs, list) else [inputs]:
            terms.append(row.term(*item) if isinstance(item, _Weighted) else row.term(item))
    return terms
