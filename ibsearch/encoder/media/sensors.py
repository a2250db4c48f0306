"""Loaders for ImageBind's depth, thermal and IMU towers.

The reference ships these towers without loaders, so the conventions here are ours, chosen from
what the ImageBind and Omnivore authors published (details and sources in the README):

* depth -> disparity ``baseline * focal / depth`` (Kinect-like constants, as Omnivore did for
  SUN RGB-D), clamped to [0.01, 75] and divided by 75 (Omnivore's ``DepthNorm``), then resized and
  centre-cropped like an image: ``(1, 224, 224)``;
* thermal -> one channel in [0, 1] (8-bit / 255; wider data stretched between its 1st and 99th
  percentiles), resized and cropped like an image, no mean/std: ``(1, 224, 224)``;
* IMU -> accelerometer xyz (m/s^2) then gyroscope xyz (rad/s) at 200 Hz, 2000 samples (10 s):
  longer recordings are centre-cropped, shorter ones zero-padded at the end: ``(6, 2000)``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import torch
from PIL import Image

from ...errors import MediaError
from ..inputs import IMAGE_SIZE, IMU_CHANNELS, IMU_SAMPLES
from .decode import Source, checked_source, source_name
from .images import open_image, resize_and_crop

log = logging.getLogger(__name__)

#: Inputs: a path, the file's bytes, or an open binary file (``.npy`` arrays also as ndarrays).
SensorSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO, np.ndarray]

#: Depth-to-disparity constants: Kinect v1 focal length in pixels (NYU Depth v2 / SUN RGB-D "kv1"
#: intrinsics) and the Kinect stereo baseline in metres, as in Omnivore's SUN RGB-D conversion.
FOCAL_PX = 518.857901
BASELINE_M = 0.075
#: Depth is clipped to this range (metres) before the conversion (Omnivore's script clips to 0.01-50).
DEPTH_RANGE_M = (0.01, 50.0)
#: Omnivore's DepthNorm: disparity clamped to [0.01, 75], then divided by 75.
DISPARITY_RANGE = (0.01, 75.0)
#: Integer depth maps (16-bit PNG/TIFF, integer .npy) are in millimetres unless told otherwise.
DEPTH_UNITS_PER_M = 1000.0

#: Thermal: wider-than-8-bit data is stretched between these percentiles (a camera's auto gain).
THERMAL_PERCENTILES = (1.0, 99.0)

#: IMU: the rate of ImageBind's IMU tower input (its 2000 samples are 10 s at 200 Hz).
IMU_RATE_HZ = 200.0

_NPY_MAGIC = b"\x93NUMPY"
_WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")  # Pillow modes of 16/32-bit maps
_GRAY_MODES = ("1", "L", "LA")
_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


# ------------------------------------------------------------------------------------- reading


def _name(src: SensorSource) -> str:
    return "<array>" if isinstance(src, np.ndarray) else source_name(src)


def _read_bytes(src: Source, name: str) -> bytes:
    source = checked_source(src, name)
    data = Path(source).read_bytes() if isinstance(source, str) else source.read()
    if not data:
        raise MediaError(name, "empty input (0 bytes)")
    return data


def _load_npy(data: bytes, name: str) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/EOFError/OSError for damaged files
        raise MediaError(name, f"not a readable .npy array ({exc})") from exc
    if not isinstance(array, np.ndarray):
        raise MediaError(name, "expected a single .npy array, got an archive")
    return array


def _array_or_image(src: SensorSource, name: str) -> np.ndarray | Image.Image:
    if isinstance(src, np.ndarray):
        return src
    data = _read_bytes(src, name)
    if data.startswith(_NPY_MAGIC):
        return _load_npy(data, name)
    img = open_image(data, name)
    if img.width == 0 or img.height == 0:
        raise MediaError(name, "image has zero size")
    return img


def _plane(array: np.ndarray, name: str) -> np.ndarray:
    """A 2-D map from ``(H, W)``, ``(1, H, W)`` or ``(H, W, 1)``."""
    squeezed = array.squeeze()
    if squeezed.ndim != 2 or min(squeezed.shape) == 0:
        raise MediaError(name, f"expected a single-channel 2-D map, got an array of shape {array.shape}")
    if not (np.issubdtype(squeezed.dtype, np.number) and not np.iscomplexobj(squeezed)):
        raise MediaError(name, f"expected numbers, got dtype {squeezed.dtype}")
    return squeezed


def _to_tensor(plane: np.ndarray) -> torch.Tensor:
    """Float map -> resized and centre-cropped like an image -> ``(1, 224, 224)`` float32."""
    img = resize_and_crop(Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F"))
    return torch.from_numpy(np.array(img, dtype=np.float32))[None]


# --------------------------------------------------------------------------------------- depth


def disparity_from_depth(
    depth_m: np.ndarray, focal_px: float = FOCAL_PX, baseline_m: float = BASELINE_M
) -> np.ndarray:
    """Depth in metres -> disparity in pixels, ``baseline * focal / depth``.

    Depth is clipped to :data:`DEPTH_RANGE_M` first. Missing readings (0, negative, NaN or
    infinite, which depth sensors write for holes) become the far limit instead of a huge disparity.
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    depth = np.clip(np.where(valid, depth, DEPTH_RANGE_M[1]), *DEPTH_RANGE_M)
    return (baseline_m * focal_px / depth).astype(np.float32)


