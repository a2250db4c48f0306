"""Video pictures as ImageBind vision input, decoded with PyAV.

The reference reads videos through pytorchvideo's decord backend and keeps, for each of 5 evenly
spaced 2-second clips, the first and the last frame of the clip (``UniformTemporalSubsample`` with
``num_samples=clip_duration``). Each clip's two frames are scaled to [0, 1], resized so the short
side is 224 (torch bilinear, no antialias), CLIP-normalized, and cut into 3 spatial crops. This
module reproduces that to the bit: PyAV's RGB conversion equals decord's (checked on h264, vp9 and
mpeg4, limited and full range), frames are numbered as decord numbers them (packets of the stream
sorted by presentation time), and the torch arithmetic runs in the same order and precision.

Only the frames the clips need are decoded: the file's packets are read once without decoding to
number the frames, then the decoder seeks to the keyframe before each needed frame and decodes
forward from there. A long video is never decoded, or held in memory, as a whole.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

from ..inputs import CLIP_FRAMES, CLIP_SECONDS, IMAGE_SIZE, VIDEO_CLIPS, VIDEO_SHAPE
from . import audio_dsp
from .audio_segments import HOP_SECONDS, WINDOW_SECONDS
from .decode import Source, source_name
from .images import CLIP_MEAN as _MEAN
from .images import CLIP_STD as _STD
from .video_frames import DecodeStats, FrameReader, quarter_turns

log = logging.getLogger(__name__)

# Clips per video and the crops' side (..inputs). Frames kept per clip: the reference
# reuses the clip duration (2) as the frame count.
CLIPS_PER_VIDEO = VIDEO_CLIPS
FRAMES_PER_CLIP = CLIP_FRAMES
SIZE = IMAGE_SIZE

#: A final segment shorter than the window is kept when it adds at least this much video.
TAIL_SECONDS = 0.5


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns from a video's packets and its first frame."""

    n_frames: int  # frames of the video stream, as decord counts them (its packets)
    fps: float  # average frame rate
    duration: float  # n_frames / fps seconds: the clock the reference samples clips on
    width: int  # picture size after applying the rotation in the file's display matrix
    height: int
    rotation: int  # counter-clockwise quarter turns applied to each frame (0-3)
    has_audio: bool  # whether the file also has a sound track


# ------------------------------------------------------------------------------------ clip timing


def clip_times(
    duration: float, clip_seconds: int = CLIP_SECONDS, clips: int = CLIPS_PER_VIDEO
) -> list[tuple[Fraction, Fraction]]:
    """Start and end (seconds, exact fractions) of the 5 clips taken from a video (the audio clip
    sampler's rule, :func:`ibsearch.encoder.media.audio_dsp.clip_times`); video rounds them up to frames."""
    return audio_dsp.clip_times(duration, clip_seconds, clips)


def clip_frame_ranges(
    n_frames: int, fps: float, clip_seconds: int = CLIP_SECONDS, clips: int = CLIPS_PER_VIDEO
) -> list[tuple[int, int]]:
    """Frame ranges ``[first, stop)`` of the reference's clips for a video of ``n_frames`` at ``fps``.

    ``first = ceil(fps * start)`` and ``stop = min(ceil(fps * end), n_frames)``, where ``fps * t``
    is a float product as in pytorchvideo's decord reader. A range is never empty: for frame
    rates under half a frame per clip (where the reference fails) the nearest frame is used.
    """
    duration = float(n_frames) / float(fps)
    ranges = []
    for start, end in clip_times(duration, clip_seconds, clips):
        # A float times a Fraction is a float product, exactly as in the reference.
        first = math.ceil(fps * start)
        stop = min(math.ceil(fps * end), n_frames)
        if stop <= first:
            first = min(first, n_frames - 1)
            stop = first + 1
        ranges.append((first, stop))
    return ranges


