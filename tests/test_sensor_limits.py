"""Sensor loaders stay bounded whatever a file claims: IMU rates, huge IMU files, huge or empty maps.

The IMU window must come out bit for bit as the whole-array computation gave it
(``fit_window(resample_imu(series, rate))``), which the tests here recompute as the reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ibsearch.encoder.media import sensors
from ibsearch.errors import MediaError

HEADER = "timestamp,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z"


def imu_rows(n: int, seed: int = 0) -> np.ndarray:
    """(n, 6): gravity-like accelerometer (m/s^2) and small gyroscope rates (rad/s)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([[0.0, 0.0, 9.81] + rng.normal(0, 0.5, (n, 3)), rng.normal(0, 0.2, (n, 3))], axis=1)


def write_csv(path: Path, times: np.ndarray, values: np.ndarray, header: str = HEADER) -> None:
    with path.open("w") as out:
        out.write(header + "\n")
        np.savetxt(out, np.column_stack([times, values]), fmt=["%.6f"] + ["%.5f"] * 6, delimiter=",")


def reference(series: np.ndarray, rate_hz: float) -> torch.Tensor:
    """The whole-array computation: ``(N, 6)`` -> float64 ``(6, N)`` -> resampled -> centre window."""
    full = np.asarray(series.T, dtype=np.float64)
    return torch.from_numpy(
        np.ascontiguousarray(sensors.fit_window(sensors.resample_imu(full, rate_hz)), dtype=np.float32)
    )


def median_rate(times: np.ndarray, unit: float = 1.0) -> float:
    """The rate a time column gives: 1 / the median of its positive finite steps (in ``unit`` s)."""
    steps = np.diff(times) * unit
    return 1.0 / float(np.median(steps[np.isfinite(steps) & (steps > 0)]))


def sparse_npy(path: Path, shape: tuple[int, ...], dtype: type = np.float32) -> None:
    """A .npy file of zeros of ``shape`` that takes (almost) no disk: its header, then a hole."""
    mapped = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    size = mapped.offset + mapped.nbytes
    del mapped  # nothing was written to the mapping, so no page of it reaches the disk
    os.truncate(path, size)


def needs_sparse_files(folder: Path) -> None:
    probe = folder / "probe.bin"
    with probe.open("wb") as fh:
        fh.truncate(64 << 20)
    sparse = probe.stat().st_blocks * 512 < 1 << 20
    probe.unlink()
    assert sparse, f"the file system of {folder} does not keep sparse files sparse; this test needs one"


# ------------------------------------------------------------------------------------ IMU rates


def test_a_2_kb_csv_whose_time_column_steps_5000_s_is_refused_quickly_naming_the_rate(tmp_path: Path) -> None:
    path = tmp_path / "slow.csv"
    write_csv(path, np.arange(30) * 5000.0, imu_rows(30))
    assert path.stat().st_size < 2048
    start = time.perf_counter()
    with pytest.raises(
        MediaError, match=r"sample rate of 0\.0002 Hz .* expected 1 Hz to 100000 Hz"
    ) as caught:
        sensors.load_imu(path)
    assert time.perf_counter() - start < 2.0
    assert caught.value.path == str(path) and "median step of 5000 s" in str(caught.value)


def test_a_csv_with_steps_of_a_million_seconds_is_refused_naming_the_rate(tmp_path: Path) -> None:
    path = tmp_path / "glacial.csv"
    write_csv(path, np.arange(20) * 1e6, imu_rows(20))
    start = time.perf_counter()
    with pytest.raises(MediaError, match=r"sample rate of 1e-06 Hz"):
        sensors.load_imu(path)
    assert time.perf_counter() - start < 2.0
    # Nanosecond timestamps under a name that says seconds read as a rate of 2e-7 Hz: refused too.
    write_csv(path, np.arange(20) * 5e6, imu_rows(20), header=HEADER.replace("timestamp", "time"))
    with pytest.raises(MediaError, match=r"2e-07 Hz .*_ns, _us or _ms"):
        sensors.load_imu(path)


def test_rates_given_outside_1_hz_to_100_khz_are_refused_and_the_edges_accepted() -> None:
    series = imu_rows(500)
    for rate in (0.5, 2e5, float("nan"), -200.0):
        with pytest.raises(MediaError, match="Hz was given; expected 1 Hz to 100000 Hz"):
            sensors.load_imu(series, rate_hz=rate)
    for rate in (1.0, 1e5):
        assert torch.equal(sensors.load_imu(series, rate_hz=rate), reference(series, rate))