def normalize_disparity(disparity: np.ndarray) -> np.ndarray:
    """Omnivore's ``DepthNorm(max_depth=75, clamp_max_before_scale=True)``: clamp to [0.01, 75], / 75."""
    low, high = DISPARITY_RANGE
    values = np.nan_to_num(np.asarray(disparity, dtype=np.float32), nan=low, posinf=high, neginf=low)
    return (np.clip(values, low, high) / np.float32(high)).astype(np.float32)


def load_depth(
    src: SensorSource,
    *,
    name: str | None = None,
    disparity: bool = False,
    units_per_m: float = DEPTH_UNITS_PER_M,
    focal_px: float = FOCAL_PX,
    baseline_m: float = BASELINE_M,
) -> torch.Tensor:
    """A depth (or disparity) map -> ImageBind's depth input ``(1, 224, 224)`` float32.

    Accepts 16-bit PNG/TIFF depth in millimetres (``units_per_m`` other units per metre), float
    TIFF or float ``.npy`` depth in metres, integer ``.npy`` like 16-bit images, and an ndarray.
    With ``disparity=True`` the values are disparities in pixels instead (no conversion).
    8-bit images are taken as already normalized disparity (bright = near, value / 255), which is
    what monocular depth estimators usually save. The normalized disparity (see
    :func:`normalize_disparity`) is resized and centre-cropped like an image (bicubic).

    Raises :class:`MediaError` for unreadable files, colour images and arrays that are not 2-D maps.
    """
    name = name or _name(src)
    source = _array_or_image(src, name)
    if isinstance(source, Image.Image):
        if source.mode in _GRAY_MODES:
            plane = np.asarray(source.convert("L"), dtype=np.float32) / np.float32(255)
            return _to_tensor(plane)
        if source.mode not in _WIDE_MODES:
            raise MediaError(
                name,
                f"a {source.mode} image is not a depth map; save depth as a 16-bit single-channel "
                "PNG/TIFF (millimetres) or a .npy array (metres)",
            )
        values = np.asarray(source)
    else:
        values = _plane(source, name)
    if np.issubdtype(values.dtype, np.integer):
        values = values.astype(np.float64) / units_per_m
    values = values.astype(np.float64)
    if disparity:
        plane = normalize_disparity(values)
    else:
        plane = normalize_disparity(disparity_from_depth(values, focal_px, baseline_m))
    return _to_tensor(plane)


# ------------------------------------------------------------------------------------- thermal