def kept_frames(first: int, stop: int, count: int = FRAMES_PER_CLIP) -> list[int]:
    """Frame numbers the reference keeps from the clip ``[first, stop)``: ``linspace(0, T-1)`` truncated."""
    offsets = torch.linspace(0, stop - first - 1, count).clamp(0, stop - first - 1).long()
    return [first + int(i) for i in offsets]


# ---------------------------------------------------------------------------------- the transform


def short_side_size(height: int, width: int, size: int = SIZE) -> tuple[int, int]:
    """``(new_height, new_width)`` with the short side ``size`` and the long side floored."""
    if width < height:
        return int(math.floor((float(height) / width) * size)), size
    return size, int(math.floor((float(width) / height) * size))


def crop_offsets(height: int, width: int, size: int = SIZE) -> list[tuple[int, int]]:
    """``(top, left)`` of the 3 crops: top/centre/bottom for portrait frames, else left/centre/right.

    The centre offset rounds up (``ceil``), unlike the image transform's centre crop.
    """
    top, left = math.ceil((height - size) / 2), math.ceil((width - size) / 2)
    if height > width:
        return [(0, left), (top, left), (height - size, left)]
    return [(top, 0), (top, left), (top, width - size)]


def frame_tensor(picture: np.ndarray | torch.Tensor) -> torch.Tensor:
    """One RGB frame ``(H, W, 3)`` uint8 -> resized and normalized ``(3, h, w)`` float32 (not cropped).

    Same operations, order and dtypes as the reference applies to a clip's (C, T, H, W) tensor
    (float cast, /255, bilinear resize without antialias, CLIP mean/std); the resize works plane by
    plane, so doing one frame at a time gives the same bits and holds less memory.
    """
    x = torch.as_tensor(picture)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) frame, got shape {tuple(x.shape)}")
    x = x.to(torch.float32).permute(2, 0, 1)[:, None].contiguous() / 255.0
    height, width = short_side_size(x.shape[2], x.shape[3])
    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    mean = torch.as_tensor(_MEAN, dtype=x.dtype)[:, None, None, None]
    std = torch.as_tensor(_STD, dtype=x.dtype)[:, None, None, None]
    return ((x - mean) / std)[:, 0]


def crops(frames: Sequence[torch.Tensor]) -> torch.Tensor:
    """A clip's transformed frames (each ``(3, h, w)``) -> its 3 crops ``(3, 3, T, 224, 224)``."""
    x = torch.stack(list(frames), dim=1)
    height, width = x.shape[2], x.shape[3]
    return torch.stack([x[:, :, t : t + SIZE, s : s + SIZE] for t, s in crop_offsets(height, width)])


def clip_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """One clip's kept frames, ``(T, H, W, 3)`` uint8 RGB, -> ``(3, 3, T, 224, 224)`` float32.

    The first axis is the crop, the rest is the reference's ``(C, T, H, W)`` clip layout.
    """
    if frames.ndim != 4:
        raise ValueError(f"expected (T, H, W, 3) frames, got shape {tuple(frames.shape)}")
    return crops([frame_tensor(picture) for picture in frames])


# ----------------------------------------------------------------------------------- public API


def probe_video(src: Source, *, name: str | None = None) -> VideoInfo:
    """Frame count, rate, duration, size and sound of a video (reads its packets, decodes one frame).

    Raises :class:`MediaError` like :func:`load_video`.
    """
    name = name or source_name(src)
    with FrameReader(src, name, DecodeStats()) as reader:
        picture = reader.picture(0)
        height, width = picture.shape[:2]
        rotation = quarter_turns(reader._last[1].rotation) if reader._last else 0
        return VideoInfo(
            n_frames=reader.n_frames,
            fps=reader.fps,
            duration=float(reader.n_frames) / float(reader.fps),
            width=width,
            height=height,
            rotation=rotation,
            has_audio=reader.has_audio,
        )


