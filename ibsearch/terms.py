"""Query terms: what a query is made of, and the CLI's ``WEIGHT=VALUE`` syntax for weights.

A query is a weighted sum of terms. Each term's vector is L2-normalized, multiplied by its weight
(default 1, negative allowed) and added; the sum is renormalized before searching.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import UsageError
from .modality import VISION, FileKind, canonical

#: The term kinds besides the modalities: an ingested file whose stored vector is reused, and a raw
#: vector of the library's dimension (computed elsewhere, or taken from an export).
LIKE = "like"
VECTOR = "vector"
#: CLI term options that name a file kind rather than a modality: ``--video`` is a video file,
#: embedded by its picture like the vision vector of an ingested video.
MEDIA_OPTIONS: dict[str, tuple[str, FileKind]] = {"video": (VISION, FileKind.VIDEO)}

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
    the option ``--<kind>`` (a modality, ``like``, or one of :data:`MEDIA_OPTIONS`)."""
    weight = 1.0
    value = raw
    match = _WEIGHTED.match(raw)
    if match:
        weight = float(match.group(1))
        value = match.group(2)
    if not value.strip():
        raise UsageError(f"empty {kind} term {raw!r}; write WEIGHT=VALUE, e.g. 0.5=bark.wav")
    if kind in MEDIA_OPTIONS:
        modality, media = MEDIA_OPTIONS[kind]
        return Term(modality, value, weight, media)
    return Term(kind, value, weight)


def terms_from_inputs(kind: str, inputs: Any, media: FileKind | None = None) -> list[Term]:
    """Python inputs for one keyword (a single input, a list of them, or ``weighted(...)`` pairs);
    ``media`` as for :class:`Term`."""
    if inputs is None:
        return []
    items = inputs if isinstance(inputs, list) else [inputs]
    terms = []
    for item in items:
        if isinstance(item, _Weighted):
            terms.append(Term(kind, item[0], item[1], media))
        else:
            terms.append(Term(kind, item, media=media))
    return terms
