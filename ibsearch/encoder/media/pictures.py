"""Decoders of the picture formats in ``picture_formats``: each gives ``images`` a PIL image.

- **HEIC/HEIF** is a Pillow plugin (pillow-heif): once registered, Pillow opens it like any picture,
  decompression-bomb limit included; it applies the file's rotation and mirroring and resets the EXIF
  orientation, so the picture comes upright as a JPEG does.
- **JPEG XL** is decoded by imagecodecs (libjxl), which applies the orientation of the codestream
  (where a JPEG's EXIF orientation goes when it is recompressed to JPEG XL). 16-bit and float
  samples are scaled to 8 bits.
- **SVG** is rasterized by resvg with the short side at the vision tower's size (the aspect kept), on
  white, the page a browser shows a drawing on. Links to other files are not followed.
- **Camera RAW** (rawpy, i.e. LibRaw): the embedded JPEG preview when its short side reaches the
  tower's size (fast, and the camera's own rendering), turned upright by the RAW's orientation unless
  the preview carries its own; otherwise the mosaic demosaiced at half size (more than enough for 224
  pixels, and four times faster), which LibRaw turns upright itself.
- **PAM** (Netpbm's P7) is read here: a short text header and raw samples, 8 or 16 bits.

Colour profiles are left unapplied, as for every other picture (the reference's ``convert("RGB")``).
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from ...errors import MediaError
from ..inputs import IMAGE_SIZE
from .picture_formats import HEIF, JPEG_XL, PAM, RAW, SVG, PictureFormat, require

MAX_SVG_BYTES = 64 * 1024 * 1024  # an SVG (or an .svgz once inflated) larger than this is refused
_PAM_HEADER_LINES = 64
_REGISTERED: set[str] = set()  # Pillow plugins registered in this process (Pillow's registry is per process)
_PAM_DEPTHS = (1, 2, 3, 4)  # grey, grey + alpha, RGB, RGBA
_EXTERNAL = re.compile(r"""((?:xlink:)?href\s*=\s*)(["'])(?!\s*(?:data:|#))[^"']*\2""")
# LibRaw's ``flip`` as the transpose that turns the picture upright (3: half a turn, 5: a quarter
# turn counter-clockwise, 6: clockwise).
_FLIPS = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


def decode_picture(fmt: PictureFormat, fh: BinaryIO, name: str) -> Image.Image | None:
    """Decode the picture in ``fh`` (a seekable binary file at its start) of format ``fmt``.

    Returns None for a format that Pillow opens itself once its plugin is registered (done here).
    Raises :class:`MediaError` naming ``name``: transient when the format's library is missing.
    """
    if fmt is HEIF:
        _register_heif(name)
        return None
    return _DECODERS[fmt.name](fh, name)


def _register_heif(name: str) -> None:
    heif = require(HEIF, name)
    if heif is not None and HEIF.name not in _REGISTERED:
        heif.register_heif_opener()
        _REGISTERED.add(HEIF.name)


def register_plugins() -> None:
    """Let Pillow open HEIC/HEIF files in this process, if pillow-heif is installed (for their size
    in ``probe``, read from the header alone); without it, nothing happens."""
    try:
        _register_heif("<probe>")
    except MediaError:
        pass


def _within_limit(width: int, height: int, name: str) -> None:
    """Refuse a picture over Pillow's decompression-bomb limit, as Pillow refuses its own."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise MediaError(
            name,
            f"image has {width * height:,} pixels, more than Pillow's decompression-bomb limit of "
            f"{limit:,} pixels; if you trust this file, raise PIL.Image.MAX_IMAGE_PIXELS",
        )


def _eight_bit(pixels: np.ndarray, maxval: int, name: str) -> Image.Image:
    """``(h, w, channels)`` samples of 0..``maxval`` (or floats of 0..1) as an 8-bit PIL image
    (1 to 4 channels: grey, grey + alpha, RGB, RGBA)."""
    _within_limit(pixels.shape[1], pixels.shape[0], name)
    if pixels.dtype.kind == "f":
        scaled = np.clip(np.nan_to_num(pixels), 0, 1) * 255 + 0.5
    else:
        scaled = pixels.astype(np.uint32) * 255 // maxval
    eight = scaled.astype(np.uint8)
    return Image.fromarray(eight[:, :, 0] if eight.ndim == 3 and eight.shape[2] == 1 else eight)


def decode_jpeg_xl(fh: BinaryIO, name: str) -> Image.Image:
    """A JPEG XL picture, upright, as an 8-bit image (its first frame if it is an animation)."""
    imagecodecs = require(JPEG_XL, name)
    assert imagecodecs is not None
    try:
        pixels = imagecodecs.jpegxl_decode(fh.read(), index=0)
    except Exception as exc:  # noqa: BLE001 - imagecodecs raises JpegxlError or RuntimeError for damaged data
        raise MediaError(name, f"JPEG XL picture data is truncated or corrupt ({exc})") from exc
    return _eight_bit(pixels, 65535 if pixels.dtype == np.uint16 else 255, name)


def rasterize_svg(fh: BinaryIO, name: str) -> Image.Image:
    """An SVG (or gzip-compressed ``.svgz``) drawing as an RGB image whose short side is 224 pixels."""
    resvg = require(SVG, name)
    assert resvg is not None
    data = fh.read(MAX_SVG_BYTES + 1)
    try:
        if data[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as inflated:
                data = inflated.read(MAX_SVG_BYTES + 1)
        if len(data) > MAX_SVG_BYTES:
            raise MediaError(name, f"SVG drawing larger than {MAX_SVG_BYTES // 2**20} MB")
        # resvg would load the pictures a drawing links to, from any path this process can read (an
        # uploaded query too): only the drawing's own content (data: URIs, #fragments) is drawn.
        text = _EXTERNAL.sub(r"\1\2\2", data.decode("utf-8-sig"))
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise MediaError(name, f"not a readable SVG drawing ({exc})") from exc

    def render(**size: int) -> Image.Image:
        png = resvg.svg_to_bytes(svg_string=text, background="white", **size)
        return Image.open(io.BytesIO(png))

    try:
        width, height = render(height=32).size  # the drawing's proportions, for next to nothing
        _within_limit(int(IMAGE_SIZE * max(width, height) / max(1, min(width, height))), IMAGE_SIZE, name)
        img = render(height=IMAGE_SIZE) if width >= height else render(width=IMAGE_SIZE)
        return img.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - resvg raises ValueError for a drawing it cannot parse or render
        raise MediaError(name, f"not a readable SVG drawing ({exc})") from exc


def develop_raw(fh: BinaryIO, name: str) -> Image.Image:
    """A camera RAW file as an upright RGB image: its large enough preview, else its demosaiced mosaic."""
    rawpy = require(RAW, name)
    assert rawpy is not None
    try:
        with rawpy.imread(fh) as raw:
            preview = _preview(raw, rawpy)
            if preview is not None:
                return preview
            return Image.fromarray(raw.postprocess(use_camera_wb=True, half_size=True, output_bps=8))
    except rawpy.LibRawError as exc:
        raise MediaError(name, f"not a readable camera RAW file ({type(exc).__name__}: {exc})") from exc


def _preview(raw: Any, rawpy: Any) -> Image.Image | None:
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    img: Image.Image
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            img = Image.open(io.BytesIO(thumb.data))
            img.load()
        else:
            img = Image.fromarray(thumb.data)
    except Exception:  # noqa: BLE001 - a broken preview: the mosaic is still there
        return None
    if min(img.size) < IMAGE_SIZE:
        return None
    if img.getexif().get(0x0112, 1) != 1:
        return img  # the preview says how to turn it; ``images`` does
    flip = _FLIPS.get(int(raw.sizes.flip))
    return img.transpose(flip) if flip is not None else img


def read_pam(fh: BinaryIO, name: str) -> Image.Image:
    """A Netpbm PAM (P7) picture: 1 to 4 channels (grey, grey + alpha, RGB, RGBA), 8 or 16 bits."""
    fields: dict[str, int] = {}
    for _ in range(_PAM_HEADER_LINES):
        line = fh.readline(256).split(b"#")[0].strip()
        if line == b"ENDHDR":
            break
        key, _, value = line.partition(b" ")
        if key in (b"WIDTH", b"HEIGHT", b"DEPTH", b"MAXVAL") and value.strip().isdigit():
            fields[key.decode()] = int(value)
    else:
        raise MediaError(name, "PAM header has no ENDHDR line (damaged header)")
    width, height = fields.get("WIDTH", 0), fields.get("HEIGHT", 0)
    depth, maxval = fields.get("DEPTH", 0), fields.get("MAXVAL", 0)
    if not (width and height and depth in _PAM_DEPTHS and 0 < maxval < 65536):
        raise MediaError(name, f"PAM header is incomplete or unsupported ({fields})")
    _within_limit(width, height, name)  # before reading its samples
    dtype = np.dtype(">u2" if maxval > 255 else "u1")
    count = width * height * depth
    samples = np.frombuffer(fh.read(count * dtype.itemsize), dtype=dtype)
    if samples.size < count:
        raise MediaError(name, f"PAM picture data is truncated ({samples.size} of {count} samples)")
    return _eight_bit(samples[:count].reshape(height, width, depth), maxval, name)


_DECODERS: dict[str, Callable[[BinaryIO, str], Image.Image]] = {
    JPEG_XL.name: decode_jpeg_xl,
    SVG.name: rasterize_svg,
    RAW.name: develop_raw,
    PAM.name: read_pam,
}

__all__ = [
    "MAX_SVG_BYTES",
    "decode_jpeg_xl",
    "decode_picture",
    "develop_raw",
    "rasterize_svg",
    "read_pam",
    "register_plugins",
]
