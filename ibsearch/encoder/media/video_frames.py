"""Decoding chosen frames of a video with PyAV, numbered exactly as the reference's decord numbers them.

The file's packets are read once without decoding to number the frames (presentation order, as
decord does); then the decoder seeks to the keyframe before each needed frame and decodes forward
from there, so a long video is never decoded, or held in memory, as a whole.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np

from ...closing import Closing
from ...errors import MediaError

# decode.open_container: the same checks and messages as for audio files (missing, empty, unreadable).
from .decode import Source, open_container

log = logging.getLogger(__name__)


@dataclass
class DecodeStats:
    """Counters a caller can pass to :func:`load_video` to see how much work decoding took."""

    packets_scanned: int = 0  # packets of the video stream read to number the frames (not decoded)
    frames_decoded: int = 0  # frames that came out of the decoder
    frames_kept: int = 0  # frames converted to RGB and used
    seeks: int = 0  # jumps to a keyframe


def video_stream(container: av.container.InputContainer, name: str) -> av.VideoStream:
    moving = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not moving:
        if container.streams.video:
            raise MediaError(name, "no video stream, only a cover picture (is it a music file?)")
        raise MediaError(name, "no video stream (is it an audio or image file?)")
    # FFmpeg's choice, as decord makes it; cover pictures never win.
    best = container.streams.best("video")
    return best if best in moving else moving[0]


class FrameReader(Closing):
    """One open video: frames numbered by a packet scan, then seek-and-decode of chosen frames.

    Frame ``i`` is the ``i``-th frame in presentation order, as decord numbers frames: the scan
    reads the stream's packets (no decoding) and sorts their timestamps. Pictures are asked for in
    ascending order; the decoder only jumps (to the keyframe before the wanted frame) when that is
    shorter than decoding on.
    """

    def __init__(self, src: Source, name: str, stats: DecodeStats) -> None:
        self.src, self.name, self.stats = src, name, stats
        self.container = open_container(src, name)
        self._decoder: Iterator[av.VideoFrame] | None = None
        self._position = -1  # number of the last decoded frame
        self._last: tuple[int, av.VideoFrame] | None = None  # last decoded frame, for a damaged tail
        self._held: tuple[int, np.ndarray] | None = None  # last picture handed out
        self._count = -1  # decoded-frame counter since the last seek to the start (untimed streams)
        try:
            self._scan()
        except BaseException:
            self.container.close()
            raise

    def _scan(self) -> None:
        container, name = self.container, self.name
        stream = video_stream(container, name)
        self.stream = stream
        self.video_index = list(container.streams.video).index(stream)  # among video streams
        self.has_audio = bool(container.streams.audio)
        self._ignore_others()
        stamps: list[int | None] = []
        keys: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # PyAV's end-of-stream marker, not a packet of the file
                    continue
                stamps.append(packet.pts)
                if packet.is_keyframe and packet.pts is not None:
                    keys.append(packet.pts)
        except av.error.FFmpegError as exc:
            raise MediaError(name, f"video stream is corrupt ({exc})") from exc
        self.stats.packets_scanned += len(stamps)
        if not stamps:
            raise MediaError(name, "the video stream has no frames")
        self.n_frames = len(stamps)
        # Without timestamps (raw streams) frames are counted from the start instead.
        self.timed = None not in stamps
        self.pts: list[int] = sorted(p for p in stamps if p is not None) if self.timed else []
        self.number = {p: i for i, p in enumerate(self.pts)}
        self.keys = sorted(set(keys))
        rate = stream.average_rate or stream.guessed_rate
        if not rate or rate <= 0:
            raise MediaError(name, "the video has no usable frame rate")
        self.fps = float(rate.numerator) / float(rate.denominator)

    def _ignore_others(self) -> None:
        for other in self.container.streams:
            if other is not self.stream:
                other.discard = av.stream.Discard.all  # only the picture's packets are needed

    def close(self) -> None:
        self.container.close()

    # -- positioning

    def _key_before(self, frame: int, earlier: int = 0) -> int:
        """Timestamp of the last keyframe at or before ``frame``, or ``earlier`` keyframes before that."""
        at = bisect.bisect_right(self.keys, self.pts[frame]) - 1 - earlier
        return self.keys[at] if at >= 0 else self.pts[0]

    def _flows_to(self, target: int) -> bool:
        """Whether decoding on from the current position reaches ``target`` without a keyframe to skip to."""
        if self._decoder is None or self._position >= target:
            return False
        if not self.timed or self._position < 0:
            return self._position < target
        return self._key_before(target) <= self.pts[self._position]

    def _seek(self, target: int, earlier: int = 0) -> None:
        """Restart decoding at the keyframe before frame ``target`` (or ``earlier`` keyframes before)."""
        if not self.timed:
            self._restart()
            return
        self.stats.seeks += 1
        try:
            self.container.seek(self._key_before(target, earlier), stream=self.stream, backward=True)
        except av.error.FFmpegError:
            self._restart()
            return
        self._decoder = iter(self.container.decode(self.stream))
        self._position = -1

    def _restart(self) -> None:
        """Decode from the very start, on a freshly opened file (some formats cannot seek back)."""
        self.stats.seeks += 1
        self.container.close()
        if hasattr(self.src, "seek"):
            self.src.seek(0)
        self.container = open_container(self.src, self.name)
        self.stream = self.container.streams.video[self.video_index]
        self._ignore_others()
        self._decoder = iter(self.container.decode(self.stream))
        self._position = -1
        self._count = -1

    def _next(self) -> tuple[int, av.VideoFrame] | None:
        """The next decoded frame and its number, or ``None`` at the end of the stream."""
        assert self._decoder is not None
        while True:
            try:
                frame = next(self._decoder, None)
            except (av.error.FFmpegError, ValueError) as exc:
                raise MediaError(self.name, f"video stream is corrupt ({exc})") from exc
            if frame is None:
                self._decoder = None
                return None
            self.stats.frames_decoded += 1
            self._count += 1
            number: int | None = self._count
            if self.timed:
                number = None if frame.pts is None else self.number.get(frame.pts)
            if number is not None:  # a frame the scan did not announce has no number for decord either
                self._position = number
                self._last = (number, frame)
                return number, frame

    # -- pictures

    def picture(self, target: int) -> np.ndarray:
        """RGB ``(H, W, 3)`` uint8 picture of frame ``target``; ask in ascending order.

        A frame the decoder cannot produce (a damaged file) is replaced by the next decodable one,
        or by the last one at the end of the stream.
        """
        if self._held is not None and self._held[0] >= target:
            return self._held[1]
        fresh = not self._flows_to(target)
        if fresh:
            self._seek(target)
        earlier, restarted = 0, False
        while True:
            step = self._next()
            if fresh and not restarted and (step is None or step[0] > target):
                if step is not None and self.timed and earlier < 4:
                    # Landed past the target: MPEG-TS/PS seek by byte position and decode timestamps
                    # and often land one keyframe late. Try earlier keyframes first.
                    earlier = 2 * earlier + 1
                    self._seek(target, earlier)
                else:
                    # The seek found nothing (a format that cannot seek): decode from the start.
                    self._restart()
                    restarted = True
                continue
            if step is None:
                break
            fresh = False
            number, frame = step
            if number >= target:
                if number > target:
                    log.warning("%s: frame %d is undecodable; using frame %d", self.name, target, number)
                return self._hold(number, frame)
        if self._last is None:
            raise MediaError(self.name, "no frame of the video could be decoded")
        log.warning("%s: frame %d is missing; using the last decodable frame", self.name, target)
        return self._hold(*self._last)

    def _hold(self, number: int, frame: av.VideoFrame) -> np.ndarray:
        picture: np.ndarray = frame.to_ndarray(format="rgb24")
        # decord applies the display matrix (phone videos are often stored sideways).
        turns = quarter_turns(frame.rotation)
        if turns:
            picture = np.ascontiguousarray(np.rot90(picture, turns))
        self.stats.frames_kept += 1
        self._held = (number, picture)
        return picture


def quarter_turns(degrees: float) -> int:
    """Counter-clockwise quarter turns for a display-matrix angle; other angles are ignored, as by decord."""
    turns, rest = divmod(round(degrees), 90)
    return int(turns) % 4 if rest == 0 else 0
