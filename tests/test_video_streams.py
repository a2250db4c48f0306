"""Video decided by its streams: every container FFmpeg opens with a moving picture is a video.

The files are written here with PyAV. Its FFmpeg has no Theora encoder, so the Ogg video is VP8 in
Ogg: the same container, signature (``OggS``) and extension (``.ogv``) as a Theora file, which is
what decided the kind before.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import run_json

from ibsearch.engine import Library
from ibsearch.modality import modality_of_key

# name: (container format, video codec, audio codec or None)
CONTAINERS = {
    "vp8_opus.ogv": ("ogg", "libvpx", "opus"),
    "silent.ogv": ("ogg", "libvpx", None),
    "vp8.webm": ("webm", "libvpx", "opus"),
    "vp9.webm": ("webm", "libvpx-vp9", "opus"),
    "broadcast.ts": ("mpegts", "mpeg2video", "mp2"),
    "phone.3gp": ("3gp", "h263", "aac"),
    "flash.flv": ("flv", "flv", "aac"),
    "mpeg4.mkv": ("matroska", "mpeg4", "mp2"),
}
SOUND_ONLY = "music.ogg"
RATE = 16000


def write_av(path: Path, fmt: str, vcodec: str | None, acodec: str | None, seconds: int = 2) -> Path:
    """A short file in ``fmt``: a picture changing colour at 10 fps (176 x 144, the size H.263
    allows) and a 440 Hz tone; either stream left out when its codec is None."""
    with av.open(str(path), "w", format=fmt) as out:
        picture = sound = None
        if vcodec:
            picture = out.add_stream(vcodec, rate=10)
            picture.width, picture.height, picture.pix_fmt = 176, 144, "yuv420p"
        if acodec:
            sound = out.add_stream(acodec, rate=RATE, layout="mono")
        if picture is not None:
            for i in range(seconds * 10):
                img = np.full((144, 176, 3), (i * 23 % 255, 90, 200 - i * 5), np.uint8)
                out.mux(picture.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            out.mux(picture.encode(None))
        if sound is not None:
            step = sound.frame_size or 1024
            t = np.arange(seconds * RATE + step) / RATE
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, seconds * RATE, step):
                chunk = tone[None, start : start + step]
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, tiny_card: str) -> tuple[Path, list[str], dict]:
    """One ingest of a folder holding each container (and an Ogg file with sound only)."""
    media = tmp_path_factory.mktemp("containers")
    for name, (fmt, vcodec, acodec) in CONTAINERS.items():
        write_av(media / name, fmt, vcodec, acodec)
    write_av(media / SOUND_ONLY, "ogg", None, "opus")
    lib = tmp_path_factory.mktemp("lib") / "lib"
    args = ["--library", str(lib), "--model", tiny_card, "--device", "cpu"]
    return media, args, run_json("ingest", media, *args)


def _modalities(args: list[str], path: Path) -> set[str]:
    with Library.open(args[1], model=args[3], device="cpu") as lib:
        return {modality_of_key(v.modality) for v in lib.store.vectors.of_file(str(path))}


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_a_container_with_a_video_stream_is_indexed_as_video(ingested, name):
    media, args, summary = ingested
    assert summary["failed"] == [] and summary["added"] == len(CONTAINERS) + 1
    wanted = {"vision", "audio"} if CONTAINERS[name][2] else {"vision"}
    assert _modalities(args, media / name) == wanted
    # Unfolded: the containers hold the same pictures (near-duplicates of each other).
    hits = run_json("query", "--video", media / name, "--target", "vision", "--k", "20", "--no-fold", *args)
    own = next(h for h in hits if h["path"] == str(media / name))
    assert own["score"] == pytest.approx(1, abs=2e-3)


def test_an_ogg_file_with_sound_only_stays_a_sound_file(ingested):
    media, args, _ = ingested
    assert _modalities(args, media / SOUND_ONLY) == {"audio"}
