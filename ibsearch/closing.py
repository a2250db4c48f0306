"""``with resource:`` for the objects that hold a connection, a file or a decoder open."""

from __future__ import annotations

from typing import TypeVar

_T = TypeVar("_T", bound="Closing")


class Closing:
    """A base class: ``with obj:`` gives ``obj`` and calls its :meth:`close` on the way out."""

    def close(self) -> None:
        """Release what the object holds (subclasses extend this)."""

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