def stretch(values: np.ndarray, percentiles: tuple[float, float] = THERMAL_PERCENTILES) -> np.ndarray:
    """Map ``values`` linearly so the given percentiles become 0 and 1, clipped; NaN -> 0."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, dtype=np.float32)
    low, high = np.percentile(finite, percentiles)
    scale = high - low if high > low else 1.0
    out = (np.nan_to_num(values.astype(np.float64), nan=low) - low) / scale
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def load_thermal(src: SensorSource, *, name: str | None = None) -> torch.Tensor:
    """A thermal image -> ImageBind's thermal input ``(1, 224, 224)`` float32 in [0, 1].

    8-bit images (greyscale, or colour/palette converted to luma as LLVIP's 3-channel grey JPEGs
    need) are resized and centre-cropped like photos, then divided by 255. Wider data (16-bit
    radiometric counts, float TIFF or ``.npy`` temperatures) is stretched between its 1st and 99th
    percentiles first (see :func:`stretch`). No mean/std normalization follows.
    """
    name = name or _name(src)
    source = _array_or_image(src, name)
    if isinstance(source, Image.Image) and source.mode not in _WIDE_MODES:
        gray = resize_and_crop(source.convert("L"))
        return torch.from_numpy(np.asarray(gray, dtype=np.float32) / np.float32(255))[None]
    values = np.asarray(source) if isinstance(source, Image.Image) else _plane(source, name)
    # Clipped like the 8-bit path, whose uint8 resize cannot overshoot either.
    return _to_tensor(stretch(values.astype(np.float64))).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------------------- IMU


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _column_roles(header: list[str]) -> tuple[list[int], int | None, float]:
    """Pick accelerometer xyz, gyroscope xyz and an optional time column by their names."""
    keys = [re.sub(r"[^a-z0-9]", "", h.lower()) for h in header]
    acc = {k[-1]: i for i, k in enumerate(keys) if k.startswith("acc") and k[-1:] in "xyz"}
    gyro = {k[-1]: i for i, k in enumerate(keys) if k.startswith("gyr") and k[-1:] in "xyz"}
    time_col, unit = None, 1.0
    for i, h in enumerate(header):
        words = re.split(r"[^a-z]+", h.lower())
        if "time" in h.lower() or "timestamp" in words or words[:1] in (["t"], ["ts"]):
            time_col = i
            unit = next((_TIME_UNITS[w] for w in reversed(words) if w in _TIME_UNITS), 1.0)
            break
    if len(acc) == 3 and len(gyro) == 3:
        return [acc[a] for a in "xyz"] + [gyro[a] for a in "xyz"], time_col, unit
    return [], time_col, unit


def _read_csv(data: bytes, name: str) -> tuple[np.ndarray, float | None]:
    """Rows of an IMU CSV -> ``(6, N)`` and the sample rate found from a time column, if any."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MediaError(name, "not a text CSV file or a .npy array") from exc
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        raise MediaError(name, "the CSV file has no rows")
    header: list[str] | None = None
    if not all(_is_number(c) for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    width = len(header) if header else len(rows[0]) if rows else 0
    columns, time_col, unit = _column_roles(header) if header else ([], None, 1.0)
    if not columns:
        if width != IMU_CHANNELS:
            raise MediaError(
                name,
                f"expected 6 columns (accelerometer x y z, gyroscope x y z) or a header naming acc_x.. "
                f"and gyro_x.. columns, found {width} columns",
            )
        columns, time_col = list(range(IMU_CHANNELS)), None
    wanted = columns + ([time_col] if time_col is not None else [])
    try:
        table = np.array([[float(row[i]) for i in wanted] for row in rows], dtype=np.float64)
    except (ValueError, IndexError) as exc:
        raise MediaError(name, f"the CSV has a non-numeric or missing value ({exc})") from exc
    if table.shape[0] == 0:
        raise MediaError(name, "the CSV file has a header but no samples")
    rate = None
    if time_col is not None:
        steps = np.diff(table[:, -1]) * unit
        steps = steps[np.isfinite(steps) & (steps > 0)]
        if steps.size:
            rate = 1.0 / float(np.median(steps))
    return table[:, :IMU_CHANNELS].T, rate


def resample_imu(series: np.ndarray, rate_hz: float, target_hz: float = IMU_RATE_HZ) -> np.ndarray:
    """Linear interpolation of a ``(C, N)`` series from ``rate_hz`` onto a ``target_hz`` grid."""
    n = series.shape[1]
    if n < 2 or abs(rate_hz - target_hz) < 1e-6 * target_hz:
        return series
    count = int(np.floor((n - 1) * target_hz / rate_hz)) + 1
    old = np.arange(n) / rate_hz
    new = np.arange(count) / target_hz
    return np.stack([np.interp(new, old, channel) for channel in series])


def fit_window(series: np.ndarray, length: int = IMU_SAMPLES) -> np.ndarray:
    """Centre-crop a ``(C, N)`` series to ``length`` samples, or zero-pad it at the end."""
    n = series.shape[1]
    if n >= length:
        start = (n - length) // 2
        return series[:, start : start + length]
    return np.pad(series, ((0, 0), (0, length - n)))


def load_imu(src: SensorSource, *, name: str | None = None, rate_hz: float | None = None) -> torch.Tensor:
    """An IMU recording -> ImageBind's IMU input ``(6, 2000)`` float32.

    ``.npy`` arrays (or ndarrays) of shape ``(N, 6)`` or ``(6, N)``; ``.csv`` files with 6 numeric
    columns (optional header), or a header naming ``acc*_x/y/z`` and ``gyro*_x/y/z`` columns among
    others (e.g. Ego4D's). Channels: accelerometer x, y, z in m/s^2, then gyroscope x, y, z in
    rad/s. The series is resampled to 200 Hz (linear interpolation) from ``rate_hz``, or from the
    rate of a time column (``*_ns``, ``*_us``, ``*_ms`` or seconds); without either it is taken to
    be 200 Hz already. Then 2000 samples (10 s) are kept from the middle, or the end is zero-padded.

    Raises :class:`MediaError` for a wrong channel count, no samples, or NaN/infinite values.
    """
    name = name or _name(src)
    found_rate = None
    if isinstance(src, np.ndarray):
        array = src
    else:
        data = _read_bytes(src, name)
        if data.startswith(_NPY_MAGIC):
            array = _load_npy(data, name)
        else:
            array, found_rate = _read_csv(data, name)
    if array.ndim != 2 or IMU_CHANNELS not in array.shape:
        raise MediaError(name, f"expected an IMU array of shape (N, 6) or (6, N), got {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise MediaError(name, f"expected numbers, got dtype {array.dtype}")
    series = np.asarray(array if array.shape[0] == IMU_CHANNELS else array.T, dtype=np.float64)
    if series.shape[1] == 0:
        raise MediaError(name, "the IMU recording has no samples")
    if not np.isfinite(series).all():
        bad = int(series.size - np.count_nonzero(np.isfinite(series)))
        raise MediaError(name, f"{bad} IMU values are NaN or infinite; fill or drop those samples first")
    accel = float(np.median(np.linalg.norm(series[:3], axis=0)))
    if 0.5 < accel < 2.0:
        log.warning("%s: accelerometer magnitude %.2f looks like g, not m/s^2 (x 9.80665?)", name, accel)
    rate = rate_hz or found_rate or IMU_RATE_HZ
    series = fit_window(resample_imu(series, rate))
    return torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32))


# -------------------------------------------------------------------------------------- batches


def depth(items: Iterable[SensorSource]) -> torch.Tensor:
    """Batch of depth maps -> ``(N, 1, 224, 224)``; the first bad item raises MediaError."""
    tensors = [load_depth(item) for item in items]
    return torch.stack(tensors) if tensors else torch.empty(0, 1, IMAGE_SIZE, IMAGE_SIZE)


def thermal(items: Iterable[SensorSource]) -> torch.Tensor:
    """Batch of thermal images -> ``(N, 1, 224, 224)``; the first bad item raises MediaError."""
    tensors = [load_thermal(item) for item in items]
    return torch.stack(tensors) if tensors else torch.empty(0, 1, IMAGE_SIZE, IMAGE_SIZE)


def imu(items: Iterable[SensorSource]) -> torch.Tensor:
    """Batch of IMU recordings -> ``(N, 6, 2000)``; the first bad item raises MediaError."""
    tensors = [load_imu(item) for item in items]
    return torch.stack(tensors) if tensors else torch.empty(0, IMU_CHANNELS, IMU_SAMPLES)
