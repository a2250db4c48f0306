"""Pictures beyond what Pillow reads alone: HEIC, AVIF, JPEG XL, SVG, camera RAW, PAM/PNM, animations.

Every file is written here, with the libraries themselves (pillow-heif, Pillow, imagecodecs)
or by hand where the format is simple enough to spell (SVG is text, PAM a text header, and the DNG
is a TIFF of two directories: an embedded JPEG preview and a 16-bit Bayer mosaic, which LibRaw reads
as a camera's). A blocked library is shown by the real CLI in a subprocess whose ``sitecustomize``
makes importing it fail.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_json
from PIL import Image

from ibsearch.encoder.media.images import load_image
from ibsearch.engine import Library

PIP = "pip install 'ibsearch[pictures]'"
# name -> the library that decodes it (None: Pillow or ibsearch itself, nothing to install)
PICTURES = {
    "phone.heic": "pillow_heif",
    "phone.avif": None,
    "photo.jxl": "imagecodecs",
    "wallpaper.svg": "resvg_py",
    "icon.svgz": "resvg_py",
    "camera.dng": "rawpy",
    "tiny_preview.dng": "rawpy",
    "scan.pam": None,
    "line_art.pbm": None,
    "plain.pgm": None,
    "animated.gif": None,
    "animated.webp": None,
}
SVG = """<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" width="640" height="360" viewBox="0 0 64 36">
  <circle cx="32" cy="18" r="12" fill="#c03020"/><rect x="2" y="2" width="10" height="6" fill="#2040c0"/>
