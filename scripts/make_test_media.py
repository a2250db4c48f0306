"""Write the small test media in tests/data/ (our own synthetic content; nothing copied from elsewhere).

Run from the repo root with the project venv (numpy, Pillow and PyAV)::

    .venv/bin/python scripts/make_test_media.py [--out tests/data]

Layout (see tests/fixtures/README.md for what each file exercises):

* ``images/``  photo-like pictures in many encodings and shapes (reference outputs in
  tests/fixtures/vision_preprocess.npz);
* ``audio/``   WAV files over sample rates, channel counts, durations and sample formats (reference
  outputs in tests/fixtures/audio_preprocess.npz);
* ``encoded/`` the samples of ``audio/mix_16000_mono_s16_5p3s.wav`` in other containers/codecs, plus tiny
  mp4 videos, for decoder tests (no reference outputs: the reference could only read them via torchcodec);
* ``bad/``     empty, truncated and random files for error handling.

Every generator is seeded, so a rerun writes the same pixels and samples (lossy encoders may differ in
container metadata between library versions).
"""

from __future__ import annotations

import argparse
import struct
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------
# Images


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A photo-like RGB picture: smooth sky/ground gradients, soft shapes, texture and sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (yy / max(height - 1, 1))[..., None]
    top, bottom = rng.uniform(40, 230, 3), rng.uniform(20, 200, 3)
    img = top * (1 - t) + bottom * t
    img += 18 * np.sin(xx / max(width, 1) * rng.uniform(3, 9) + rng.uniform(0, 6))[..., None]
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    size = max(width, height)
    for _ in range(int(rng.integers(6, 14))):
        x0, y0 = rng.uniform(-0.1, 1.0) * width, rng.uniform(-0.1, 1.0) * height
        w, h = rng.uniform(0.05, 0.4) * size, rng.uniform(0.05, 0.4) * size
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=color)
        elif kind == 1:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=color)
        else:
            pts = [(x0 + rng.uniform(0, w), y0 + rng.uniform(0, h)) for _ in range(3)]
            draw.polygon(pts, fill=color)
    canvas = canvas.filter(ImageFilter.GaussianBlur(radius=max(size / 400, 0.6)))
    arr = np.asarray(canvas).astype(np.float32) + rng.normal(0, 5, (height, width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8))


