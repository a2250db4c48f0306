"""Write the test videos in tests/data/video/ and the reference's outputs for them.

Two steps (both deterministic):

* ``media``: synthetic videos made with PyAV (ours; seeded), in the project venv::

      .venv/bin/python scripts/gen_video_fixtures.py --steps media

* ``reference``: the REFERENCE ``imagebind.data.load_and_transform_video_data`` on each video, in
  the scratch environment of ``scripts/gen_fixtures.py`` with ``decord`` added (the reference reads
  videos with pytorchvideo's decord backend; ``pip install decord`` gives 0.6.0, which works)::

      /work/scratch/refenv/bin/pip install decord==0.6.0
      IMAGEBIND_SRC=/work/scratch/ImageBind /work/scratch/refenv/bin/python \\
          scripts/gen_video_fixtures.py --steps reference

  writes ``tests/fixtures/video_preprocess.npz``. A full output is (15, 3, 2, 224, 224) float32,
  18 MB per video, so the file keeps, per video ``<name>``:

  - ``<name>``: the output subsampled every 7th row and column, ``out[..., ::7, ::7]``, (15, 3, 2, 32, 32);
  - ``<name>.plane``: one full (224, 224) plane ``out[k, c, t]`` and ``<name>.plane_index`` = ``[k, c, t]``;
  - ``<name>.means``: the mean of every (224, 224) plane, float64 (15, 3, 2), so that every pixel
    counts somewhere.

The reference source is not modified; the only patch is the torchvision one of ``gen_fixtures.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STRIDE = 7


# ---------------------------------------------------------------------------------------- media


# name: (width, height, frame rate, frames, with sound, display rotation in degrees, codec)
VIDEOS: dict[str, tuple[int, int, Fraction, int, bool, int, str]] = {
    # NTSC rate: clip starts times a non-integer rate; several GOPs and B-frames; AAC sound.
    "landscape_320x240_29.97fps_4.5s_aac.mp4": (320, 240, Fraction(30000, 1001), 135, True, 0, "libx264"),
    # Stored portrait; no sound.
    "portrait_240x320_24fps_3.2s.mp4": (240, 320, Fraction(24), 77, False, 0, "libx264"),
    # Shorter than one clip: every clip is the whole video; sound.
    "short_320x240_25fps_1.2s_aac.mp4": (320, 240, Fraction(25), 30, True, 0, "libx264"),
    # Stored landscape with a 90-degree display matrix, as phones write portrait videos; no sound.
    "rotated90_320x240_30fps_2.5s.mp4": (320, 240, Fraction(30), 75, False, 90, "libx264"),
    # WebM/VP9, 16:9 (long side 398.2 -> 398), 6 s: clips that do not overlap; no sound.
    "wide_256x144_15fps_6s_vp9.webm": (256, 144, Fraction(15), 90, False, 0, "libvpx-vp9"),
}
CODEC_OPTIONS = {
    "libx264": {"preset": "veryfast", "crf": "30", "x264-params": "keyint=12:min-keyint=12:bframes=2"},
    "libvpx-vp9": {"crf": "40", "b": "0", "g": "12", "cpu-used": "8", "row-mt": "0", "threads": "1"},
}


def scene(width: int, height: int, index: int, rng: np.random.Generator, shapes: np.ndarray) -> np.ndarray:
    """One frame: a drifting colour gradient with moving discs and a sharp-edged bar (uint8 RGB)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = index / 10.0
    img = np.stack(
        [
            128 + 90 * np.sin(xx / width * 5 + t),
            128 + 90 * np.cos(yy / height * 4 - 0.7 * t),
            128 + 90 * np.sin((xx + yy) / (width + height) * 7 + 1.3 * t),
        ],
        axis=-1,
    )
    for cx, cy, r, vx, vy, red, green, blue in shapes:
        x = (cx + vx * index) % width
        y = (cy + vy * index) % height
        inside = (xx - x) ** 2 + (yy - y) ** 2 < r * r
        img[inside] = (red, green, blue)
    bar = int(index * 7) % width
    img[height // 3 : height // 3 + 12, bar : bar + 40] = (250, 250, 250)
    img += rng.normal(0, 3, img.shape)  # a little grain so the encoder keeps detail
    return np.clip(img, 0, 255).astype(np.uint8)


def write_video(
    path: Path, width: int, height: int, rate: Fraction, frames: int, sound: bool, turn: int, codec: str
) -> None:
    import av

    rng = np.random.default_rng(frames * 7 + width)
    shapes = np.column_stack(
        [
            rng.uniform(0, width, 5),
            rng.uniform(0, height, 5),
            rng.uniform(12, 40, 5),
            rng.uniform(-6, 6, 5),
            rng.uniform(-4, 4, 5),
            rng.integers(0, 256, (5, 3)),
        ]
    )
    # bitexact: no random segment UIDs or library version strings, so reruns give identical files
    with av.open(str(path), "w", container_options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=rate, options=CODEC_OPTIONS[codec])
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if turn:
            stream.set_display_rotation(turn)
        audio = None
        if sound:
            audio = container.add_stream("aac", rate=16000)
            audio.layout = "mono"
        for i in range(frames):
            picture = av.VideoFrame.from_ndarray(scene(width, height, i, rng, shapes), format="rgb24")
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if audio is not None:
            seconds = frames / rate
            n = int(16000 * seconds)
            t = np.arange(n) / 16000
            tone = 0.3 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))
            pcm = np.round(tone * 32767).astype(np.int16)[None, :]
            for start in range(0, n, 1024):
                chunk = av.AudioFrame.from_ndarray(pcm[:, start : start + 1024], format="s16", layout="mono")
                chunk.sample_rate = 16000
                for packet in audio.encode(chunk):
                    container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)


def write_media(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, spec in VIDEOS.items():
        write_video(out / name, *spec)
        print(f"wrote {out / name} ({(out / name).stat().st_size:,} bytes)")


# ------------------------------------------------------------------------------------ reference


def write_reference(media: Path, out: Path, src: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gen_fixtures import import_reference  # our other generator: the same torchvision patch

    import_reference(src)
    from imagebind import data  # noqa: E402  (the reference package, from the scratch source)

    arrays: dict[str, np.ndarray] = {}
    for k, name in enumerate(sorted(VIDEOS)):
        full = data.load_and_transform_video_data([str(media / name)], "cpu")[0].numpy()
        assert full.shape == (15, 3, 2, 224, 224) and full.dtype == np.float32, full.shape
        index = np.array([(4 * k + 2) % 15, k % 3, k % 2])
        arrays[name] = np.ascontiguousarray(full[..., ::STRIDE, ::STRIDE])
        arrays[f"{name}.plane"] = full[tuple(index)].copy()
        arrays[f"{name}.plane_index"] = index
        arrays[f"{name}.means"] = full.astype(np.float64).mean(axis=(-2, -1))
        print(f"{name}: mean {full.mean():+.5f}, std {full.std():.5f}")
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", nargs="+", choices=["media", "reference"], default=["media", "reference"])
    parser.add_argument("--media", type=Path, default=REPO / "tests" / "data" / "video")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "video_preprocess.npz")
    parser.add_argument("--imagebind-src", type=Path, default=Path(os.environ.get("IMAGEBIND_SRC", "")))
    args = parser.parse_args()
    if "media" in args.steps:
        write_media(args.media)
    if "reference" in args.steps:
        write_reference(args.media, args.out, args.imagebind_src)


if __name__ == "__main__":
    main()