def load_video(src: Source, name: str | None = None, *, stats: DecodeStats | None = None) -> torch.Tensor:
    """One video (path, bytes or binary file) -> ``(15, 3, 2, 224, 224)`` float32.

    5 clips x 3 crops in clip-major order, each ``(channels, frames, height, width)``: the
    reference's ``load_and_transform_video_data`` for one file. Handles any container and codec
    FFmpeg reads (mp4, mov, mkv, webm, avi...), videos shorter than a clip, portrait and rotated
    videos, with or without sound. Pass ``stats`` to count the packets read and frames decoded.

    Raises :class:`MediaError` naming the file for a missing, empty, unreadable or corrupt file,
    one without a video stream (or with only a cover picture), or without any decodable frame.
    """
    name = name or source_name(src)
    stats = stats if stats is not None else DecodeStats()
    with FrameReader(src, name, stats) as reader:
        wanted = [kept_frames(first, stop) for first, stop in clip_frame_ranges(reader.n_frames, reader.fps)]
        frames = {i: frame_tensor(reader.picture(i)) for i in sorted({i for clip in wanted for i in clip})}
    return torch.cat([crops([frames[i] for i in clip]) for clip in wanted])


@dataclass
class VideoSegment:
    """One stretch of a video: ``start``/``end`` in seconds and its ``(15, 3, 2, 224, 224)`` input."""

    start: float
    end: float
    pictures: torch.Tensor


def segment_spans(
    duration: float, window: float = WINDOW_SECONDS, hop: float = HOP_SECONDS
) -> list[tuple[float, float]]:
    """``(start, end)`` of the segments of a ``duration``-second video, as audio segments are cut.

    Windows of ``window`` seconds every ``hop`` seconds, plus a final shorter one when at least
    :data:`TAIL_SECONDS` of the video follow the last full window; none for videos shorter than a window.
    """
    spans: list[tuple[float, float]] = []
    start = 0.0
    while start + window <= duration + 1e-9:
        spans.append((start, start + window))
        start += hop
    if spans and duration - spans[-1][1] >= TAIL_SECONDS:
        spans.append((start, duration))
    return spans


def video_segments(
    src: Source,
    *,
    window: float = WINDOW_SECONDS,
    hop: float = HOP_SECONDS,
    name: str | None = None,
    stats: DecodeStats | None = None,
) -> Iterator[VideoSegment]:
    """Yield the timestamped segments of a video in order, decoding it once, front to back.

    Each segment's input is what the reference computes for that stretch cut out as a video of its
    own: frames ``ceil(fps * start)`` up to ``ceil(fps * end)``, 5 clips of 2 s sampled over them.
    Only the frames the segments keep are converted, and only those of about one window are held.
    Nothing is yielded for videos shorter than one window (use :func:`load_video`). Raises
    :class:`MediaError` like :func:`load_video`.
    """
    name = name or source_name(src)
    stats = stats if stats is not None else DecodeStats()
    with FrameReader(src, name, stats) as reader:
        n, fps = reader.n_frames, reader.fps
        plans: deque[tuple[float, float, list[list[int]]]] = deque()
        for start, end in segment_spans(float(n) / float(fps), window, hop):
            first, stop = math.ceil(fps * start), min(math.ceil(fps * end), n)
            if stop > first:
                ranges = clip_frame_ranges(stop - first, fps)
                plans.append((start, end, [kept_frames(first + a, first + b) for a, b in ranges]))
        frames: dict[int, torch.Tensor] = {}
        for i in sorted({i for plan in plans for clip in plan[2] for i in clip}):
            frames[i] = frame_tensor(reader.picture(i))
            while plans and max(plans[0][2][-1]) <= i:
                start, end, clips = plans.popleft()
                yield VideoSegment(
                    start, end, torch.cat([crops([frames[j] for j in clip]) for clip in clips])
                )
                oldest = plans[0][2][0][0] if plans else i + 1
                for j in [j for j in frames if j < oldest]:
                    del frames[j]


def video(items: Iterable[Source]) -> torch.Tensor:
    """Batch of videos -> ``(N, 15, 3, 2, 224, 224)`` float32; the first bad item raises MediaError."""
    tensors = [load_video(item) for item in items]
    return torch.stack(tensors) if tensors else torch.empty(0, *VIDEO_SHAPE)
