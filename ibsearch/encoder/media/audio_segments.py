"""Timestamped segments of long audio (and of video sound tracks), computed while streaming.

Window and hop: ImageBind's audio input is three 2-second clips. A **6 s window** is exactly three
back-to-back 2 s clips, so a segment's vector is the reference pipeline applied to that stretch of
media as if it were its own file, with every sample of the stretch seen once. A **3 s hop** (50 %
overlap) means any event shorter than 3 s lies wholly inside at least one window. Media shorter than
:data:`MIN_SEGMENTED_SECONDS` get a single segment covering the whole file.

Memory: the file is decoded frame by frame and only about one window of native-rate samples is held,
so a one-hour recording never exists in memory as a whole. For files longer than
:data:`STREAM_SECONDS`, the file-level vector is computed from the three reference clip windows
captured during the same pass (each window resampled on its own, with filter margins), which differs
from resampling the whole file only by float rounding (~1e-4 in near-silent mel bands).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np
import torch

from ...errors import MediaError
from . import audio_dsp
from .decode import Source, audio_frames, first_audio_stream, frame_samples, open_container, source_name

WINDOW_SECONDS = 6.0
HOP_SECONDS = 3.0
MIN_SEGMENTED_SECONDS = 12.0  # shorter media: one segment, the whole file
STREAM_SECONDS = 120.0  # longer media: the file-level vector too is computed while streaming
_TAIL_SECONDS = 0.5  # a final partial window is emitted when it holds this much unseen audio
_MARGIN_SECONDS = 0.05  # resampler context kept around each captured clip window


@dataclass
class Segment:
    """One stretch of a file: ``start``/``end`` in seconds and its ``(3, 1, 128, 204)`` features."""

    start: float
    end: float
    features: torch.Tensor


def _features(samples: np.ndarray, rate: int, name: str) -> torch.Tensor:
    if not np.isfinite(samples).all():
        raise MediaError(name, "audio holds NaN or infinite samples")
    return audio_dsp.audio_features(torch.from_numpy(np.ascontiguousarray(samples)), rate)


def stream_segments(
    src: Source, *, window: float = WINDOW_SECONDS, hop: float = HOP_SECONDS, name: str | None = None
) -> Iterator[Segment]:
    """Yield the segments of ``src``'s first audio stream in order, decoding as it goes.

    Windows start every ``hop`` seconds and last ``window`` seconds; a final shorter window covers
    audio after the last full one. Nothing is yielded for media shorter than one window (use the
    file-level vector). Raises :class:`MediaError` for undecodable input.
    """
    name = name or source_name(src)
    chunks: list[np.ndarray] = []
    held = 0  # samples in chunks
    buf_start = 0  # absolute index of the first held sample
    next_start = 0
    rate = width = step = 0
    emitted = False
    for frame_rate, samples in audio_frames(src, name):
        if not rate:
            rate = frame_rate
            width, step = int(round(window * rate)), int(round(hop * rate))
        chunks.append(samples)
        held += samples.shape[1]
        if buf_start + held < next_start + width:
            continue
        buf = np.concatenate(chunks, axis=1)
        while buf_start + buf.shape[1] >= next_start + width:
            offset = next_start - buf_start
            yield Segment(
                next_start / rate,
                (next_start + width) / rate,
                _features(buf[:, offset : offset + width].copy(), rate, name),
            )
            emitted = True
            next_start += step
        buf = buf[:, next_start - buf_start :]
        buf_start = next_start
        chunks, held = [buf], buf.shape[1]
    if not emitted or not chunks:
        return
    buf = np.concatenate(chunks, axis=1)
    total = buf_start + buf.shape[1]
    last_end = next_start - step + width
    if total - last_end >= _TAIL_SECONDS * rate and buf.shape[1] >= audio_dsp.MIN_SAMPLES:
        yield Segment(buf_start / rate, total / rate, _features(buf.copy(), rate, name))


def long_file_features(src: Source, duration: float, *, name: str | None = None) -> torch.Tensor:
    """File-level ``(3, 1, 128, 204)`` features of a long file from its three clip windows only.

    ``duration`` (seconds, from the container) places the windows as the reference clip sampler
    does. Each window, plus a margin for the resampling filter, is decoded by seeking and resampled
    on its own, starting on a native sample that falls exactly on the 16 kHz grid, so the clip's
    samples line up with those of a whole-file resampling.
    """
    name = name or source_name(src)
    spans = audio_dsp.clip_spans(_length_at_16k(src, duration, name))
    clips = [_clip_from_window(src, a, b, name) for a, b in spans]
    return torch.stack(clips)


def _length_at_16k(src: Source, duration: float, name: str) -> int:
    """Samples the whole file would have after resampling to 16 kHz (the clip sampler's input).

    Exact where the stream header gives its length in samples (WAV, FLAC...), else from ``duration``.
    """
    container = open_container(src, name)
    with container:
        stream = first_audio_stream(container, name)
        rate = int(stream.sample_rate or 0)
        if stream.duration and stream.time_base and rate:
            n_native = int(round(float(stream.duration * stream.time_base) * rate))
            return audio_dsp.resampled_length(n_native, rate, audio_dsp.SAMPLE_RATE)
    return int(round(duration * audio_dsp.SAMPLE_RATE))


def _clip_from_window(src: Source, a: int, b: int, name: str) -> torch.Tensor:
    """Features of the 16 kHz clip ``[a, b)`` decoded from around its window."""
    out_rate = audio_dsp.SAMPLE_RATE
    # Some demuxers land a little after the seek target: step further back until the window is covered.
    for backoff in (0.0, 1.0, 10.0, None):
        data, rate, first = _window_samples(src, a, b, name, backoff)
        if data is not None:
            break
    if data is None:
        raise MediaError(name, f"cannot decode the audio around {a / out_rate:.1f} s")
    if not np.isfinite(data).all():
        raise MediaError(name, "audio holds NaN or infinite samples")
    wave16 = audio_dsp.resample(torch.from_numpy(np.ascontiguousarray(data)), rate, out_rate)
    lead = a - first * out_rate // rate
    return audio_dsp.clip_features(wave16[:, lead : lead + (b - a)].contiguous())


def _window_samples(
    src: Source, a: int, b: int, name: str, backoff: float | None
) -> tuple[np.ndarray | None, int, int]:
    """Native samples around the 16 kHz range ``[a, b)``: ``(samples or None, rate, first index)``.

    The first index is a native sample on the 16 kHz grid; ``backoff`` seconds earlier is sought
    (None: decode from the start). None comes back when decoding started after the window.
    """
    out_rate = audio_dsp.SAMPLE_RATE
    container = open_container(src, name)
    with container:
        stream = first_audio_stream(container, name)
        rate = int(stream.sample_rate or 0)
        if rate <= 0:
            raise MediaError(name, "audio stream has no sample rate")
        unit = rate // math.gcd(rate, out_rate)  # native samples per whole number of 16 kHz samples
        margin = int(_MARGIN_SECONDS * rate)
        first = max(0, (a * rate // out_rate - margin) // unit * unit)
        last = (b * rate + out_rate - 1) // out_rate + margin
        if backoff is not None and stream.time_base:
            target = int(max(0.0, first / rate - backoff) / float(stream.time_base))
            container.seek(target, stream=stream, backward=True, any_frame=False)
        parts: list[np.ndarray] = []
        at: int | None = None  # native index of the first decoded sample
        held = 0
        try:
            for frame in container.decode(stream):
                if at is None:
                    base = frame.time_base
                    at = int(round(float(frame.pts * base) * rate)) if frame.pts is not None and base else 0
                    if at > first:
                        return None, rate, first
                parts.append(frame_samples(frame))
                held += parts[-1].shape[1]
                if at + held >= last:
                    break
        except av.error.FFmpegError as exc:
            raise MediaError(name, f"decoding failed ({exc})") from exc
    if not parts or at is None:
        return None, rate, first
    data = np.concatenate(parts, axis=1)[:, first - at : last - at]
    if data.shape[1] < audio_dsp.MIN_SAMPLES:
        raise MediaError(
            name, f"no audio around {a / out_rate:.1f} s (the file is shorter than its header says?)"
        )
    return data, rate, first
