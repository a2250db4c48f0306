"""Decode time of a 12 MP picture in each new format, per candidate library (issue 20).

Writes a 4000 x 3000 photo-like picture (smooth gradients and noise) with the libraries themselves,
then times each candidate decoder (best of ``--repeat`` runs). SVG is timed as what ibsearch needs
from it: a wallpaper-like drawing rasterized with a short side of 224 px. Candidates that are not
installed are reported as such. Camera RAW has one candidate (rawpy) and is not timed here.
Usage: ``python scripts/bench_picture_decoders.py [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

SVG_HEAD = b"""<svg xmlns="http://www.w3.org/2000/svg" width="3840" height="2160" viewBox="0 0 3840 2160">
<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#1b3a6b"/>
<stop offset="1" stop-color="#e0a030"/></linearGradient></defs>
<rect width="3840" height="2160" fill="url(#g)"/>"""
CIRCLE = b'<circle cx="%d" cy="%d" r="%d" fill="#fff" fill-opacity="0.2"/>'
CIRCLES = b"".join(CIRCLE % (97 * i % 3840, 61 * i % 2160, 20 + i % 150) for i in range(400))
SVG = SVG_HEAD + CIRCLES + b"</svg>"


def photo(width: int = 4000, height: int = 3000) -> Image.Image:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 200, y / height * 200, (x + y) / (width + height) * 255], axis=-1)
    noise = rng.normal(0, 12, size=base.shape).astype(np.float32)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def candidates(img: Image.Image) -> list[tuple[str, str, Callable[[], Callable[[], object]]]]:
    """(format, library, setup) rows; setup encodes the file and returns the decode to time."""

    def pil_decode(data: bytes) -> Callable[[], object]:
        return lambda: Image.open(io.BytesIO(data)).load()

    def heif_file(fmt: str) -> Callable[[], object]:  # pillow-heif 1.x leaves AVIF to Pillow
        import pillow_heif

        pillow_heif.register_heif_opener()
        buf = io.BytesIO()
        img.save(buf, fmt, quality=80)
        return pil_decode(buf.getvalue())

    def pillow_avif() -> Callable[[], object]:
        buf = io.BytesIO()
        img.save(buf, "AVIF", quality=80)
        data = buf.getvalue()
        return pil_decode(data)

    def jxl_plugin() -> Callable[[], object]:
        import pillow_jxl  # noqa: F401 - registers the JXL plugin

        buf = io.BytesIO()
        img.save(buf, "JXL", quality=80)
        return pil_decode(buf.getvalue())

    def jxl_imagecodecs() -> Callable[[], object]:
        import imagecodecs

        data = imagecodecs.jpegxl_encode(np.asarray(img), level=80)
        return lambda: imagecodecs.jpegxl_decode(data)

    def svg_resvg() -> Callable[[], object]:
        import resvg_py

        text = SVG.decode()
        return lambda: Image.open(io.BytesIO(resvg_py.svg_to_bytes(svg_string=text, height=224))).load()

    def svg_cairo() -> Callable[[], object]:
        import cairosvg

        return lambda: Image.open(io.BytesIO(cairosvg.svg2png(bytestring=SVG, output_height=224))).load()

    return [
        ("HEIC", "pillow-heif", lambda: heif_file("HEIF")),
        ("AVIF", "Pillow (built in)", pillow_avif),
        ("JXL", "pillow-jxl-plugin", jxl_plugin),
        ("JXL", "imagecodecs", jxl_imagecodecs),
        ("SVG 3840x2160 -> 224 px", "resvg-py", svg_resvg),
        ("SVG 3840x2160 -> 224 px", "cairosvg", svg_cairo),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    img = photo()
    print(f"| format | library | decode (ms, best of {args.repeat}) |\n|---|---|---|")
    for fmt, library, setup in candidates(img):
        try:
            decode = setup()
        except ImportError as exc:
            print(f"| {fmt} | {library} | not installed ({exc.name}) |")
            continue
        print(f"| {fmt} | {library} | {best(decode, args.repeat) * 1000:.0f} |", flush=True)


if __name__ == "__main__":
    main()
