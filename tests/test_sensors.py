"""Depth, thermal and IMU loaders: shapes, units, normalization, file variants and errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ibsearch.encoder.media import sensors
from ibsearch.errors import MediaError

# Normalized disparity of a surface 2 m away: 0.075 m * 518.857901 px / 2 m / 75.
AT_2M = 0.075 * 518.857901 / 2.0 / 75.0


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ depth


def test_depth_from_a_16_bit_png_in_millimetres_becomes_normalized_disparity(tmp_path: Path) -> None:
    path = tmp_path / "depth.png"
    path.write_bytes(png_bytes(np.full((480, 640), 2000, np.uint16)))
    out = sensors.load_depth(path)
    assert out.shape == (1, 224, 224) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, AT_2M), atol=1e-6)


def test_depth_in_every_accepted_encoding_gives_the_same_input() -> None:
    metres = np.full((240, 320), 2.0, np.float32)
    variants = {
        "png mm": png_bytes((metres * 1000).astype(np.uint16)),
        "tiff mm": png_bytes((metres * 1000).astype(np.uint16), "TIFF"),
        "float tiff m": png_bytes(metres, "TIFF"),
        "npy m": npy_bytes(metres),
        "npy mm": npy_bytes((metres * 1000).astype(np.int32)),
        "npy (1, H, W)": npy_bytes(metres[None]),
    }
    for label, data in variants.items():
        out = sensors.load_depth(data)
        assert torch.allclose(out, torch.full_like(out, AT_2M), atol=1e-6), label
    assert torch.allclose(sensors.load_depth(metres), torch.full((1, 224, 224), AT_2M), atol=1e-6)
    # Other integer units, and a disparity map given directly.
    cm = png_bytes(np.full((240, 320), 200, np.uint16))
    assert torch.allclose(
        sensors.load_depth(cm, units_per_m=100), torch.full((1, 224, 224), AT_2M), atol=1e-6
    )
    disparity = npy_bytes(np.full((240, 320), 30.0, np.float32))
    assert torch.allclose(sensors.load_depth(disparity, disparity=True), torch.full((1, 224, 224), 0.4))


def test_depth_clamps_near_surfaces_and_reads_holes_as_far() -> None:
    depth = np.full((300, 300), 0.3, np.float32)  # 0.3 m: disparity 129.7 px, clamped to 75
    depth[:, 150:] = 0.0  # sensor holes
    out = sensors.load_depth(depth)[0]
    assert out[:, :60].min() == pytest.approx(1.0, abs=1e-6)
    far = 0.075 * 518.857901 / 50.0 / 75.0
    assert out[:, -60:].max() == pytest.approx(far, abs=1e-6)
    assert sensors.normalize_disparity(np.array([0.0, 1e6, np.nan])).tolist() == pytest.approx(
        [0.01 / 75, 1.0, 0.01 / 75]
    )


def test_depth_is_resized_on_the_short_side_and_centre_cropped_like_images() -> None:
    depth = np.full((480, 640), 4.0, np.float32)
    depth[:, :320] = 1.0  # left half near
    out = sensors.load_depth(depth)[0]
    # 640x480 -> 298x224, crop offset round(74 / 2) = 37: the edge lands at column 149 - 37 = 112.
    assert out[:, :100].mean() > 0.5 > out[:, 125:].mean()
    tall = sensors.load_depth(np.full((640, 480), 2.0, np.float32))
    assert tall.shape == (1, 224, 224)


def test_an_8_bit_depth_image_is_taken_as_normalized_disparity() -> None:
    out = sensors.load_depth(png_bytes(np.full((100, 120), 128, np.uint8)))
    assert torch.allclose(out, torch.full_like(out, 128 / 255), atol=1e-6)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (png_bytes(np.zeros((50, 60, 3), np.uint8)), "not a depth map"),
        (npy_bytes(np.zeros((50, 60, 3), np.float32)), "single-channel 2-D map"),
        (npy_bytes(np.array(["a", "b"])), "single-channel"),
        (b"", "empty"),
        (b"\x93NUMPY garbage", "not a readable .npy"),
        (b"not an image at all", "not a recognised image"),
    ],
)
def test_bad_depth_input_raises_media_error(data: bytes, reason: str) -> None:
    with pytest.raises(MediaError, match=reason):
        sensors.load_depth(data)


def test_a_missing_depth_file_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as caught:
        sensors.load_depth(tmp_path / "nope.png")
    assert caught.value.path == str(tmp_path / "nope.png")


# ---------------------------------------------------------------------------------------- thermal


def test_thermal_8_bit_is_scaled_to_unit_range_without_mean_std() -> None:
    out = sensors.load_thermal(png_bytes(np.full((240, 320), 200, np.uint8)))
    assert out.shape == (1, 224, 224) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, 200 / 255))
    grey_rgb = png_bytes(np.full((240, 320, 3), 200, np.uint8), "JPEG")  # LLVIP-style 3-channel grey
    assert torch.allclose(sensors.load_thermal(grey_rgb), out, atol=2 / 255)


def test_thermal_16_bit_and_float_data_are_stretched_between_percentiles() -> None:
    counts = np.tile(np.linspace(7000, 9000, 320), (240, 1)).astype(np.uint16)  # radiometric counts
    stretched = sensors.stretch(counts.astype(np.float64))
    assert stretched.min() == 0.0 and stretched.max() == 1.0  # 1st/99th percentiles -> 0/1, clipped
    out = sensors.load_thermal(png_bytes(counts))
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert out[0, :, :20].mean() < 0.2 < 0.8 < out[0, :, -20:].mean()  # the centre crop keeps 224 of 298
    celsius = np.tile(np.linspace(20.0, 37.0, 320), (240, 1)).astype(np.float32)
    assert torch.allclose(sensors.load_thermal(npy_bytes(celsius)), out, atol=2e-3)
    assert sensors.stretch(np.full((4, 4), np.nan)).max() == 0.0


def test_thermal_batches_stack() -> None:
    items = [png_bytes(np.full((64, 64), v, np.uint8)) for v in (10, 250)]
    assert sensors.thermal(items).shape == (2, 1, 224, 224)
    assert sensors.depth([png_bytes(np.full((64, 64), 1500, np.uint16))]).shape == (1, 1, 224, 224)
    assert sensors.thermal([]).shape == (0, 1, 224, 224)


# -------------------------------------------------------------------------------------------- IMU


def imu_series(n: int, seed: int = 0) -> np.ndarray:
    """(n, 6): gravity-like accelerometer in m/s^2 and small gyroscope rates in rad/s."""
    rng = np.random.default_rng(seed)
    accel = np.array([0.0, 0.0, 9.81]) + rng.normal(0, 0.5, (n, 3))
    gyro = rng.normal(0, 0.2, (n, 3))
    return np.concatenate([accel, gyro], axis=1)


def test_imu_of_exactly_ten_seconds_at_200_hz_passes_through() -> None:
    series = imu_series(2000)
    out = sensors.load_imu(npy_bytes(series))
    assert out.shape == (6, 2000) and out.dtype == torch.float32
    assert torch.equal(out, torch.from_numpy(series.T.astype(np.float32)))
    assert torch.equal(sensors.load_imu(npy_bytes(series.T.copy())), out)  # (6, N) layout too


def test_imu_longer_is_centre_cropped_and_shorter_is_zero_padded() -> None:
    long = imu_series(3000)
    assert torch.equal(sensors.load_imu(long), torch.from_numpy(long[500:2500].T.astype(np.float32)))
    short = imu_series(500)
    out = sensors.load_imu(short)
    assert torch.equal(out[:, :500], torch.from_numpy(short.T.astype(np.float32)))
    assert not out[:, 500:].any()


def test_imu_at_another_rate_is_resampled_to_200_hz() -> None:
    t = np.arange(1000) / 100.0  # 10 s at 100 Hz
    series = np.stack([np.sin(2 * np.pi * 0.5 * t + k) for k in range(6)], axis=1)
    out = sensors.load_imu(series, rate_hz=100)
    assert out[:, 1999:].abs().max() == 0  # 999 / 100 s at 200 Hz is 1999 samples
    expected = np.stack([np.sin(2 * np.pi * 0.5 * np.arange(1999) / 200.0 + k) for k in range(6)])
    assert np.abs(out[:, :1999].numpy() - expected).max() < 2e-3


def test_imu_csv_with_and_without_header_and_ego4d_style_columns() -> None:
    series = imu_series(2000)
    plain = "\n".join(",".join(f"{v:.6f}" for v in row) for row in series)
    headed = "ax,ay,az,gx,gy,gz\n" + plain
    expected = sensors.load_imu(np.round(series, 6))
    assert torch.allclose(sensors.load_imu(plain.encode()), expected)
    assert torch.allclose(sensors.load_imu(headed.encode()), expected)
    # Ego4D order: timestamps, then gyroscope before accelerometer; 400 Hz in milliseconds.
    fast = imu_series(4000, seed=1)
    rows = [
        f"{i * 2.5:.1f},{i * 2.5 + 0.3:.1f}," + ",".join(f"{v:.6f}" for v in np.r_[row[3:], row[:3]])
        for i, row in enumerate(fast)
    ]
    ego = "canonical_timestamp_ms,component_timestamp_ms,gyro_x,gyro_y,gyro_z,accl_x,accl_y,accl_z\n"
    out = sensors.load_imu((ego + "\n".join(rows)).encode())
    resampled = sensors.fit_window(sensors.resample_imu(np.round(fast, 6).T, 400.0))
    assert torch.allclose(out, torch.from_numpy(resampled.astype(np.float32)))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"1,2,3,4,5\n6,7,8,9,10\n", "expected 6 columns"),
        (b"ax,ay,az,gx,gy,gz\n", "no samples"),
        (b"", "empty"),
        (b"1,2,3,4,5,x\n1,2,3,4,5,6\n1,2,3,4,5,oops\n", "non-numeric"),
        (b"1,2,3,4,5,6\n1,2,nan,4,5,6\n", "NaN or infinite"),
        (npy_bytes(np.zeros((3, 100))), "shape"),
        (npy_bytes(np.zeros((0, 6))), "no samples"),
    ],
)
def test_bad_imu_input_raises_media_error(data: bytes, reason: str) -> None:
    with pytest.raises(MediaError, match=reason):
        sensors.load_imu(data)


def test_imu_files_are_read_by_path_and_batched(tmp_path: Path) -> None:
    npy, csv = tmp_path / "walk.npy", tmp_path / "walk.csv"
    np.save(npy, imu_series(1200))
    csv.write_text("\n".join(",".join(str(v) for v in row) for row in imu_series(1200)))
    batch = sensors.imu([npy, csv])
    assert batch.shape == (2, 6, 2000)
    assert torch.allclose(batch[0], batch[1])
    assert sensors.imu([]).shape == (0, 6, 2000)
    with pytest.raises(MediaError) as caught:
        sensors.load_imu(tmp_path / "missing.csv")
    assert caught.value.path == str(tmp_path / "missing.csv")