def test_one_long_pause_in_a_recording_does_not_change_its_rate(tmp_path: Path) -> None:
    times = np.arange(3000) / 200.0
    times[1500:] += 1e6  # the median step is still 5 ms
    values = imu_rows(3000)
    path = tmp_path / "pause.csv"
    write_csv(path, times, values)
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    assert median_rate(table[:, 0]) == pytest.approx(200.0)
    assert torch.equal(sensors.load_imu(path), reference(table[:, 1:], median_rate(table[:, 0])))


# ------------------------------------------------------------------------------- IMU memory


# Run in a fresh interpreter so its peak resident memory (VmHWM) measures these loads alone.
_LOAD_IN_A_FRESH_PROCESS = """
import json, sys
import numpy as np
from ibsearch.encoder.media import sensors
def peak_kb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
shapes = {}
for path in sys.argv[1:]:
    out = sensors.load_imu(path)
    np.save(path + ".out.npy", out.numpy())
    shapes[path] = list(out.shape)
print(json.dumps({"peak_kb": peak_kb(), "shapes": shapes}))
"""


def test_a_7_gb_npy_and_a_50_mb_csv_load_in_under_1_gb_with_the_whole_array_result(tmp_path: Path) -> None:
    needs_sparse_files(tmp_path)
    npy = tmp_path / "huge.npy"
    rows = (7 << 30) // 24  # (N, 6) float32: 7 GiB of zeros
    sparse_npy(npy, (rows, 6))
    assert npy.stat().st_size > 7 << 30 and npy.stat().st_blocks * 512 < 1 << 20
    csv = tmp_path / "long.csv"
    n = 800_000  # 200 Hz with jitter, 67 minutes: more time steps than are held in memory
    times = np.arange(n) / 200.0 + np.random.default_rng(1).normal(0, 2e-4, n)
    write_csv(csv, times, imu_rows(n, seed=2))
    assert 40 << 20 < csv.stat().st_size < 60 << 20
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_IN_A_FRESH_PROCESS, str(npy), str(csv)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    report = json.loads(done.stdout)
    assert report["shapes"] == {str(npy): [6, 2000], str(csv): [6, 2000]}
    assert report["peak_kb"] < 1 << 20, f"peak resident memory {report['peak_kb'] / 1024:.0f} MiB"
    assert npy.stat().st_blocks * 512 < 1 << 20  # reading did not fill the hole
    assert not np.load(f"{npy}.out.npy").any()
    table = np.loadtxt(csv, delimiter=",", skiprows=1)
    expected = reference(table[:, 1:], median_rate(table[:, 0]))
    assert torch.equal(torch.from_numpy(np.load(f"{csv}.out.npy")), expected)