def write_images(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    photo(640, 480, 1).save(out / "photo_640x480.jpg", quality=90, subsampling=2)  # 4:2:0, the common case
    photo(500, 375, 2).save(out / "photo_444_500x375.jpg", quality=95, subsampling=0)
    photo(320, 240, 3).save(out / "photo_320x240.webp", quality=80)

    rgb = np.asarray(photo(320, 240, 4))
    yy, xx = np.mgrid[0:240, 0:320]
    alpha = np.clip(255 - np.hypot(yy - 120, xx - 160) * 1.6, 0, 255).astype(np.uint8)  # transparent corners
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(out / "rgba_alpha_320x240.png")

    photo(300, 400, 5).convert("L").save(out / "gray_L_300x400.png")
    photo(256, 192, 6).quantize(colors=64).save(out / "palette_256x192.gif")
    photo(400, 300, 7).convert("CMYK").save(out / "cmyk_400x300.jpg", quality=90)
    photo(7, 5, 8).save(out / "tiny_7x5.png")
    photo(1200, 240, 9).save(out / "panorama_1200x240.jpg", quality=85)
    photo(270, 1000, 10).save(out / "portrait_270x1000.jpg", quality=85)
    # Centre-crop offsets of 2.5 and 3.5: round-half-to-even gives 2 and 4, unlike floor or half-up.
    photo(229, 224, 11).save(out / "odd_229x224.png")
    photo(224, 231, 16).save(out / "odd_224x231.png")
    photo(200, 150, 12).convert("1").save(out / "bilevel_1bit_200x150.png")

    # 16-bit grayscale using the full 0..65535 range, as a scanner or HDR export would write it.
    gray16 = np.asarray(photo(256, 200, 13).convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray16).save(out / "gray16_256x200.png")

    # Stored landscape with EXIF orientation 6 ("rotate 90 CW to display"), as phone cameras write it.
    exif = Image.Exif()
    exif[0x0112] = 6
    photo(320, 240, 14).save(out / "exif_orient6_320x240.jpg", quality=90, exif=exif.tobytes())


# ----------------------------------------------------------------------------------------------------
# Audio


def signal(rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    """Tones, a chirp, amplitude-modulated noise bursts and a DC offset; (channels, samples) in [-1, 1].

    Channels differ (other tones, other offset) so that anything that mixes or picks channels shows.
    """
    rng = np.random.default_rng(seed)
    n = int(round(rate * seconds))
    t = np.arange(n) / rate
    nyq = rate / 2
    out = []
    for ch in range(channels):
        f1, f2 = rng.uniform(150, 600), rng.uniform(0.3, 0.45) * rate  # f2 near Nyquist tests the resampler
        f_end = min(0.4 * rate, 6000.0)
        phase = 2 * np.pi * (120 * t + (f_end - 120) * t**2 / (2 * max(seconds, 1e-3)))
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t + ch)
        x = (
            0.25 * np.sin(2 * np.pi * f1 * t)
            + 0.08 * np.sin(2 * np.pi * min(f2, 0.98 * nyq) * t)
            + 0.2 * np.sin(phase)
            + 0.15 * env * rng.normal(0, 1, n)
            + (0.06 if ch == 0 else -0.1)
        )
        out.append(x)
    return np.clip(np.stack(out), -0.99, 0.99)


def write_wav(path: Path, x: np.ndarray, rate: int, sample_format: str) -> None:
    """Write (channels, samples) floats as RIFF/WAVE: u8, s16, s24, s32 PCM or f32 IEEE float."""
    frames = np.ascontiguousarray(x.T)
    if sample_format == "f32":
        data = frames.astype("<f4").tobytes()
        channels = x.shape[0]
        fmt = struct.pack("<HHIIHHH", 3, channels, rate, rate * channels * 4, channels * 4, 32, 0)
        fact = struct.pack("<I", frames.shape[0])
        body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", 4) + fact
        body += b"data" + struct.pack("<I", len(data)) + data
        path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
        return
    if sample_format == "u8":
        data, width = (np.clip(np.round(frames * 128) + 128, 0, 255).astype(np.uint8).tobytes(), 1)
    elif sample_format == "s16":
        data, width = (np.clip(np.round(frames * 32768), -32768, 32767).astype("<i2").tobytes(), 2)
    elif sample_format == "s24":
        v = np.clip(np.round(frames * 2**23), -(2**23), 2**23 - 1).astype("<i4")
        data, width = (v.view(np.uint8).reshape(-1, 4)[:, :3].tobytes(), 3)
    elif sample_format == "s32":
        data, width = (np.clip(np.round(frames * 2.0**31), -(2**31), 2**31 - 1).astype("<i4").tobytes(), 4)
    else:
        raise ValueError(sample_format)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[0])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)


# name stem, rate, channels, sample format, seconds
WAVS = [
    ("tone_8000_mono_s16_30s", 8000, 1, "s16", 30.0),
    ("chirp_11025_mono_u8_10s", 11025, 1, "u8", 10.0),
    ("mix_16000_mono_s16_5p3s", 16000, 1, "s16", 5.3),
    ("mix_8000_stereo_s16_5p3s", 8000, 2, "s16", 5.3),
    ("mix_22050_stereo_s16_1p5s", 22050, 2, "s16", 1.5),
    ("mix_44100_mono_s24_0p37s", 44100, 1, "s24", 0.37),
    ("mix_44100_mono_s16_2p5s", 44100, 1, "s16", 2.5),
    ("mix_48000_stereo_f32_0p37s", 48000, 2, "f32", 0.37),
    ("mix_48000_mono_s16_1p5s", 48000, 1, "s16", 1.5),
    ("mix_16000_mono_f32_1p5s", 16000, 1, "f32", 1.5),
    ("mix_11025_stereo_s24_2s", 11025, 2, "s24", 2.0),
    ("mix_16000_stereo_s32_1s", 16000, 2, "s32", 1.0),
]


