"""What a search returns and where it looks: :class:`SearchOptions`, the same for every way of asking
(the CLI, Python, HTTP) and for both of the command line's backends (in-process or a running server).

It imports nothing heavy, so that the command line's fast path through a server stays light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from .errors import UsageError
from .locations import anchored_glob, anchored_prefix


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """Where to search and what comes back (the same for every way of asking: CLI, Python, HTTP)."""

    targets: list[str] | None = None  # modalities to search (aliases such as "image" accepted); None: all
    k: int = 10  # number of hits, best first across targets
    path_glob: str | None = None  # only files whose readable path matches this SQLite GLOB
    path_prefix: str | None = None  # only files equal to this path or under it as a folder
    min_duration: float | None = None  # only media at least this many seconds long
    max_duration: float | None = None  # only media at most this many seconds long
    segments: bool = False  # segments (of long media: timestamped; of texts: passages), best per file
    include_like: bool = False  # also return the files of ``like`` terms (left out: "more like this")
    # Relevance (README "Relevance"): a hit's score mapped to a scale that means the same for every pair of
    # query kind and target modality; below this (a number in [0, 1] or a level of RELEVANCE_LEVELS) left out.
    min_relevance: float | str | None = None
    keywords: bool = True  # text terms also find files by name, folder and text (SQLite FTS5), fused in
    fold: bool = True  # a near-duplicate of a better hit of its modality folds into it (Hit.similar)
    per_file: int = 1  # with segments: up to this many moments of one file (adjacent ones merged)
    after: float | str | None = None  # only files taken (else modified) at or after this (Unix s or ISO date)
    before: float | str | None = None  # only files taken (else modified) at or before this (Unix s or ISO)
    sort: str = "relevance"  # or "date": newest first among the hits above the threshold
    offset: int = 0  # skip this many hits, counted after all ranking (paging)

    def __post_init__(self) -> None:
        # Relative paths mean the same in both filters: relative to the current folder (see README).
        if self.path_prefix is not None:
            object.__setattr__(self, "path_prefix", anchored_prefix(self.path_prefix))
        if self.path_glob is not None:
            object.__setattr__(self, "path_glob", anchored_glob(self.path_glob))
        if not isinstance(self.k, int) or self.k < 1:
            raise UsageError(f"k must be a whole number of hits, at least 1, got {self.k!r}")
        self._check_counts()
        if self.sort not in SORTS:
            raise UsageError(f"sort must be one of {', '.join(SORTS)}, got {self.sort!r}")
        if self.min_relevance is not None:
            object.__setattr__(self, "min_relevance", relevance_threshold(self.min_relevance))
        for name in ("after", "before"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, moment(getattr(self, name), "--" + name))
        for name in ("min_duration", "max_duration"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or math.isnan(value)):
                option = "--" + name.replace("_", "-")
                raise UsageError(f"{option} must be a number of seconds, got {value!r}")

    def _check_counts(self) -> None:
        for name, least in (("per_file", 1), ("offset", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                option = "--" + name.replace("_", "-")
                raise UsageError(f"{option} must be a whole number, at least {least}, got {value!r}")
        if self.per_file > 1 and not self.segments:
            raise UsageError(f"--per-file {self.per_file} needs --segments (a whole file is one hit)")

    @classmethod
    def given(cls, targets: list[str] | None, values: Mapping[str, Any]) -> SearchOptions:
        """The options of ``targets`` and of the ``values`` named like the other fields (a command's
        or a function's arguments; other names are left out)."""
        named = {f.name: values[f.name] for f in fields(cls) if f.name != "targets" and f.name in values}
        return cls(targets=targets, **named)

    def info_ranges(self) -> dict[str, tuple[float | None, float | None]]:
        """The media-info ranges to filter on ({} when none is set): duration, and ``taken`` (the date
        a file was taken, else its modification time, Unix seconds) for ``after``/``before``."""
        ranges: dict[str, tuple[float | None, float | None]] = {}
        if self.min_duration is not None or self.max_duration is not None:
            ranges["duration"] = (self.min_duration, self.max_duration)
        if self.after is not None or self.before is not None:
            ranges["taken"] = (_seconds(self.after), _seconds(self.before))
        return ranges

    @property
    def filtered(self) -> bool:
        """Whether a filter narrows the search (a path, a duration or a date)."""
        return bool(self.path_glob or self.path_prefix or self.info_ranges())


#: How hits may be ordered.
SORTS = ("relevance", "date")
#: Named relevance thresholds (``--min-relevance high``). A relevance r is the share of the library's items of
#: the hit's modality that score below it (README "Relevance"): at high 1 in 100 unrelated items of a modality
#: still reach it, at medium 1 in 20, at low 1 in 5.
RELEVANCE_LEVELS: dict[str, float] = {"high": 0.99, "medium": 0.95, "low": 0.8}


def relevance_threshold(value: float | str) -> float:
    """A ``min_relevance`` as a number in [0, 1]: a level's name, or a number (also given as text)."""
    if isinstance(value, str):
        named = RELEVANCE_LEVELS.get(value.strip().lower())
        if named is not None:
            return named
        try:
            value = float(value)
        except ValueError:
            levels = ", ".join(RELEVANCE_LEVELS)
            raise UsageError(
                f"min relevance must be {levels} or a number from 0 to 1, got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise UsageError(f"min relevance must be a number from 0 to 1 (or high, medium, low), got {value!r}")
    return float(value)


def relevance_level(relevance: float | None) -> str | None:
    """The name of the highest level ``relevance`` reaches (None below all, or without a relevance)."""
    if relevance is None:
        return None
    for name, least in sorted(RELEVANCE_LEVELS.items(), key=lambda item: -item[1]):
        if relevance >= least:
            return name
    return None


def moment(value: float | str, what: str) -> float:
    """A point in time as Unix seconds: a number, or an ISO 8601 date or date and time (local time when
    it names no zone: '2024-06-01', '2024-06-01T18:30')."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return when.timestamp()  # naive: local time, as a person means a date
    raise UsageError(f"{what} must be a date such as 2024-06-01 (or 2024-06-01T18:30), got {value!r}")


def _seconds(value: float | str | None) -> float | None:
    return None if value is None else float(value)  # already a number: __post_init__ converted it


__all__ = ["RELEVANCE_LEVELS", "SORTS", "SearchOptions", "moment", "relevance_level", "relevance_threshold"]
