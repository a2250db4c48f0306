"""IMU recordings -> the kept 10 s at 200 Hz, reading only the samples those need.

The result is exactly ``fit_window(resample_imu(series, rate))`` of the whole series, but memory
stays bounded by the kept window whatever a file claims: of an array (a memory-mapped ``.npy``
file) only the rows around the kept samples are converted; a CSV is streamed twice (every row
checked and its time step kept, then only the rows the window needs parsed); absurd sample rates
are refused. :func:`.sensors.load_imu` opens the file and calls :func:`array_window` or
:func:`csv_window`.
"""

from __future__ import annotations

import csv
import errno
import io
import itertools
import mmap
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from ...errors import MediaError
from ..inputs import IMU_CHANNELS, IMU_SAMPLES

#: IMU: the rate of ImageBind's IMU tower input (its 2000 samples are 10 s at 200 Hz).
IMU_RATE_HZ = 200.0
#: Sample rates a recording may have (Hz); outside, a time column's unit is surely misread.
IMU_RATE_RANGE_HZ = (1.0, 100_000.0)

#: The native rows a window needs (float64 ``(6, R)``), their indices ``(R,)``, the times (s) to
#: interpolate at (None: the rows are the window) and the native rate (Hz).
Window = tuple[np.ndarray, np.ndarray, np.ndarray | None, float]

_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
_ROWS = 1 << 14  # CSV rows parsed at a time (a few MB of Python strings)
_READ = 1 << 22  # bytes read at a time: 4 MiB, a whole number of values of any dtype
_STEPS_IN_MEMORY = 1 << 18  # time steps held in memory (2 MiB) before they go to a temporary file


# ----------------------------------------------------------------------------------- resampling


def _resampled_length(n: int, rate_hz: float, target_hz: float) -> int | None:
    """Samples of ``n`` resampled from ``rate_hz`` to ``target_hz``; None when it is kept as it is."""
    if n < 2 or abs(rate_hz - target_hz) < 1e-6 * target_hz:
        return None
    return int(np.floor((n - 1) * target_hz / rate_hz)) + 1


def resample_imu(series: np.ndarray, rate_hz: float, target_hz: float = IMU_RATE_HZ) -> np.ndarray:
    """Linear interpolation of a ``(C, N)`` series from ``rate_hz`` onto a ``target_hz`` grid."""
    n = series.shape[1]
    count = _resampled_length(n, rate_hz, target_hz)
    if count is None:
        return series
    old = np.arange(n) / rate_hz
    new = np.arange(count) / target_hz
    return np.stack([np.interp(new, old, channel) for channel in series])


def _window(n: int, length: int = IMU_SAMPLES) -> tuple[int, int]:
    """``(start, stop)`` of the centre ``length`` of ``n`` samples (all of them when fewer)."""
    start = (n - length) // 2 if n >= length else 0
    return start, min(n, start + length)


def fit_window(series: np.ndarray, length: int = IMU_SAMPLES) -> np.ndarray:
    """Centre-crop a ``(C, N)`` series to ``length`` samples, or zero-pad it at the end."""
    start, stop = _window(series.shape[1], length)
    if stop - start == length:
        return series[:, start:stop]
    return np.pad(series, ((0, 0), (0, length - series.shape[1])))


