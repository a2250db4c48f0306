"""Image preprocessing: bit-identical to the reference, except for two documented deviations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ibsearch.encoder import preprocess
from ibsearch.encoder.media import images
from ibsearch.errors import MediaError

DATA = Path(__file__).parent / "data"
FIXTURE = Path(__file__).parent / "fixtures" / "vision_preprocess.npz"
# The reference ignores EXIF orientation and clips 16-bit grey to white; we do neither (by design).
DEVIATING = {"exif_orient6_320x240.jpg", "gray16_256x200.png"}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as npz:
        return {name: npz[name] for name in npz.files}


def test_every_fixture_image_matches_the_reference_bit_for_bit(reference: dict[str, np.ndarray]) -> None:
    assert set(reference) == {p.name for p in (DATA / "images").iterdir()}
    for name, expected in sorted(reference.items()):
        if name in DEVIATING:
            continue
        got = preprocess.load("vision", DATA / "images" / name)
        assert got.shape == (3, 224, 224) and got.dtype == torch.float32
        assert np.abs(got.numpy() - expected).max() <= 1e-6, name


def test_path_bytes_file_object_and_pil_image_give_the_same_tensor() -> None:
    path = DATA / "images" / "photo_640x480.jpg"
    by_path = preprocess.load("image", str(path))
    assert torch.equal(by_path, preprocess.load("vision", path.read_bytes()))
    with path.open("rb") as fh:
        assert torch.equal(by_path, preprocess.load_vision(fh))
    assert torch.equal(by_path, preprocess.load_vision(Image.open(path)))


def test_vision_batch_stacks_items() -> None:
    names = ["photo_640x480.jpg", "tiny_7x5.png", "portrait_270x1000.jpg"]
    batch = preprocess.vision([DATA / "images" / n for n in names])
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == torch.float32
    assert torch.equal(batch[1], preprocess.load("vision", DATA / "images" / "tiny_7x5.png"))


def test_exif_orientation_is_applied_unlike_the_reference(reference: dict[str, np.ndarray]) -> None:
    path = DATA / "images" / "exif_orient6_320x240.jpg"
    assert images.load_image(path).size == (240, 320)
    # Orientation 6 means "rotate 90 degrees clockwise to display".
    upright = Image.open(path).convert("RGB").transpose(Image.Transpose.ROTATE_270)
    got = preprocess.load("vision", path)
    assert torch.equal(got, images.image_tensor(upright))
    assert np.abs(got.numpy() - reference[path.name]).max() > 0.5


def test_a_caller_s_own_picture_is_turned_and_read_without_being_changed() -> None:
    # A picture opened here is turned in place and not copied; one the caller hands over is
    # left exactly as it was, and both give the same tensor.
    path = DATA / "images" / "exif_orient6_320x240.jpg"
    given = Image.open(path)
    given.load()
    before = (given.size, given.mode, given.tobytes(), given.getexif().get(0x0112))
    assert before[0] == (320, 240) and before[3] == 6  # stored sideways, turned by its EXIF
    assert torch.equal(preprocess.load_vision(given), preprocess.load("vision", path))
    assert (given.size, given.mode, given.tobytes(), given.getexif().get(0x0112)) == before
    rgb = Image.open(DATA / "images" / "photo_640x480.jpg").convert("RGB")
    assert images.load_image(rgb) is not rgb  # the caller's image is never handed back to be changed


def test_16_bit_grey_is_scaled_not_clipped_to_white(reference: dict[str, np.ndarray]) -> None:
    path = DATA / "images" / "gray16_256x200.png"
    sixteen = np.asarray(Image.open(path))
    assert sixteen.dtype.itemsize == 2 and sixteen.max() > 255
    loaded = np.asarray(images.load_image(path))
    assert np.array_equal(loaded[..., 0], (sixteen >> 8).astype(np.uint8))
    got = preprocess.load("vision", path)
    assert got.mean() < reference[path.name].mean() - 0.5


def test_bad_image_files_raise_media_error_naming_the_file() -> None:
    cases = {
        "empty.jpg": "empty file",
        "random_bytes.jpg": "not a recognised image",
        "truncated.jpg": "truncated or corrupt",
    }
    for name, reason in cases.items():
        path = DATA / "bad" / name
        with pytest.raises(MediaError, match=reason) as info:
            preprocess.load("vision", path)
        assert info.value.path == str(path)
    with pytest.raises(MediaError, match="no such file"):
        preprocess.load("vision", DATA / "images" / "missing.png")
    with pytest.raises(MediaError, match="empty input"):
        preprocess.load("vision", b"")


def test_zero_size_images_raise_media_error() -> None:
    with pytest.raises(MediaError, match="zero size"):
        preprocess.load("vision", Image.new("RGB", (0, 12)))


@pytest.mark.parametrize("limit", [100_000, 200_000])
def test_decompression_bombs_are_refused_with_pixel_count_and_limit(
    limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 640 x 480 = 307,200 pixels: beyond 2x the first limit (Pillow's error), within 2x of the
    # second (where Pillow only warns): both must be refused the same way.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(MediaError, match=rf"307,200 pixels.*limit of {limit:,}") as info:
        preprocess.load("vision", DATA / "images" / "photo_640x480.jpg")
    assert "MAX_IMAGE_PIXELS" in info.value.reason


def test_extremely_elongated_images_stay_small_and_close_to_the_exact_resize(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    strip = Image.fromarray(np.random.default_rng(0).integers(0, 256, (3, 20_000, 3), dtype=np.uint8))
    out = preprocess.load("vision", strip)
    assert out.shape == (3, 224, 224) and bool(torch.isfinite(out).all())
    # On a moderately wide image, compare the windowed resize against the exact one.
    wide = Image.open(DATA / "images" / "panorama_1200x240.jpg")
    exact = preprocess.load("vision", wide)
    monkeypatch.setattr(images, "MAX_EXACT_ASPECT", 1.0)
    windowed = preprocess.load("vision", wide)
    assert (exact - windowed).abs().mean() < 0.02
