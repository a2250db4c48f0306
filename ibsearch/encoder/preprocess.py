"""Turn media into ImageBind input tensors: the public preprocessing API.

``text``, ``vision``, ``audio`` and ``video`` build batches; ``load`` prepares one item of a modality
(texts are strings, everything else a file: path, bytes or binary file); ``load_parallel`` decodes
many items in worker processes and yields each result, or the :class:`MediaError` that explains why
an item was skipped, as soon as it is ready. The loaders themselves live in :mod:`.media`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from ..errors import MediaError, UsageError
from ..modality import AUDIO, QUERY_KINDS, TEXT, VISION, canonical
from .inputs import ITEM_SHAPES
from .media import pool, registry
from .media.audio_dsp import load_audio
from .media.images import ImageSource, load_vision
from .media.tokenizer import CONTEXT_LENGTH, tokenize
from .media.video import video  # batch of videos -> (N, 15, 3, 2, 224, 224)


def text(texts: Sequence[str]) -> torch.Tensor:
    """Tokenize ``texts``: ``(N, 77)`` int64 token ids, identical to the reference tokenizer."""
    if isinstance(texts, str):
        raise UsageError("text() takes a list of strings; wrap a single string in a list")
    return tokenize(list(texts))


def load(modality: str, item: Any) -> torch.Tensor:
    """Prepare ONE item of ``modality`` for the model (no batch dimension).

    text: a string -> ``(77,)`` int64; vision: an image -> ``(3, 224, 224)``; audio: a sound file
    -> ``(3, 1, 128, 204)``; depth, thermal and imu files as their loaders in :mod:`.media.sensors`
    read them. Bad media raise :class:`MediaError`.
    """
    modality = canonical(modality)
    if modality == TEXT:
        if not isinstance(item, str):
            raise UsageError(f"text items must be strings, got {type(item).__name__}")
        return tokenize([item])[0]
    return registry.load(QUERY_KINDS[modality], modality, item)


def _batch(tensors: list[torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    return torch.stack(tensors) if tensors else torch.empty(0, *shape)


def vision(items: Iterable[ImageSource]) -> torch.Tensor:
    """Batch of images -> ``(N, 3, 224, 224)`` float32; the first bad item raises MediaError."""
    return _batch([load_vision(item) for item in items], ITEM_SHAPES[VISION])


def audio(items: Iterable[Any]) -> torch.Tensor:
    """Batch of sound files -> ``(N, 3, 1, 128, 204)`` float32; the first bad item raises MediaError."""
    return _batch([load_audio(item) for item in items], ITEM_SHAPES[AUDIO])


def load_parallel(
    modality: str,
    items: Iterable[Any],
    workers: int = 0,
    *,
    max_in_flight: int | None = None,
    loader: pool.Loader | None = None,
    timeout: float | None = None,
) -> Iterator[tuple[int, torch.Tensor | MediaError]]:
    """:func:`load` (or ``loader(modality, item)``) over ``items`` in ``workers`` processes, each item
    given at most ``timeout`` seconds. Yields ``(index, tensor or MediaError)`` in completion order;
    see :func:`.media.pool.load_parallel`.
    """
    return pool.load_parallel(
        modality, items, workers, max_in_flight=max_in_flight, loader=loader or load, timeout=timeout
    )


__all__ = [
    "CONTEXT_LENGTH",
    "audio",
    "load",
    "load_audio",
    "load_parallel",
    "load_vision",
    "text",
    "video",
    "vision",
]
