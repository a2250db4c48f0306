"""Uploaded query files: how many one search may send, how many pixels it may make the server
decode, and decoding them without holding up other clients.

Both limits are decided before anything is decoded: the number of files when the form is read
(``--max-upload-files``, :func:`~ibsearch.server.query.read_form`), the pixels from each image's
header (``--max-upload-megapixels``, the images of the ``image``, ``depth`` and ``thermal`` fields
together; Pillow reads an image's size without its data, numpy an array's shape from its ``.npy``
header). A 9000 x 9000 JPEG is a few hundred kilobytes that take seconds to decode, which the
upload size limit alone does not bound.

Decoding then happens on worker threads, at most :data:`DECODE_THREADS` at once for the whole
server and one at a time per search, and not on the library's thread (:class:`LibraryService`):
that thread only runs the tower over each decoded input, one upload per piece of work, so a text
search arriving meanwhile waits for one encoding at most instead of a whole request's decoding. Half
the cores stay free for the searches of other clients.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from starlette.concurrency import run_in_threadpool

from ..library import Library
from ..modality import DEPTH, QUERY_KINDS, THERMAL, VISION
from ..terms import VECTOR, Term
from .config import ServerConfig
from .query import Uploads
from .security import UploadTooLarge
from .service import LibraryService

if TYPE_CHECKING:
    import torch

#: Decodes under way at once in the whole server.
DECODE_THREADS = max(1, (os.cpu_count() or 2) // 2)
#: Upload modalities whose files are pictures (a video is bounded by the upload size alone).
PICTURES = (VISION, DEPTH, THERMAL)
NPY_MAGIC = b"\x93NUMPY"


def picture_size(path: str) -> tuple[int, int] | None:
    """``(width, height)`` of the image or ``.npy`` map at ``path`` from its header alone; None when
    it is neither (its loader then says what is wrong with it)."""
    with open(path, "rb") as fh:
        npy = fh.read(len(NPY_MAGIC)) == NPY_MAGIC
    if npy:
        try:
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        except (ValueError, OSError):
            return None
        return (int(shape[-1]), int(np.prod(shape[:-1], dtype=np.int64))) if shape else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.size
    except Image.DecompressionBombError:  # past twice Pillow's limit: far past any budget anyway
        side = int((2 * (Image.MAX_IMAGE_PIXELS or 0)) ** 0.5) + 1
        return side, side
    except Exception:  # Pillow plugins raise many types for what they cannot read
        return None


def check_pixels(files: list[Term], uploads: Uploads, megapixels: float) -> None:
    """Refuse (:class:`UploadTooLarge`) the first picture that takes ``files`` past ``megapixels``."""
    budget, total = int(megapixels * 1_000_000), 0
    for term in files:
        if term.kind not in PICTURES or term.media is not None:
            continue
        size = picture_size(str(term.value))
        total += size[0] * size[1] if size else 0
        if size and total > budget:
            raise UploadTooLarge(
                f"{uploads.names.get(str(term.value), 'an upload')} is {size[0]} x {size[1]} pixels: "
                f"the images of one search may hold at most {megapixels:g} megapixels in all on this "
                "server (--max-upload-megapixels); send a smaller picture"
            )


class UploadDecoder:
    """Turns a search's upload terms into vector terms: checked, decoded on worker threads, and
    encoded on the library's thread (see the module docs)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._decoding = asyncio.Semaphore(DECODE_THREADS)

    async def vectors(self, files: list[Term], uploads: Uploads, service: LibraryService) -> list[Term]:
        """``files`` (upload terms) as ``vector`` terms of the same weights; raises
        :class:`UploadTooLarge` past the pixel limit and :class:`~ibsearch.errors.MediaError` for a
        file that cannot be decoded (naming the saved copy: see :meth:`Uploads.explain`)."""
        from ..encoder.media.registry import load

        await run_in_threadpool(check_pixels, files, uploads, self.config.max_upload_megapixels)
        terms = []
        for term in files:
            kind = term.media or QUERY_KINDS[term.kind]
            async with self._decoding:
                item = await run_in_threadpool(load, kind, term.kind, term.value)
            vector = await service.run(partial(encode, modality=term.kind, item=item))
            terms.append(Term(VECTOR, vector, term.weight))
        return terms


def encode(lib: Library, modality: str, item: torch.Tensor) -> np.ndarray:
    """The ``(dim,)`` vector of one decoded input, as :func:`~ibsearch.encoder.embed.embed_input`
    makes it (on the library's thread)."""
    return lib.encoder().encode(modality, item[None])[0]


__all__ = ["DECODE_THREADS", "UploadDecoder", "check_pixels", "picture_size"]