</svg>
"""


def scene(size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A picture with a left-right and top-bottom difference, so that a wrong rotation shows."""
    img = Image.new("RGB", size, (200, 40, 30))
    img.paste((30, 40, 200), (0, 0, size[0] // 3, size[1]))
    img.paste((240, 220, 40), (0, 0, size[0], size[1] // 5))
    return img


def rotated_exif(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _ifd(entries: list[tuple[int, int, int, bytes]], at: int) -> bytes:
    """A little-endian TIFF directory written at offset ``at``, with its longer values after it."""
    head, tail = struct.pack("<H", len(entries)), b""
    size = 2 + 12 * len(entries) + 4
    for tag, typ, count, data in sorted(entries):
        if len(data) <= 4:
            head += struct.pack("<HHI", tag, typ, count) + data.ljust(4, b"\0")
        else:
            head += struct.pack("<HHII", tag, typ, count, at + size + len(tail))
            tail += data + b"\0" * (len(data) % 2)
    return head + struct.pack("<I", 0) + tail


def write_dng(path: Path, preview: Image.Image, orientation: int = 1) -> Path:
    """A minimal DNG: IFD0 holds a JPEG preview and the orientation, its SubIFD a 32 x 24 mosaic."""
    jpeg = io.BytesIO()
    preview.save(jpeg, "JPEG", quality=92)
    data = jpeg.getvalue() + b"\0" * (len(jpeg.getvalue()) % 2)
    mosaic = np.random.default_rng(1).integers(0, 4000, (24, 32)).astype("<u2").tobytes()
    short, long_, byte, ascii_ = 3, 4, 1, 2
    model = b"ibsearch test camera\0"

    def ifd0(sub_at: int) -> list[tuple[int, int, int, bytes]]:
        w, h = preview.size
        return [
            (254, long_, 1, struct.pack("<I", 1)),  # a reduced-size picture (the preview)
            (256, long_, 1, struct.pack("<I", w)),
            (257, long_, 1, struct.pack("<I", h)),
            (258, short, 3, struct.pack("<3H", 8, 8, 8)),
            (259, short, 1, struct.pack("<H", 7)),  # JPEG
            (262, short, 1, struct.pack("<H", 6)),  # YCbCr
            (273, long_, 1, struct.pack("<I", 8)),
            (274, short, 1, struct.pack("<H", orientation)),
            (277, short, 1, struct.pack("<H", 3)),
            (278, long_, 1, struct.pack("<I", h)),
            (279, long_, 1, struct.pack("<I", len(jpeg.getvalue()))),
            (272, ascii_, len(model), model),
            (330, long_, 1, struct.pack("<I", sub_at)),  # SubIFDs: the mosaic
            (50706, byte, 4, bytes([1, 4, 0, 0])),  # DNGVersion 1.4
            (50708, ascii_, len(model), model),
        ]

    raw_at = 8 + len(data)
    ifd0_at = raw_at + len(mosaic)
    sub_at = ifd0_at + len(_ifd(ifd0(0), ifd0_at))
    sub = [
        (254, long_, 1, struct.pack("<I", 0)),
        (256, long_, 1, struct.pack("<I", 32)),
        (257, long_, 1, struct.pack("<I", 24)),
        (258, short, 1, struct.pack("<H", 16)),
        (259, short, 1, struct.pack("<H", 1)),
        (262, short, 1, struct.pack("<H", 32803)),  # a colour filter array
        (273, long_, 1, struct.pack("<I", raw_at)),
        (277, short, 1, struct.pack("<H", 1)),
        (278, long_, 1, struct.pack("<I", 24)),
        (279, long_, 1, struct.pack("<I", len(mosaic))),
        (33421, short, 2, struct.pack("<2H", 2, 2)),
        (33422, byte, 4, bytes([0, 1, 1, 2])),  # RGGB
        (50717, long_, 1, struct.pack("<I", 4095)),
    ]
    header = b"II*\0" + struct.pack("<I", ifd0_at)
    path.write_bytes(header + data + mosaic + _ifd(ifd0(sub_at), ifd0_at) + _ifd(sub, sub_at))
    return path


def write_pictures(folder: Path) -> None:
    """Every type of :data:`PICTURES` in ``folder``, plus ``first_frame.png`` and ``preview.jpg``
    (what the animations and the DNG should look like) and a damaged HEIC."""
    import imagecodecs
    import pillow_heif

    pillow_heif.register_heif_opener()
    folder.mkdir(parents=True, exist_ok=True)
    scene().save(folder / "phone.heic", quality=90, exif=rotated_exif())
    scene().save(folder / "phone.avif", quality=90)
    (folder / "wallpaper.svg").write_text(SVG)
    (folder / "icon.svgz").write_bytes(gzip.compress(SVG.replace("c03020", "20a040").encode()))
    scene().save(folder / "preview.jpg", quality=92, exif=rotated_exif())
    upside_down = io.BytesIO()
    scene().save(upside_down, "JPEG", quality=92, exif=rotated_exif(3))
    # A JPEG recompressed to JPEG XL: its EXIF orientation becomes the codestream's.
    (folder / "photo.jxl").write_bytes(imagecodecs.jpegxl_encode_jpeg(upside_down.getvalue()))
    write_dng(folder / "camera.dng", scene(), orientation=6)
    write_dng(folder / "tiny_preview.dng", scene((64, 48)))
    pixels = np.asarray(scene().convert("RGBA"))
    pam = b"P7\nWIDTH 320\nHEIGHT 240\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n"
    (folder / "scan.pam").write_bytes(pam + pixels.tobytes())
    scene().convert("1").save(folder / "line_art.pbm")
    (folder / "plain.pgm").write_text("P2\n# written by hand\n3 2\n255\n0 128 255\n255 128 0\n")
    frames = [scene(), Image.new("RGB", (320, 240), (20, 200, 60))]
    frames[0].save(folder / "first_frame.png")
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(folder / "animated.webp", save_all=True, append_images=frames[1:], lossless=True)
    (folder / "broken.heic").write_bytes((folder / "phone.heic").read_bytes()[:300])


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, tiny_card: str) -> tuple[Path, list[str], dict]:
    media = tmp_path_factory.mktemp("pictures")
    write_pictures(media)
    lib = tmp_path_factory.mktemp("lib") / "lib"
    args = ["--library", str(lib), "--model", tiny_card, "--device", "cpu"]
    return media, args, run_json("ingest", media, *args)


def _image_hits(args: list[str], query: Path) -> dict[str, float]:
    # Unfolded: several of these pictures are the same picture in another format (near-duplicates).
    hits = run_json("query", "--image", query, "--target", "vision", "--k", "20", "--no-fold", *args)
    return {Path(h["path"]).name: h["score"] for h in hits}


@pytest.mark.parametrize("name", sorted(PICTURES))
def test_each_picture_type_is_indexed_as_vision_and_finds_itself(ingested, name):
    media, args, summary = ingested
    assert summary["added"] == len(PICTURES) + 2  # and first_frame.png, preview.jpg
    with Library.open(args[1], model=args[3], device="cpu") as lib:
        assert [v.modality for v in lib.store.vectors.of_file(str(media / name))] == ["vision"]
    assert _image_hits(args, media / name)[name] == pytest.approx(1, abs=2e-3)


def test_a_damaged_heic_is_a_clear_failure_not_a_missing_library(ingested):
    media, _, summary = ingested
    (failed,) = summary["failed"]
    assert failed["path"] == str(media / "broken.heic")
    assert "HEIC" in failed["reason"] and "pip install" not in failed["reason"]


def test_an_animation_is_its_first_frame(ingested):
    media, args, _ = ingested
    hits = _image_hits(args, media / "first_frame.png")
    assert hits["animated.gif"] == pytest.approx(1, abs=2e-3)
    assert hits["animated.webp"] == pytest.approx(1, abs=2e-3)


def test_a_raw_file_gives_its_preview_turned_upright(ingested):
    media, args, _ = ingested
    # preview.jpg is the same JPEG with the same orientation in its EXIF: the same picture.
    assert _image_hits(args, media / "preview.jpg")["camera.dng"] == pytest.approx(1, abs=2e-3)
    assert load_image(str(media / "camera.dng")).size == (240, 320)
    # Its preview is too small: the 32 x 24 mosaic is demosaiced, at half size.
    assert load_image(str(media / "tiny_preview.dng")).size == (16, 12)


def test_orientation_is_applied_to_heic_and_jpeg_xl_as_to_jpeg(ingested):
    media, _, _ = ingested
    # Its size comes from its header, in a process where nothing registered pillow-heif before.
    code = (
        "import sys; from ibsearch.encoder.media.probe import probe; "
        "p = probe(sys.argv[1], 'image'); print(p['width'], p['height'])"
    )
    cmd = [sys.executable, "-c", code, str(media / "phone.heic")]
    size = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert size.stdout.strip() == "240 320", size.stderr
    upright = load_image(str(media / "preview.jpg"))
    assert load_image(str(media / "phone.heic")).size == upright.size == (240, 320)
    assert load_image(str(media / "photo.jxl")).size == (320, 240)  # turned half a turn
    assert np.asarray(load_image(str(media / "photo.jxl")))[-1, 0].tolist()[2] < 100  # yellow at the bottom


def test_an_svg_is_rasterized_for_the_vision_tower_on_white(tmp_path):
    (tmp_path / "tall.svg").write_text(SVG.replace('width="640" height="360"', 'width="36" height="64"'))
    wide, tall = load_image(SVG.encode(), name="wide.svg"), load_image(str(tmp_path / "tall.svg"))
    assert min(wide.size) >= 224 and wide.size[0] > wide.size[1]
    assert min(tall.size) >= 224 and tall.size[1] > tall.size[0]
    assert wide.getpixel((wide.size[0] - 1, wide.size[1] - 1)) == (255, 255, 255)  # transparent: white
    # A drawing that links to a picture elsewhere on disk does not show it (an upload could name any).
    scene().save(tmp_path / "private.png")
    link = f'<image xlink:href="{tmp_path / "private.png"}" width="64" height="36"/></svg>'
    linking = SVG.replace('xmlns="http://www.w3.org/2000/svg"', XLINK).replace("</svg>", link)
    assert load_image(linking.encode(), name="link.svg").getpixel((100, 150)) == (255, 255, 255)


XLINK = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
BLOCK = """import sys
for name in {names!r}:
    sys.modules[name] = None
"""


def test_a_missing_library_is_reported_per_file_with_the_pip_command(tmp_path, tiny_card):
    media = tmp_path / "media"
    write_pictures(media)
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    libraries = sorted({m for m in PICTURES.values() if m})
    (blocked / "sitecustomize.py").write_text(BLOCK.format(names=libraries))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), os.environ.get("PYTHONPATH", "")])}
    args = ["--library", str(tmp_path / "lib"), "--model", tiny_card, "--device", "cpu"]
    cmd = [sys.executable, "-m", "ibsearch", "ingest", str(media), *args, "--json"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    failed = {Path(f["path"]).name: f["reason"] for f in json.loads(proc.stdout)["failed"]}
    needs = {name for name, module in PICTURES.items() if module} | {"broken.heic"}
    assert set(failed) == needs
    for name in needs:
        assert PIP in failed[name], failed[name]
        assert "damaged" not in failed[name] and "not a recognised" not in failed[name]
    assert "HEIC" in failed["phone.heic"] and "JPEG XL" in failed["photo.jxl"]
    assert "SVG" in failed["wallpaper.svg"] and "RAW" in failed["camera.dng"]
    # Not the files' fault: once the libraries are there, the next ingest reads them.
    again = run_json("ingest", media, *args)
    assert again["added"] == len(needs) - 1 and [Path(f["path"]).name for f in again["failed"]] == [
        "broken.heic"
    ]