def _window_plan(n: int, rate_hz: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Which native rows the kept window needs (sorted indices), and the times (s) its samples are
    interpolated at (None: the native rows are the window). The same samples as
    ``fit_window(resample_imu(series, rate_hz))``, computed from these rows alone."""
    count = _resampled_length(n, rate_hz, IMU_RATE_HZ)
    if count is None:
        return np.arange(*_window(n)), None
    # Element k of arange(start, stop) / rate is element start + k of the full grid, bit for bit.
    times = np.arange(*_window(count)) / IMU_RATE_HZ
    # Each time lies between two native samples; one more row each side covers rounding in floor.
    near = np.floor(times * rate_hz).astype(np.int64)
    return np.unique(np.clip(near[:, None] + np.arange(-1, 3), 0, n - 1)), times


def window_samples(
    values: np.ndarray, rows: np.ndarray, times: np.ndarray | None, rate_hz: float
) -> np.ndarray:
    """``(6, len(rows))`` native values -> the kept samples ``(6, <= 2000)`` float64.

    np.interp only looks at the two grid points around each time, and both are among ``rows``, so
    interpolating on this subset of the grid gives the full grid's values exactly.
    """
    if times is None:
        return values
    old = rows / rate_hz
    return np.stack([np.interp(times, old, channel) for channel in values])


def _sample_rate(given: float | None, found: float | None, name: str) -> float:
    """The rate the series is resampled from: ``given``, else the time column's, else 200 Hz."""
    rate = given or found or IMU_RATE_HZ
    low, high = IMU_RATE_RANGE_HZ
    if not low <= rate <= high:  # NaN fails too
        expected = (
            f"expected {low:g} Hz to {high:g} Hz (the IMU tower reads {IMU_SAMPLES / IMU_RATE_HZ:g} s "
            f"at {IMU_RATE_HZ:g} Hz)"
        )
        if given:
            raise MediaError(name, f"a sample rate of {rate:g} Hz was given; {expected}")
        raise MediaError(
            name,
            f"the time column gives a sample rate of {rate:g} Hz (1 / its median step of {1 / rate:g} s); "
            f"{expected}: is its unit right? (a column name ending in _ns, _us or _ms; else seconds)",
        )
    return rate


# ------------------------------------------------------------------------------------------ CSV


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


class _Steps:
    """A CSV's positive time steps, for their exact median in bounded memory: held as arrays up to
    ``_STEPS_IN_MEMORY``, beyond that written to an anonymous temporary file (8 bytes a step) and
    selected there by a few sequential reads (radix selection on the float bits)."""

    def __init__(self) -> None:
        self.count = 0
        self._held: list[np.ndarray] = []
        self._file: BinaryIO | None = None

    def add(self, steps: np.ndarray) -> None:
        self.count += steps.size
        self._held.append(steps)
        if self._file is None and self.count <= _STEPS_IN_MEMORY:
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile()
        self._file.write(b"".join(held.tobytes() for held in self._held))
        self._held = []

    def median(self) -> float | None:
        """``np.median`` of every step added (None if none): the same one or two middle values."""
        if self._file is None:
            return float(np.median(np.concatenate(self._held), overwrite_input=True)) if self.count else None
        try:
            middle = sorted({(self.count - 1) // 2, self.count // 2})
            return float(np.median([self._select(rank) for rank in middle]))
        finally:
            self._file.close()

    def _bits(self, prefix: int, shift: int) -> Iterator[np.ndarray]:
        """The spilled steps as uint64 bit patterns, only those whose bits above ``shift`` are
        ``prefix`` (all of them for shift 64). Positive floats sort like their bit patterns."""
        assert self._file is not None
        self._file.seek(0)
        while block := self._file.read(_READ):
            bits = np.frombuffer(block, dtype=np.uint64)
            yield bits if shift >= 64 else bits[bits >> np.uint64(shift) == np.uint64(prefix)]

    def _select(self, rank: int) -> float:
        """The ``rank``-th smallest spilled step (0-based), narrowing 16 bits a pass."""
        prefix, shift = 0, 64
        while True:
            shift -= 16
            counts = np.zeros(1 << 16, dtype=np.int64)
            for bits in self._bits(prefix, shift + 16):
                digits = ((bits >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.int64)
                counts += np.bincount(digits, minlength=1 << 16)
            below = np.cumsum(counts)
            digit = int(np.searchsorted(below, rank, side="right"))
            rank -= int(below[digit - 1]) if digit else 0
            prefix = (prefix << 16) | digit
            if shift == 0:  # every candidate has these 64 bits: it is the value
                return float(np.array([prefix], dtype=np.uint64).view(np.float64)[0])
            if counts[digit] <= _STEPS_IN_MEMORY:
                kept = np.concatenate(list(self._bits(prefix, shift))).view(np.float64)
                return float(np.partition(kept, rank)[rank])


@contextmanager
def _csv_rows(source: str | bytes, name: str) -> Iterator[Iterator[list[str]]]:
    """The non-blank rows of a CSV file (path or bytes), decoded as they are read."""
    binary = open(source, "rb") if isinstance(source, str) else io.BytesIO(source)
    # newline="\n" splits lines as the whole decoded text used to be split: a lone "\r" stays put.
    with io.TextIOWrapper(binary, encoding="utf-8-sig", newline="\n") as text:
        yield _non_blank(csv.reader(text), name)


def _non_blank(reader: Iterable[list[str]], name: str) -> Iterator[list[str]]:
    try:
        yield from (row for row in reader if row and any(c.strip() for c in row))
    except UnicodeDecodeError as exc:
        raise MediaError(name, "not a text CSV file or a .npy array") from exc
    except csv.Error as exc:
        raise MediaError(name, f"not a readable CSV file ({exc})") from exc


def _blocks(rows: Iterator[list[str]]) -> Iterator[list[list[str]]]:
    while block := list(itertools.islice(rows, _ROWS)):
        yield block


@dataclass(frozen=True)
class _CsvScan:
    """What the first read of an IMU CSV found."""

    header: bool  # the first row names the columns
    columns: list[int]  # accelerometer xyz, gyroscope xyz
    count: int  # samples (data rows)
    rate_hz: float | None  # 1 / the median positive time step, if there is a time column
    nonfinite: int  # NaN or infinite sensor values


def _scan_csv(source: str | bytes, name: str) -> _CsvScan:
    """Check every row of an IMU CSV, count them and find the rate, holding one block at a time.

    Errors come in the order the whole-file reader gave them: a file that does not decode first,
    then no rows, the wrong columns, a non-numeric or missing value, no samples.
    """
    with _csv_rows(source, name) as rows:
        first = next(rows, None)
        if first is None:
            raise MediaError(name, "the CSV file has no rows")
        header = None if all(_is_number(c) for c in first) else [c.strip() for c in first]
        columns, time_col, unit = _column_roles(header) if header else ([], None, 1.0)
        if not columns:
            width = len(header) if header else len(first)
            if width != IMU_CHANNELS:
                for _ in rows:  # a decoding error further on is still reported first
                    pass
                raise MediaError(
                    name,
                    f"expected 6 columns (accelerometer x y z, gyroscope x y z) or a header naming "
                    f"acc_x.. and gyro_x.. columns, found {width} columns",
                )
            columns, time_col = list(range(IMU_CHANNELS)), None
        wanted = columns + ([time_col] if time_col is not None else [])
        data = rows if header else itertools.chain([first], rows)
        steps, count, nonfinite, last = _Steps(), 0, 0, np.empty(0)
        for block in _blocks(data):
            try:
                table = np.array([[float(row[i]) for i in wanted] for row in block], dtype=np.float64)
            except (ValueError, IndexError) as exc:
                for _ in data:
                    pass
                raise MediaError(name, f"the CSV has a non-numeric or missing value ({exc})") from exc
            count += len(table)
            values = table[:, :IMU_CHANNELS]
            nonfinite += int(values.size - np.count_nonzero(np.isfinite(values)))
            if time_col is not None:
                found = np.diff(np.concatenate([last, table[:, -1]])) * unit
                steps.add(found[np.isfinite(found) & (found > 0)])
                last = table[-1:, -1]
    if count == 0:
        raise MediaError(name, "the CSV file has a header but no samples")
    median = steps.median()
    rate = 1.0 / median if median is not None else None
    return _CsvScan(header is not None, columns, count, rate, nonfinite)


def _csv_values(source: str | bytes, scan: _CsvScan, rows: np.ndarray, name: str) -> np.ndarray:
    """The sensor values of the given data rows (sorted indices), a second read: ``(6, len(rows))``."""
    out = np.zeros((len(rows), IMU_CHANNELS))
    wanted, k = rows.tolist(), 0
    with _csv_rows(source, name) as data:
        if scan.header:
            next(data)
        for i, row in enumerate(data):
            if i == wanted[k]:
                try:
                    out[k] = [float(row[c]) for c in scan.columns]
                except (ValueError, IndexError) as exc:
                    raise MediaError(name, f"the file changed while it was read ({exc}); try again") from exc
                k += 1
                if k == len(wanted):
                    return out.T
    raise MediaError(name, "the file changed while it was read (fewer rows than before); try again")


# ----------------------------------------------------------------------------------------- load


def _data_extents(fd: int, start: int, stop: int, align: int) -> Iterator[tuple[int, int]]:
    """The byte ranges of ``[start, stop)`` that hold data, widened to whole ``align``-byte values.
    The holes of a sparse file read as zeros, which are finite, so they need no scan."""
    pos = start
    while pos < stop:
        try:
            begin = os.lseek(fd, pos, os.SEEK_DATA)
            end = os.lseek(fd, begin, os.SEEK_HOLE)
        except OSError as exc:  # ENXIO: only a hole is left; else the file system cannot tell
            if exc.errno != errno.ENXIO:
                yield pos, stop
            return
        # Whole values only, each scanned once (pos is on a value boundary already).
        begin = max(pos, start + (begin - start) // align * align)
        end = start - (start - end) // align * align
        if begin < stop:
            yield begin, min(end, stop)
        pos = end


def _nonfinite(array: np.ndarray) -> int:
    """NaN and infinite values in ``array``. A memory-mapped file is scanned with plain reads a
    block at a time: touching its mapping would count the whole file in this process's memory."""
    if not np.issubdtype(array.dtype, np.inexact):
        return 0
    if not (isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.filename):
        return int(array.size - np.count_nonzero(np.isfinite(array)))
    bad, stop = 0, array.offset + array.nbytes
    with open(array.filename, "rb") as fh:
        extents = (
            _data_extents(fh.fileno(), array.offset, stop, array.itemsize)
            if hasattr(os, "SEEK_DATA")  # Linux and macOS; elsewhere every byte is read
            else [(array.offset, stop)]
        )
        for begin, end in extents:
            fh.seek(begin)
            while begin < end and (block := fh.read(min(end - begin, _READ))):
                begin += len(block)
                values = np.frombuffer(block, dtype=array.dtype)
                bad += int(values.size - np.count_nonzero(np.isfinite(values)))
    return bad


def _refuse_nonfinite(bad: int, name: str) -> None:
    if bad:
        raise MediaError(name, f"{bad} IMU values are NaN or infinite; fill or drop those samples first")


def array_window(array: np.ndarray, name: str, rate_hz: float | None) -> Window:
    """An ``(N, 6)`` or ``(6, N)`` array -> the native rows the kept window needs, as float64."""
    if array.ndim != 2 or IMU_CHANNELS not in array.shape:
        raise MediaError(name, f"expected an IMU array of shape (N, 6) or (6, N), got {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise MediaError(name, f"expected numbers, got dtype {array.dtype}")
    channels_first = array.shape[0] == IMU_CHANNELS
    n = array.shape[1] if channels_first else array.shape[0]
    if n == 0:
        raise MediaError(name, "the IMU recording has no samples")
    _refuse_nonfinite(_nonfinite(array), name)
    rate = _sample_rate(rate_hz, None, name)
    rows, times = _window_plan(n, rate)
    # Only these rows are read from a memory-mapped file and converted.
    native = array[:, rows] if channels_first else array[rows].T
    return np.asarray(native, dtype=np.float64), rows, times, rate


def csv_window(source: str | bytes, name: str, rate_hz: float | None) -> Window:
    """An IMU CSV -> the native rows the kept window needs, as float64 (two reads of the file)."""
    scan = _scan_csv(source, name)
    _refuse_nonfinite(scan.nonfinite, name)
    rate = _sample_rate(rate_hz, scan.rate_hz, name)
    rows, times = _window_plan(scan.count, rate)
    return _csv_values(source, scan, rows, name), rows, times, rate