def test_a_nan_deep_inside_a_huge_sparse_npy_is_still_found(tmp_path: Path) -> None:
    needs_sparse_files(tmp_path)
    path = tmp_path / "holey.npy"
    rows = (1 << 30) // 24
    sparse_npy(path, (rows, 6))
    mapped = np.load(path, mmap_mode="r+")
    mapped[rows // 7, 4] = np.nan  # far outside the kept middle 10 s
    mapped[rows - 1, 0] = np.inf
    mapped.flush()
    del mapped
    with pytest.raises(MediaError, match="2 IMU values are NaN or infinite"):
        sensors.load_imu(path)


# ------------------------------------------------------------------------ IMU: same results


def ms_csv(path: Path, n: int, rate: float, seed: int) -> tuple[np.ndarray, float]:
    """A CSV with a jittered millisecond time column and columns in Ego4D's order."""
    rng = np.random.default_rng(seed)
    times = (np.arange(n) / rate + rng.normal(0, 0.05 / rate, n)) * 1000.0
    values = imu_rows(n, seed)
    header = "canonical_timestamp_ms,gyro_x,gyro_y,gyro_z,accl_x,accl_y,accl_z"
    write_csv(path, times, np.concatenate([values[:, 3:], values[:, :3]], axis=1), header=header)
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    return np.concatenate([table[:, 4:], table[:, 1:4]], axis=1), median_rate(table[:, 0], 1e-3)


@pytest.mark.parametrize(
    ("n", "rate", "seed"), [(30_000, 400.0, 0), (1500, 120.0, 1), (9_001, 1000.0, 2), (50_000, 99.5, 3)]
)
def test_csv_recordings_give_the_whole_array_result_bit_for_bit(
    tmp_path: Path, n: int, rate: float, seed: int
) -> None:
    path = tmp_path / "ego.csv"
    series, found_rate = ms_csv(path, n, rate, seed)
    assert torch.equal(sensors.load_imu(path), reference(series, found_rate))
    assert torch.equal(sensors.load_imu(path.read_bytes()), reference(series, found_rate))


@pytest.mark.parametrize(
    ("n", "rate", "dtype", "channels_first"),
    [
        (123_457, 200.0, np.float32, False),  # centre crop, no resampling
        (40_000, 100.0, np.float64, True),  # upsampled
        (250_000, 2500.0, np.float32, False),  # downsampled: a few rows of each 12.5
        (700, 50.0, np.int16, True),  # short: zero-padded
        (5, 333.0, np.float16, False),
    ],
)
def test_npy_recordings_give_the_whole_array_result_bit_for_bit(
    tmp_path: Path, n: int, rate: float, dtype: type, channels_first: bool
) -> None:
    series = (imu_rows(n) * (100 if dtype is np.int16 else 1)).astype(dtype)
    path = tmp_path / "walk.npy"
    np.save(path, series.T.copy() if channels_first else series)
    expected = reference(series, rate)
    assert torch.equal(sensors.load_imu(path, rate_hz=rate), expected)
    assert torch.equal(sensors.load_imu(path.read_bytes(), rate_hz=rate), expected)
    assert torch.equal(sensors.load_imu(series, rate_hz=rate), expected)


# --------------------------------------------------------------------------- depth and thermal


def test_depth_and_thermal_npy_maps_over_the_pixel_limit_are_refused_unread(tmp_path: Path) -> None:
    needs_sparse_files(tmp_path)
    side = int(np.sqrt(Image.MAX_IMAGE_PIXELS or 0)) + 10
    path = tmp_path / "huge_map.npy"
    sparse_npy(path, (side, side))
    for load in (sensors.load_depth, sensors.load_thermal):
        with pytest.raises(MediaError, match="decompression-bomb limit") as caught:
            load(path)
        assert caught.value.path == str(path) and f"{side * side:,} values" in str(caught.value)
    assert path.stat().st_blocks * 512 < 1 << 20


@pytest.mark.parametrize(
    "values",
    [
        np.zeros((60, 80), np.float32),
        np.full((60, 80), np.nan, np.float32),
        np.full((60, 80), -1.5),
        np.where(np.eye(60, 80) > 0, np.inf, np.nan),
        np.zeros((1, 60, 80), np.uint16),
    ],
)
def test_a_depth_map_without_a_single_valid_reading_is_refused(tmp_path: Path, values: np.ndarray) -> None:
    path = tmp_path / "blank.npy"
    np.save(path, values)
    with pytest.raises(MediaError, match="no valid reading"):
        sensors.load_depth(path)


def test_an_all_zero_16_bit_depth_png_is_refused_but_a_map_with_holes_loads(tmp_path: Path) -> None:
    path = tmp_path / "blank.png"
    Image.fromarray(np.zeros((60, 80), np.uint16)).save(path)
    with pytest.raises(MediaError, match="no valid reading"):
        sensors.load_depth(path)
    holes = np.full((300, 300), 2.0, np.float32)
    holes[:, 150:] = np.nan
    out = sensors.load_depth(holes)[0]
    far = 0.075 * 518.857901 / 50.0 / 75.0
    assert out[:, -60:].max() == pytest.approx(far, abs=1e-6)


def test_a_thermal_map_without_a_finite_value_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dead.npy"
    for values in (np.full((40, 50), np.nan, np.float32), np.full((40, 50), np.inf)):
        np.save(path, values)
        with pytest.raises(MediaError, match="no finite value"):
            sensors.load_thermal(path)
    partly = np.tile(np.linspace(20.0, 37.0, 50), (40, 1))
    partly[:5] = np.nan
    assert sensors.load_thermal(partly).shape == (1, 224, 224)
