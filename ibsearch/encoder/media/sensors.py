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

A ``.npy`` file given as a path is memory-mapped, so a depth or thermal map over Pillow's pixel limit
is refused before it is read, and of an IMU recording only the rows around the kept 10 s are read
(:mod:`.imu` computes that window).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable
from typing import BinaryIO, Union

import numpy as np
import torch
from PIL import Image

from ...errors import MediaError
from ..inputs import IMAGE_SIZE, IMU_CHANNELS, IMU_SAMPLES
from .decode import Source, checked_source, source_name
from .images import open_image, resize_and_crop
from .imu import (
    IMU_RATE_HZ,
    IMU_RATE_RANGE_HZ,
    array_window,
    csv_window,
    fit_window,
    resample_imu,
    window_samples,
)

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

_NPY_MAGIC = b"\x93NUMPY"
_WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")  # Pillow modes of 16/32-bit maps
_GRAY_MODES = ("1", "L", "LA")


# ------------------------------------------------------------------------------------- reading


def _name(src: SensorSource) -> str:
    return "<array>" if isinstance(src, np.ndarray) else source_name(src)


def _load_npy(file: str | BinaryIO, name: str) -> np.ndarray:
    try:
        # A path is memory-mapped: nothing is read until values are used.
        array = np.load(file, mmap_mode="r" if isinstance(file, str) else None, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/EOFError/OSError for damaged files
        raise MediaError(name, f"not a readable .npy array ({exc})") from exc
    if not isinstance(array, np.ndarray):
        raise MediaError(name, "expected a single .npy array, got an archive")
    return array


def _open_file(src: Source, name: str) -> np.ndarray | str | bytes:
    """A sensor file -> its ``.npy`` array, or else its checked path or bytes for another decoder.

    A ``.npy`` path is memory-mapped (read-only, no data read yet); bytes and open binary files are
    read whole, as they must be. Raises :class:`MediaError` for a missing, empty or damaged file.
    """
    source = checked_source(src, name)
    if isinstance(source, str):
        with open(source, "rb") as fh:
            is_npy = fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC
        return _load_npy(source, name) if is_npy else source
    data = source.read()
    if not data:
        raise MediaError(name, "empty input (0 bytes)")
    return _load_npy(io.BytesIO(data), name) if data.startswith(_NPY_MAGIC) else data


def _array_or_image(src: SensorSource, name: str) -> np.ndarray | Image.Image:
    if isinstance(src, np.ndarray):
        return src
    found = _open_file(src, name)
    if not isinstance(found, np.ndarray):
        img = open_image(found, name)
        if img.width == 0 or img.height == 0:
            raise MediaError(name, "image has zero size")
        return img
    # The image rule (Pillow's decompression-bomb limit), checked before any value is read.
    limit = Image.MAX_IMAGE_PIXELS
    if limit and found.size > limit:
        raise MediaError(
            name,
            f"the .npy map has {found.size:,} values (shape {found.shape}), more than Pillow's "
            f"decompression-bomb limit of {limit:,} pixels; if you trust this file, raise "
            "PIL.Image.MAX_IMAGE_PIXELS",
        )
    return found


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

    Raises :class:`MediaError` for unreadable files, colour images, arrays that are not 2-D maps,
    ``.npy`` maps over ``PIL.Image.MAX_IMAGE_PIXELS`` values, and depth with no valid reading at all
    (some holes are fine: they count as far).
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
    if not disparity and not np.any(np.isfinite(values) & (values > 0)):
        raise MediaError(
            name,
            "the depth map has no valid reading (every value is 0, negative, NaN or infinite, as depth "
            "sensors write for holes), so there is nothing to encode; is it the right file?",
        )
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

    Raises :class:`MediaError` for unreadable files, arrays that are not 2-D maps, ``.npy`` maps
    over ``PIL.Image.MAX_IMAGE_PIXELS`` values, and maps with no finite value.
    """
    name = name or _name(src)
    source = _array_or_image(src, name)
    if isinstance(source, Image.Image) and source.mode not in _WIDE_MODES:
        gray = resize_and_crop(source.convert("L"))
        return torch.from_numpy(np.asarray(gray, dtype=np.float32) / np.float32(255))[None]
    values = np.asarray(source) if isinstance(source, Image.Image) else _plane(source, name)
    values = values.astype(np.float64)
    if not np.isfinite(values).any():
        raise MediaError(name, "the thermal map has no finite value (every value is NaN or infinite)")
    # Clipped like the 8-bit path, whose uint8 resize cannot overshoot either.
    return _to_tensor(stretch(values)).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------------------- IMU


def load_imu(src: SensorSource, *, name: str | None = None, rate_hz: float | None = None) -> torch.Tensor:
    """An IMU recording -> ImageBind's IMU input ``(6, 2000)`` float32.

    ``.npy`` arrays (or ndarrays) of shape ``(N, 6)`` or ``(6, N)``; ``.csv`` files with 6 numeric
    columns (optional header), or a header naming ``acc*_x/y/z`` and ``gyro*_x/y/z`` columns among
    others (e.g. Ego4D's). Channels: accelerometer x, y, z in m/s^2, then gyroscope x, y, z in
    rad/s. The series is resampled to 200 Hz (linear interpolation) from ``rate_hz``, or from the
    rate of a time column (``*_ns``, ``*_us``, ``*_ms`` or seconds); without either it is taken to
    be 200 Hz already. Then 2000 samples (10 s) are kept from the middle, or the end is zero-padded.
    Only the rows those samples need are converted (see :mod:`.imu`), so memory does not grow with
    the recording.

    Raises :class:`MediaError` for a wrong channel count, no samples, NaN/infinite values, or a
    sample rate outside :data:`IMU_RATE_RANGE_HZ` (1 Hz to 100 kHz).
    """
    name = name or _name(src)
    found = src if isinstance(src, np.ndarray) else _open_file(src, name)
    if isinstance(found, np.ndarray):
        values, rows, times, rate = array_window(found, name, rate_hz)
    else:
        values, rows, times, rate = csv_window(found, name, rate_hz)
    # Judged on the rows read: all of them for recordings of up to 10 s at 200 Hz.
    accel = float(np.median(np.linalg.norm(values[:3], axis=0)))
    if 0.5 < accel < 2.0:
        log.warning("%s: accelerometer magnitude %.2f looks like g, not m/s^2 (x 9.80665?)", name, accel)
    series = fit_window(window_samples(values, rows, times, rate))
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


# Re-exported from .imu, where the IMU window is computed.
__all__ = [
    "IMU_RATE_HZ",
    "IMU_RATE_RANGE_HZ",
    "SensorSource",
    "depth",
    "disparity_from_depth",
    "fit_window",
    "imu",
    "load_depth",
    "load_imu",
    "load_thermal",
    "normalize_disparity",
    "resample_imu",
    "stretch",
    "thermal",
]