def write_audio(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for seed, (stem, rate, channels, sample_format, seconds) in enumerate(WAVS, start=100):
        write_wav(out / f"{stem}.wav", signal(rate, seconds, channels, seed), rate, sample_format)


def s16_samples(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return pcm.reshape(-1, w.getnchannels()).T.copy(), w.getframerate()


def encode_audio(path: Path, pcm: np.ndarray, rate: int, codec: str, out_rate: int, **options: str) -> None:
    """Encode int16 (channels, samples) with PyAV; the encoder's own resampler/format converter runs."""
    layout = "mono" if pcm.shape[0] == 1 else "stereo"
    # Ogg picks random stream serial numbers unless given an offset; bitexact drops version strings.
    muxer_options = {"serial_offset": "1"} if path.suffix in (".ogg", ".opus") else {}
    with av.open(str(path), "w", options={"fflags": "+bitexact", **muxer_options}) as container:
        stream = container.add_stream(codec, rate=out_rate, options=options)
        stream.layout = layout
        for start in range(0, pcm.shape[1], 4096):
            chunk = np.ascontiguousarray(pcm[:, start : start + 4096].T.reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
            frame.sample_rate = rate
            frame.pts, frame.time_base = start, Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def write_video(path: Path, seconds: float, with_audio: bool) -> None:
    """A 160x120, 10 fps h264 clip of a moving box; optionally with a mono AAC track at 22.05 kHz."""
    rng = np.random.default_rng(7)
    background = np.asarray(photo(160, 120, 15))
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=10, options={"preset": "veryfast", "crf": "30"})
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = None
        if with_audio:
            audio = container.add_stream("aac", rate=22050)
            audio.layout = "mono"
        for i in range(int(seconds * 10)):
            frame = background.copy()
            x = int(10 + 12 * i) % 130
            frame[40:80, x : x + 30] = rng.integers(0, 256, 3)
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None:
            pcm = np.round(signal(22050, seconds, 1, 77) * 32767).astype(np.int16)
            for start in range(0, pcm.shape[1], 4096):
                frame = av.AudioFrame.from_ndarray(pcm[:, start : start + 4096], format="s16", layout="mono")
                frame.sample_rate = 22050
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)


def write_encoded(out: Path, audio_dir: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    source = audio_dir / "mix_16000_mono_s16_5p3s.wav"
    pcm, rate = s16_samples(source)
    stem = "mix_16000_mono_5p3s"
    encode_audio(out / f"{stem}.flac", pcm, rate, "flac", rate)  # lossless: same samples as the WAV
    encode_audio(out / f"{stem}.mp3", pcm, rate, "libmp3lame", rate, b="64k")
    encode_audio(out / f"{stem}.opus", pcm, rate, "libopus", 48000, b="48k")
    encode_audio(out / f"{stem}.m4a", pcm, rate, "aac", rate, b="64k")
    stereo = np.concatenate([pcm, pcm[:, ::-1]])  # FFmpeg's native vorbis encoder wants stereo
    encode_audio(out / "mix_16000_stereo_5p3s.ogg", stereo, rate, "vorbis", rate, strict="experimental")
    write_video(out / "clip_160x120_3s_aac.mp4", 3.0, with_audio=True)
    write_video(out / "video_only_160x120_2s.mp4", 2.0, with_audio=False)


# ----------------------------------------------------------------------------------------------------
# Broken inputs


def write_bad(out: Path, images: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(99)
    (out / "empty.wav").write_bytes(b"")
    (out / "empty.jpg").write_bytes(b"")
    (out / "random_bytes.wav").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (out / "random_bytes.jpg").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    jpeg = (images / "photo_640x480.jpg").read_bytes()
    (out / "truncated.jpg").write_bytes(jpeg[: len(jpeg) * 2 // 5])
    write_wav(out / "full.wav.tmp", signal(16000, 0.5, 1, 98), 16000, "s16")
    (out / "truncated_header.wav").write_bytes((out / "full.wav.tmp").read_bytes()[:30])
    (out / "full.wav.tmp").unlink()
    # 10 ms: shorter than one 25 ms fbank window (the reference fails on it with an assertion).
    write_wav(out / "too_short_10ms.wav", signal(16000, 0.01, 1, 97), 16000, "s16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "data")
    args = parser.parse_args()
    write_images(args.out / "images")
    write_audio(args.out / "audio")
    write_encoded(args.out / "encoded", args.out / "audio")
    write_bad(args.out / "bad", args.out / "images")
    total = 0
    for f in sorted(p for p in args.out.rglob("*") if p.is_file()):
        total += f.stat().st_size
        print(f"{f.stat().st_size / 1e3:9.1f} kB  {f.relative_to(args.out)}")
    print(f"{total / 1e6:9.3f} MB  total")


if __name__ == "__main__":
    main()
