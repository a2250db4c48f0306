"""Decode the audio track of any common file with PyAV, at its native rate and channel layout.

FFmpeg's own resampler and downmix are deliberately not used: ImageBind's features depend on
the exact resampling filter and on channel 0 of the original layout, so both happen later in
our own code (``audio_dsp``). Integer PCM is scaled like ``torchaudio.load`` does (int16 / 2**15,
int32 / 2**31, (uint8 - 128) / 128); float samples pass through unchanged.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Union

import av
import numpy as np

from ...errors import MediaError, UsageError

#: What the decoders accept: a path, the file's bytes, or an open binary file.
Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

# Divisors that map each integer sample format onto [-1, 1); (offset, divisor) pairs.
_INT_SCALE: dict[str, tuple[float, float]] = {
    "u8": (128.0, 128.0),
    "s16": (0.0, 2.0**15),
    "s32": (0.0, 2.0**31),
    "s64": (0.0, 2.0**63),
}


def source_name(src: Source) -> str:
    """A short human-readable name for ``src`` to put in error messages.

    Raises :class:`UsageError` if ``src`` is neither a path, bytes, nor a readable binary file.
    """
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if not hasattr(src, "read"):
        raise UsageError(f"expected a path, bytes or a binary file, got {type(src).__name__}")
    return str(getattr(src, "name", "<stream>"))


def _why(exc: BaseException) -> str:
    """FFmpeg's own words for an error, without the errno and file name PyAV adds."""
    return str(getattr(exc, "strerror", None) or exc)


def checked_source(src: Source, name: str) -> str | BinaryIO:
    """``src`` ready for a decoder: a path checked to be an existing, non-empty regular file, or a
    binary stream (bytes are wrapped). Raises :class:`MediaError` naming ``name`` otherwise.

    One place for these checks and messages, shared by the audio, video, image and sensor loaders.
    """
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise MediaError(name, "empty input (0 bytes)")
        return io.BytesIO(bytes(src))
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.is_file():
            raise MediaError(name, "no such file" if not path.exists() else "not a regular file")
        if path.stat().st_size == 0:
            raise MediaError(name, "empty file (0 bytes)")
        return os.fspath(path)
    return src


def open_container(src: Source, name: str) -> av.container.InputContainer:
    source = checked_source(src, name)
    try:
        return av.open(source, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(name, f"not a readable audio or video file ({_why(exc)})") from exc


def first_audio_stream(container: av.container.InputContainer, name: str) -> av.AudioStream:
    """The first audio stream of an opened file; :class:`MediaError` naming ``name`` if it has none."""
    if not container.streams.audio:
        raise MediaError(name, "no audio stream (is it an image, or a video without sound?)")
    return container.streams.audio[0]


def frame_samples(frame: av.AudioFrame) -> np.ndarray:
    """Return one decoded frame as float32 ``(channels, samples)``."""
    raw = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        # Packed frames come back as one row of interleaved samples.
        raw = raw.reshape(-1, channels).T
    kind = frame.format.name.rstrip("p")
    if kind in _INT_SCALE:
        offset, divisor = _INT_SCALE[kind]
        out = raw.astype(np.float32)
        if offset:
            out -= np.float32(offset)
        out /= np.float32(divisor)
        return out
    return raw.astype(np.float32, copy=False)


def audio_frames(src: Source, name: str) -> Iterator[tuple[int, np.ndarray]]:
    """Decode the first audio stream of ``src`` frame by frame: ``(sample_rate, samples)`` per frame,
    samples float32 ``(channels, n)`` (empty frames are skipped).

    Raises :class:`MediaError` naming ``name`` for a file that cannot be opened, has no audio stream,
    or whose stream is damaged.
    """
    container = open_container(src, name)
    with container:
        stream = first_audio_stream(container, name)
        try:
            for frame in container.decode(stream):
                if frame.samples:
                    yield frame.sample_rate, frame_samples(frame)
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaError(name, f"the audio stream is damaged ({_why(exc)})") from exc


def decode_audio(src: Source, *, name: str | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of ``src``.

    Accepts a path, bytes, or a binary file object: wav (8/16/24/32-bit integer and float PCM),
    flac, mp3, ogg/vorbis, opus, m4a/aac, or the audio track of a video container.

    Returns ``(samples, sample_rate)`` with ``samples`` a C-contiguous float32 array of shape
    ``(channels, n_samples)``, at the file's own rate and channel layout.

    Raises :class:`MediaError` (naming ``name`` or the path) for a missing, empty or undecodable
    file, a file without an audio stream, one that yields no samples, a stream whose rate or
    channel count changes midway, and samples that are NaN or infinite.
    """
    name = name or source_name(src)
    chunks: list[np.ndarray] = []
    rate = 0
    for frame_rate, samples in audio_frames(src, name):
        if not chunks:
            rate = frame_rate
        elif frame_rate != rate or samples.shape[0] != chunks[0].shape[0]:
            raise MediaError(
                name,
                f"the audio format changes midway ({rate} Hz/{chunks[0].shape[0]} ch to "
                f"{frame_rate} Hz/{samples.shape[0]} ch); convert it to a plain file first",
            )
        chunks.append(samples)
    if not chunks:
        raise MediaError(name, "no audio samples could be decoded (empty or truncated stream)")
    waveform = np.ascontiguousarray(np.concatenate(chunks, axis=1))
    if not np.isfinite(waveform).all():
        bad = int(np.size(waveform) - np.count_nonzero(np.isfinite(waveform)))
        raise MediaError(name, f"{bad} audio samples are NaN or infinite; the file is damaged")
    if rate <= 0:
        raise MediaError(name, f"invalid sample rate {rate}")
    return waveform, rate
