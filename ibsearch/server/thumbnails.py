"""Small JPEG pictures of items, made once and kept in the library's ``thumbnails/`` folder.

Images are scaled down (EXIF orientation applied, like ingest reads them); a video gives its frame
one second in (or its last frame, when shorter), or the frame a matched segment starts on, rotated
as it is shown; a sound gives a picture of its waveform, streamed so that an hour of audio is never
held whole, with a matched segment's span marked (the waveform's peaks are kept beside the pictures,
so that each span is drawn without decoding the sound again); a note, a depth map or an IMU
recording gives a small card. The file name carries the content hash, so an edited file gets a new
picture. A library that cannot be written keeps its pictures in a private temporary folder.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import IbsearchError, MediaError
from ..files import atomic_write
from ..store.records import FileRecord
from .items import CheckedFile

FOLDER = "thumbnails"
SIZE = 320  # longest side in pixels
WAVE_HEIGHT = 120
BACKGROUND, INK, ACCENT = (246, 244, 239), (40, 40, 46), (217, 96, 48)
QUIET, SPAN_BACKGROUND = (196, 190, 180), (251, 231, 220)  # a waveform outside and behind its span
TEXT_BYTES = 2048  # of a note, enough for the card

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Moment:
    """The matched stretch of a sound or a video, ``start`` to ``end`` seconds."""

    start: float
    end: float

    def frame_second(self, duration: object) -> int:
        """The whole second whose frame stands for it, within the video: what names its kept picture
        (segments start on whole seconds; a client asking for every tenth must not fill the disk)."""
        last = int(duration) if isinstance(duration, int | float) else int(self.start)
        return max(0, min(int(round(self.start)), last))


class Thumbnails:
    """The thumbnail cache of the library at ``root``."""

    def __init__(self, root: Path) -> None:
        folder = root / FOLDER
        try:
            folder.mkdir(exist_ok=True)
            writable = os.access(folder, os.W_OK)
        except OSError:
            writable = False
        self.folder = folder if writable else Path(tempfile.mkdtemp(prefix="ibsearch-thumbnails-"))

    def path(self, record: FileRecord, variant: str = "", suffix: str = ".jpg") -> Path:
        """Where the picture of ``record`` is kept (named by item id and content hash, and the
        ``variant`` of a moment's picture)."""
        return self.folder / f"{record.id}-{record.content_hash[:24]}{variant}{suffix}"

    def get(self, record: FileRecord, kind: str, moment: Moment | None = None) -> Path:
        """The picture of ``record`` (a file of ``kind``), made now if it was not made before; with a
        ``moment`` of a video, its frame at the moment's start (to the second).

        Raises :class:`MediaError` when the file cannot be decoded.
        """
        second = moment.frame_second(record.info.get("duration")) if moment and kind == "video" else None
        target = self.path(record, "" if second is None else f"t{second}")
        if target.is_file():
            return target
        if kind == "audio":
            picture = waveform(self._peaks(record))
        else:
            with CheckedFile(record) as checked:
                picture = _read(lambda: make_picture(checked.path, record, kind, second), record)
        self._keep(record, target, jpeg(picture))
        return target

    def marked(self, record: FileRecord, moment: Moment) -> bytes:
        """A sound's waveform with ``moment`` marked, as JPEG bytes: drawn from the kept peaks each
        time (a millisecond), not kept, as a client may ask for any span."""
        return jpeg(waveform(self._peaks(record), moment.start, moment.end, record.info.get("duration")))

    def _peaks(self, record: FileRecord) -> np.ndarray:
        """The waveform's peaks of a sound, read from its file once and then kept."""
        kept = self.path(record, suffix=".npy")
        if kept.is_file():
            return np.load(kept, allow_pickle=False)
        with CheckedFile(record) as checked:
            levels = _read(lambda: sound_peaks(checked.path, record.path, record.info), record)
        buffer = io.BytesIO()
        np.save(buffer, levels.astype(np.float32), allow_pickle=False)
        self._keep(record, kept, buffer.getvalue())
        return levels

    def _keep(self, record: FileRecord, target: Path, data: bytes) -> None:
        atomic_write(target, lambda fh: fh.write(data))
        current = f"{record.id}-{record.content_hash[:24]}"
        for old in self.folder.glob(f"{record.id}-*"):
            if not old.name.startswith(current) and old.suffix in (".jpg", ".npy"):
                old.unlink(missing_ok=True)  # the pictures of an earlier version of the file

    def prune(self, alive: Callable[[list[int]], set[int]]) -> int:
        """Delete the pictures of items that are no longer in the library (``alive`` says which of a
        list of item ids still are); returns how many went. Other files in the folder are left."""
        pictures: dict[int, list[Path]] = {}
        gone = 0
        try:
            for path in (*self.folder.glob("*-*.jpg"), *self.folder.glob("*-*.npy")):
                ident, _, rest = path.stem.partition("-")
                if ident.isdigit() and rest.isalnum():
                    pictures.setdefault(int(ident), []).append(path)
            idents = sorted(pictures)
            for start in range(0, len(idents), 10_000):
                chunk = idents[start : start + 10_000]
                kept = alive(chunk)
                for path in (path for i in chunk if i not in kept for path in pictures[i]):
                    path.unlink(missing_ok=True)
                    gone += 1
        except (OSError, IbsearchError) as exc:  # a folder or database that fails: the pictures stay
            log.warning("could not prune the thumbnails in %s: %s", self.folder, exc)
        if gone:
            log.info("removed %d thumbnails of items no longer in the library", gone)
        return gone


def _read(make: Callable[[], T], record: FileRecord) -> T:
    try:
        return make()
    except OSError as exc:
        raise MediaError(record.path, f"cannot be read ({exc.strerror or exc})") from None


def jpeg(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, "JPEG", quality=82)
    return buffer.getvalue()


def make_picture(source: str, record: FileRecord, kind: str, at: float | None = None) -> Image.Image:
    """A picture of ``record``'s file (read from ``source``, a path to the same file), at most
    :data:`SIZE` pixels on its longer side; a video's frame ``at`` seconds in if given."""
    name = record.path
    if kind in ("image", "thermal") or (kind == "depth" and not _is_npy(source)):
        from ..encoder.media.images import load_image

        picture = load_image(source, name=name)
    elif kind == "video":
        picture = video_frame(source, name, at)
    elif kind == "audio":
        return waveform(sound_peaks(source, name, record.info))
    elif kind == "depth":
        picture = depth_picture(source, name)
    elif kind == "text":  # a note in any encoding, or a document's text as a reader sees it
        from ..encoder.media.text import read_text

        return card(read_text(source, name=name, limit=TEXT_BYTES))
    else:
        return card(f"{kind} recording\n\n{os.path.basename(record.path)}")
    picture.thumbnail((SIZE, SIZE))
    return picture


def _is_npy(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(6) == b"\x93NUMPY"


def video_frame(path: str, name: str, at: float | None = None) -> Image.Image:
    """The frame ``at`` seconds into the video (default one second in; rotation applied), as a picture."""
    from ..encoder.media.video_frames import DecodeStats, FrameReader

    with FrameReader(path, name, DecodeStats()) as reader:
        number = min(reader.n_frames - 1, int(round(reader.fps * (1.0 if at is None else at))))
        return Image.fromarray(np.ascontiguousarray(reader.picture(number)))


def depth_picture(path: str, name: str) -> Image.Image:
    """A depth map (.npy) as grey levels, near bright and far dark."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/EOFError/OSError for damaged files
        raise MediaError(name, f"not a readable .npy array ({exc})") from exc
    plane = np.asarray(array).squeeze()
    if plane.ndim != 2 or not plane.size or not np.issubdtype(plane.dtype, np.number):
        return card(f"depth map {plane.shape}")
    step = max(1, max(plane.shape) // SIZE)
    values = np.asarray(plane[::step, ::step], dtype=np.float64)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scaled = 1.0 - (np.nan_to_num(values, nan=high) - low) / max(high - low, 1e-12)
    return Image.fromarray((np.clip(scaled, 0, 1) * 255).astype(np.uint8), mode="L")


def peaks(path: str, name: str, columns: int, total: int | None) -> np.ndarray:
    """The loudest sample of each of ``columns`` stretches of a sound (``total``: its length in
    samples, if known), decoded frame by frame."""
    from ..encoder.media.decode import audio_frames

    block = max(1, (total or 0) // (columns * 4)) if total else 160
    pending = np.zeros(0, dtype=np.float32)
    found: list[np.ndarray] = []
    for _, samples in audio_frames(path, name):
        pending = np.concatenate([pending, np.abs(samples).max(axis=0)])
        whole = len(pending) // block * block
        if whole:
            found.append(pending[:whole].reshape(-1, block).max(axis=1))
            pending = pending[whole:]
    if len(pending):
        found.append(pending.max(keepdims=True))
    if not found:
        raise MediaError(name, "the sound has no samples")
    blocks = np.concatenate(found)
    return np.array([part.max() if len(part) else 0.0 for part in np.array_split(blocks, columns)])


def sound_peaks(path: str, name: str, info: dict[str, object]) -> np.ndarray:
    """The loudness of a sound over time, in ``SIZE // 2`` columns scaled to at most 1."""
    duration, rate = info.get("duration"), info.get("sample_rate")
    total = int(float(duration) * float(rate)) if isinstance(duration, int | float) and rate else None  # type: ignore[arg-type]
    levels = peaks(path, name, SIZE // 2, total)
    return levels / max(float(levels.max()), 1e-6)  # type: ignore[no-any-return]


def waveform(
    levels: np.ndarray, start: float | None = None, end: float | None = None, duration: object = None
) -> Image.Image:
    """A picture of a sound's loudness (``levels``, :func:`sound_peaks`), ``SIZE`` x ``WAVE_HEIGHT``;
    with ``start`` and ``end`` (seconds of a sound ``duration`` long) that span marked: drawn in
    the accent colour on a light band, the rest quiet."""
    picture = Image.new("RGB", (SIZE, WAVE_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(picture)
    span = None
    if start is not None and isinstance(duration, int | float) and duration > 0:
        left = SIZE * min(start, duration) / duration
        span = (left, max(SIZE * min(end if end is not None else start, duration) / duration, left + 2))
        draw.rectangle([(span[0], 0), (span[1], WAVE_HEIGHT)], fill=SPAN_BACKGROUND)
    middle, reach = WAVE_HEIGHT / 2, WAVE_HEIGHT / 2 - 6
    for column, level in enumerate(levels):
        x = column * 2  # two pixels wide, side by side: JPEG blurs lone one-pixel lines into the paper
        inside = span is None or span[0] <= x + 1 <= span[1]
        draw.rectangle(
            [(x, middle - level * reach - 1), (x + 1, middle + level * reach + 1)],
            fill=ACCENT if inside else QUIET,
        )
    return picture


def card(text: str) -> Image.Image:
    """A note-like card with the beginning of ``text``."""
    picture = Image.new("RGB", (SIZE, SIZE * 3 // 4), BACKGROUND)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=15)
    lines = [line for para in text.splitlines() for line in (textwrap.wrap(para, 34) or [""])]
    draw.multiline_text((14, 12), "\n".join(lines[:11]), fill=INK, font=font, spacing=4)
    return picture


__all__ = [
    "FOLDER",
    "SIZE",
    "Moment",
    "Thumbnails",
    "card",
    "make_picture",
    "peaks",
    "sound_peaks",
    "waveform",
]
