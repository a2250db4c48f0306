"""Uploaded query files: how many one search may send, how many pixels it may make the server
decode, and decoding them without holding up other clients.

Both limits are decided before anything is decoded: the number of files when the form is read
(``--max-upload-files``, :func:`~ibsearch.server.query.form_terms`), the pixels from each image's
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
import re
import warnings
from functools import partial
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image
from starlette.concurrency import run_in_threadpool

from ..encoder.filters import WARNING_FILTERS
from ..library import LibraryResources
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
BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def picture_pixels(path: str) -> tuple[int, str] | None:
    """The pixels of the image or ``.npy`` map at ``path``, from its header alone, and how to say
    it (``"9000 x 9000 pixels"``); None when it is neither (its loader then says what is wrong)."""
    with open(path, "rb") as fh:
        if fh.read(len(NPY_MAGIC)) == NPY_MAGIC:
            fh.seek(0)
            try:
                shape = npy_shape(fh)
            except ValueError:
                return None
            return int(np.prod(shape, dtype=np.int64)), f"{' x '.join(map(str, shape))} values"
    try:
        with WARNING_FILTERS, warnings.catch_warnings():  # filters are process-wide: one thread at a time
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.width * image.height, f"{image.width} x {image.height} pixels"
    except Image.DecompressionBombError as exc:  # past twice Pillow's limit; its message has the count
        found = BOMB_PIXELS.search(str(exc))
        pixels = int(found.group(1)) if found else 2 * (Image.MAX_IMAGE_PIXELS or 0) + 1
        return pixels, f"{pixels:,} pixels"
    except Exception:  # Pillow plugins raise many types for what they cannot read
        return None


def npy_shape(fh: BinaryIO) -> tuple[int, ...]:
    """The shape an ``.npy`` file declares in its header (``fh`` at its start)."""
    if np.lib.format.read_magic(fh) == (1, 0):
        return tuple(np.lib.format.read_array_header_1_0(fh)[0])
    return tuple(np.lib.format.read_array_header_2_0(fh)[0])


def check_pixels(files: list[Term], uploads: Uploads, megapixels: float) -> None:
    """Refuse (:class:`UploadTooLarge`) the first picture that takes ``files`` past ``megapixels``."""
    budget, total = int(megapixels * 1_000_000), 0
    for term in files:
        if term.kind not in PICTURES or term.media is not None:
            continue
        found = picture_pixels(str(term.value))
        total += found[0] if found else 0
        if found and total > budget:
            raise UploadTooLarge(
                f"{uploads.names.get(str(term.value), 'an upload')} is {found[1]}: the images of one "
                f"search may hold at most {megapixels:g} megapixels in all on this server "
                "(--max-upload-megapixels); send a smaller picture"
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


def encode(lib: LibraryResources, modality: str, item: torch.Tensor) -> np.ndarray:
    """The ``(dim,)`` vector of one decoded input, as :func:`~ibsearch.encoder.embed.embed_input`
    makes it (on the library's thread)."""
    return lib.encoder().encode(modality, item[None])[0]


__all__ = ["DECODE_THREADS", "UploadDecoder", "check_pixels", "picture_pixels"]
