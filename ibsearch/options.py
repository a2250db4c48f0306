"""What a search returns and where it looks: :class:`SearchOptions`, the same for every way of asking
(the CLI, Python, HTTP) and for both of the command line's backends (in-process or a running server).

It imports nothing heavy, so that the command line's fast path through a server stays light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
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

    def __post_init__(self) -> None:
        # Relative paths mean the same in both filters: relative to the current folder (see README).
        if self.path_prefix is not None:
            object.__setattr__(self, "path_prefix", anchored_prefix(self.path_prefix))
        if self.path_glob is not None:
            object.__setattr__(self, "path_glob", anchored_glob(self.path_glob))
        if not isinstance(self.k, int) or self.k < 1:
            raise UsageError(f"k must be a whole number of hits, at least 1, got {self.k!r}")
        for name in ("min_duration", "max_duration"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or math.isnan(value)):
                option = "--" + name.replace("_", "-")
                raise UsageError(f"{option} must be a number of seconds, got {value!r}")

    @classmethod
    def given(cls, targets: list[str] | None, values: Mapping[str, Any]) -> SearchOptions:
        """The options of ``targets`` and of the ``values`` named like the other fields (a command's
        or a function's arguments; other names are left out)."""
        named = {f.name: values[f.name] for f in fields(cls) if f.name != "targets" and f.name in values}
        return cls(targets=targets, **named)

    def duration_range(self) -> dict[str, tuple[float | None, float | None]]:
        """The media-info ranges to filter on ({} when none is set)."""
        if self.min_duration is None and self.max_duration is None:
            return {}
        return {"duration": (self.min_duration, self.max_duration)}

    @property
    def filtered(self) -> bool:
        """Whether a filter narrows the search (a path or a duration)."""
        return bool(self.path_glob or self.path_prefix or self.duration_range())


__all__ = ["SearchOptions"]
