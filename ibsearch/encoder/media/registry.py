"""Which loader reads each (file kind, modality): one table for ingest, search and every later caller.

A loader turns one input (a path, the file's bytes, an open binary file, and for some kinds an
in-memory picture or array) into one item of the tower's input (:data:`..inputs.ITEM_SHAPES`), or
raises :class:`~ibsearch.errors.MediaError` naming the input. Adding a file type means one row here
(and a loader); adding a modality, one input shape in ``..inputs`` and its rows here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ...errors import UsageError
from ...modality import AUDIO, DEPTH, IMU, KIND_MODALITIES, TEXT, THERMAL, VISION, FileKind
from ..inputs import ITEM_SHAPES, VIDEO_SHAPE
from .audio_dsp import load_audio
from .images import load_vision
from .sensors import load_depth, load_imu, load_thermal
from .text import load_text
from .video import load_video


@dataclass(frozen=True)
class Loader:
    """How files of one kind become input items of one modality."""

    kind: FileKind  # what the file holds
    modality: str  # the tower the item feeds
    load: Callable[[Any], torch.Tensor]  # one input -> one item of ``shape``
    shape: tuple[int, ...]  # the item's shape (no batch axis)


LOADERS: dict[tuple[FileKind, str], Loader] = {
    (row.kind, row.modality): row
    for row in (
        Loader(FileKind.IMAGE, VISION, load_vision, ITEM_SHAPES[VISION]),
        Loader(FileKind.VIDEO, VISION, load_video, VIDEO_SHAPE),
        Loader(FileKind.VIDEO, AUDIO, load_audio, ITEM_SHAPES[AUDIO]),
        Loader(FileKind.AUDIO, AUDIO, load_audio, ITEM_SHAPES[AUDIO]),
        Loader(FileKind.TEXT, TEXT, load_text, ITEM_SHAPES[TEXT]),
        Loader(FileKind.DEPTH, DEPTH, load_depth, ITEM_SHAPES[DEPTH]),
        Loader(FileKind.THERMAL, THERMAL, load_thermal, ITEM_SHAPES[THERMAL]),
        Loader(FileKind.IMU, IMU, load_imu, ITEM_SHAPES[IMU]),
    )
}


def loader(kind: FileKind | str, modality: str) -> Loader:
    """The loader of ``kind`` files for the ``modality`` tower; :class:`UsageError` if there is none."""
    found = LOADERS.get((FileKind(kind), modality))
    if found is None:
        yields = ", ".join(KIND_MODALITIES[FileKind(kind)])
        raise UsageError(f"a {kind} file cannot be read as {modality} input (it gives: {yields})")
    return found


def load(kind: FileKind | str, modality: str, source: Any) -> torch.Tensor:
    """One input of ``kind`` as one ``modality`` item; raises MediaError for bad media."""
    return loader(kind, modality).load(source)


def load_item(modality: str, item: tuple[FileKind, Any]) -> torch.Tensor:
    """``load`` for the worker pool, which passes ``(modality, item)``: ``item`` is ``(kind, source)``."""
    kind, source = item
    return load(kind, modality, source)


__all__ = ["LOADERS", "Loader", "load", "load_item", "loader"]
