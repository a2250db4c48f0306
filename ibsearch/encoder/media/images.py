"""Image decoding and ImageBind's image transform (CLIP-style), in Pillow + torch.

The transform is bit-identical to the reference's torchvision pipeline: short side to 224 with
Pillow's bicubic filter (long side truncated), 224x224 centre crop at rounded offsets, /255, CLIP
mean/std. Decoding differs from the reference on purpose in two places (see ``PREP_DEVIATIONS``):
EXIF orientation is applied, and 16-bit greyscale is scaled to 8 bits instead of clipped to white.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps

from ...errors import MediaError
from ..filters import WARNING_FILTERS
from ..inputs import IMAGE_SIZE
from .decode import Source, checked_source, source_name
from .detect import HEAD_BYTES
from .picture_formats import identify
from .pictures import decode_picture

log = logging.getLogger(__name__)

#: OpenAI CLIP normalization constants, used by ImageBind.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Past this long/short side ratio the full-size resize would be huge (a 1 x 50,000 pixel strip
# becomes 224 x 11.2 million); resize only the crop window instead (differs by ~1 grey level).
MAX_EXACT_ASPECT = 64.0

_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")

ImageSource = Source | Image.Image


def _bomb_error(name: str, exc: BaseException) -> MediaError:
    limit = Image.MAX_IMAGE_PIXELS
    found = _BOMB_PIXELS.search(str(exc))
    size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return MediaError(
        name,
        f"image has {size}, more than Pillow's decompression-bomb limit of {limit:,} pixels; "
        "if you trust this file, raise PIL.Image.MAX_IMAGE_PIXELS",
    )


def _to_eight_bit(img: Image.Image) -> Image.Image:
    """Scale 16-bit greyscale to 8 bits (the reference's convert('RGB') clips it to white)."""
    if img.mode in _SIXTEEN_BIT or (img.mode == "I" and img.format == "PNG"):
        values = np.asarray(img).astype(np.int64)
        return Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8), mode="L")
    return img


def load_image(src: ImageSource, *, name: str | None = None) -> Image.Image:
    """Decode ``src`` (a path, the file's bytes, a binary file, or a PIL image) to an RGB image.

    EXIF orientation is applied and 16-bit greyscale is scaled to 8 bits; everything else (alpha
    dropped, palette and CMYK converted) is Pillow's ``convert("RGB")``, as in the reference.
    Raises :class:`MediaError` for a missing, empty, truncated or unrecognised file, a zero-size
    image, or one larger than Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    if isinstance(src, Image.Image):
        name = name or "<PIL image>"
        img = src
    else:
        name = name or source_name(src)
        img = open_image(src, name)
    if img.width == 0 or img.height == 0:
        raise MediaError(name, f"image has zero size ({img.width} x {img.height} pixels)")
    try:
        img.load()
    except Exception as exc:  # Pillow plugins raise many types for damaged data
        raise MediaError(name, f"image data is truncated or corrupt ({exc})") from exc
    # A picture opened here is turned in place and kept when already RGB: each copy of a
    # full-size photo costs milliseconds. A caller's own image is never changed.
    try:
        if img is src:
            img = ImageOps.exif_transpose(img)
        else:
            ImageOps.exif_transpose(img, in_place=True)
    except Exception as exc:  # a damaged EXIF block should not cost the picture
        log.debug("ignoring unreadable EXIF orientation in %s: %s", name, exc)
    try:
        eight = _to_eight_bit(img)
        return eight if eight.mode == "RGB" and eight is not src else eight.convert("RGB")
    except Exception as exc:
        raise MediaError(name, f"cannot convert {img.mode} image to RGB ({exc})") from exc


#: Pillow formats whose plugins check a picture's pixel count when it is opened, never as it loads
#: (GIF, ICO, ICNS and others check frames and sizes as they load, so they load under the filter too).
_SIZE_CHECKED_ON_OPENING = frozenset({"JPEG", "PNG", "WEBP", "BMP", "TIFF", "PPM", "MPO"})


def open_image(src: Source, name: str) -> Image.Image:
    """Open and load an image file as it is stored (mode unchanged), refusing decompression bombs.

    Every image ibsearch reads goes through here, so Pillow's pixel limit is enforced everywhere.
    The formats Pillow does not read alone (HEIC, JPEG XL, SVG, camera RAW, PAM) are recognised by
    ``picture_formats`` and decoded by ``pictures``; a missing optional library is a transient
    :class:`MediaError` with the pip command.
    """
    source = checked_source(src, name)
    fh: BinaryIO = open(source, "rb") if isinstance(source, str) else source
    fmt = None
    try:
        start = fh.tell()
        fmt = identify(fh.read(HEAD_BYTES), name)
        fh.seek(start)
        decoded = None if fmt is None else decode_picture(fmt, fh, name)
        if decoded is not None:
            return decoded
        # Pillow only warns between 1x and 2x its pixel limit; both are refused alike. Warning
        # filters are process-wide (..filters): one picture at a time in here. Most formats check
        # their size when opened only; those are decoded outside.
        with WARNING_FILTERS, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fh)
            if img.format not in _SIZE_CHECKED_ON_OPENING:
                img.load()
        img.load()
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_error(name, exc) from exc
    except Image.UnidentifiedImageError as exc:
        if fmt is not None:
            raise MediaError(name, f"not a readable {fmt.name} picture (a damaged file?)") from exc
        raise MediaError(name, "not a recognised image (unknown format, or a damaged header)") from exc
    except Exception as exc:  # Pillow plugins raise many types for damaged data
        what = f"{fmt.name} picture" if fmt else "image"
        raise MediaError(name, f"{what} data is truncated or corrupt ({exc})") from exc
    finally:
        if fh is not src:
            fh.close()
    return img


def resize_and_crop(img: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """Short side to ``size`` (bicubic, long side truncated), then a centred ``size`` square.

    The crop offsets are ``round((length - size) / 2)`` with Python's rounding, as torchvision's
    ``CenterCrop`` does. Images more elongated than :data:`MAX_EXACT_ASPECT` are resized only
    inside the crop window, which keeps memory bounded at the cost of exact parity.
    """
    w, h = img.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    if max(w, h) / min(w, h) > MAX_EXACT_ASPECT:
        sx, sy = w / new_w, h / new_h
        box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
        return img.resize((size, size), Image.Resampling.BICUBIC, box=box)
    resized = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    return resized.crop((left, top, left + size, top + size))


def image_tensor(img: Image.Image) -> torch.Tensor:
    """ImageBind's vision input for an RGB image: ``(3, 224, 224)`` float32, CLIP-normalized."""
    rgb = img if img.mode == "RGB" else img.convert("RGB")  # convert() would copy an RGB picture whole
    pixels = np.asarray(resize_and_crop(rgb), dtype=np.uint8)
    x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).to(torch.float32).div(255)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32).view(3, 1, 1)
    return (x - mean) / std


def load_vision(src: ImageSource, *, name: str | None = None) -> torch.Tensor:
    """One image (path, bytes, binary file or PIL image) -> ``(3, 224, 224)`` float32."""
    return image_tensor(load_image(src, name=name))
