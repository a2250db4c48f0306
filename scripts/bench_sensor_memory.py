#!/usr/bin/env python3
"""IMU loading memory benchmark: the three hostile files of the "unbounded memory on small inputs"
report, each loaded with ``sensors.load_imu`` in a fresh process, next to what loading them whole
(the loader before the fix) would need.

Usage:  .venv/bin/python scripts/bench_sensor_memory.py [--csv-mb 450] [--npy-gib 7] [--folder DIR]

The files go to a temporary folder (or ``--folder``), removed afterwards unless ``--keep``:
  * a 2 KB CSV whose time column steps 5000 s (a rate of 0.0002 Hz);
  * a 450 MB CSV at 200 Hz with a jittered time column (real data, about 450 MB of disk);
  * a 7 GiB ``(N, 6)`` float32 ``.npy`` of zeros, written sparse (a header and a hole: no disk).

The whole-file figures are estimates from array and object sizes, not runs (running them would
need 3-30 GB; on a 20 MB CSV and a 256 MiB .npy, where it could be run, the estimate came within
10% of the measured peak): the old loader read the file whole, held every CSV row as Python strings, then a
float64 copy of everything, and resampled the entire series before keeping 10 s of it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HEADER = "timestamp,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z"
ROW_FORMAT = ["%.6f"] + ["%.5f"] * 6

# Loads one file in this fresh interpreter and reports its peak resident memory (VmHWM, which
# unlike getrusage's ru_maxrss is not inherited across fork and exec) before and after.
_LOAD = r"""
import json, sys, time
from ibsearch.encoder.media import sensors
from ibsearch.errors import MediaError
def peak_kb():
    with open("/proc/self/status") as status:
        return int(next(l for l in status if l.startswith("VmHWM")).split()[1])
base = peak_kb()
start = time.perf_counter()
try:
    result = "shape " + "x".join(map(str, sensors.load_imu(sys.argv[1]).shape))
except MediaError as exc:
    result = "MediaError: " + exc.reason
wall = time.perf_counter() - start
print(json.dumps({"base_kb": base, "peak_kb": peak_kb(), "wall": wall, "result": result}))
"""


def write_slow_csv(path: Path) -> dict:
    """About 2 KB: 30 rows 5000 s apart. The whole-file loader resampled 145 000 s to 200 Hz."""
    rows = 30
    times = np.arange(rows) * 5000.0
    _write_csv(path, times, np.tile([0.1, 0.2, 9.8, 0.01, 0.02, 0.03], (rows, 1)))
    count = int(np.floor((rows - 1) * 200.0 / (1 / 5000.0))) + 1
    # A grid of `count` times, 6 interpolated channels and their stack: 13 float64 arrays.
    return {"rows": rows, "whole_bytes": 13 * 8 * count, "whole_how": f"resample {count:,} samples"}


def write_long_csv(path: Path, megabytes: int) -> dict:
    """A 200 Hz recording with a jittered time column, written a minute at a time."""
    rng = np.random.default_rng(0)
    rows, block = 0, 12_000
    with path.open("w") as out:
        out.write(HEADER + "\n")
        while out.tell() < megabytes * 1_000_000:
            times = (rows + np.arange(block)) / 200.0 + rng.normal(0, 2e-4, block)
            values = np.concatenate(
                [[0, 0, 9.81] + rng.normal(0, 0.5, (block, 3)), rng.normal(0, 0.2, (block, 3))], 1
            )
            np.savetxt(out, np.column_stack([times, values]), fmt=ROW_FORMAT, delimiter=",")
            rows += block
    size = path.stat().st_size
    # Whole file, at its peak (building the table): the bytes and their decoded text, each row as a
    # list of 7 str and as a list of 7 floats (plus the pointers to both), and the float64 table.
    with path.open() as fh:
        fh.readline()
        cells = fh.readline().strip().split(",")
    as_text = sys.getsizeof(cells) + sum(sys.getsizeof(c) for c in cells)
    floats = [float(c) for c in cells]
    as_floats = sys.getsizeof(floats) + sum(sys.getsizeof(f) for f in floats)
    whole = 2 * size + rows * (as_text + as_floats + 2 * 8 + 7 * 8)
    return {
        "rows": rows,
        "whole_bytes": whole,
        "whole_how": f"{as_text + as_floats} B of Python objects a row",
    }


def write_sparse_npy(path: Path, gibibytes: float) -> dict:
    """``(N, 6)`` float32 zeros: the header, then a hole (nothing written, so no disk used)."""
    rows = int(gibibytes * (1 << 30)) // 24
    mapped = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, 6))
    size = mapped.offset + mapped.nbytes
    del mapped
    os.truncate(path, size)
    # Whole file: its bytes, np.load's copy of them, the float64 series, its NaN mask (a byte a
    # value) and the temporaries of the accelerometer norm (3 squared channels and their sum).
    whole = 2 * size + rows * (6 * 8 + 6 + 3 * 8 + 8)
    return {"rows": rows, "whole_bytes": whole, "whole_how": "bytes, a copy, float64, mask, norm"}


def _write_csv(path: Path, times: np.ndarray, values: np.ndarray) -> None:
    with path.open("w") as out:
        out.write(HEADER + "\n")
        np.savetxt(out, np.column_stack([times, values]), fmt=ROW_FORMAT, delimiter=",")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)"
    return next(
        (line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line), "unknown"
    )


def load_in_fresh_process(path: Path) -> dict:
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", _LOAD, str(path)], capture_output=True, text=True, check=False, env=env
    )
    if done.returncode != 0:
        return {"base_kb": 0, "peak_kb": 0, "wall": float("nan"), "result": "crashed: " + done.stderr[-300:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def size(n_bytes: float) -> str:
    """Bytes in the largest binary unit that keeps the number at least 1."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes:.0f} B"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--csv-mb", type=int, default=450, help="size of the long CSV (MB)")
    parser.add_argument("--npy-gib", type=float, default=7.0, help="size of the sparse .npy (GiB)")
    parser.add_argument("--folder", type=Path, help="where to write the files (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the files afterwards")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench_sensor_", dir=args.folder))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"CPU: {cpu_model()}; {os.cpu_count()} CPUs; load average (1, 5, 15 min) {load}")
    print(f"files in {folder}")
    files = {
        "2 KB CSV, 5000 s steps": (folder / "slow.csv", write_slow_csv),
        f"{args.csv_mb} MB CSV at 200 Hz": (folder / "long.csv", lambda p: write_long_csv(p, args.csv_mb)),
        f"{args.npy_gib:g} GiB sparse .npy": (
            folder / "huge.npy",
            lambda p: write_sparse_npy(p, args.npy_gib),
        ),
    }
    print(
        f"{'file':<24} {'size':>9} {'on disk':>9} {'rows':>12} {'wall':>8} {'peak RSS':>9} "
        f"{'load adds':>9} {'whole-file (est.)':>17}"
    )
    notes = []
    try:
        for label, (path, write) in files.items():
            facts = write(path)
            stat = path.stat()
            run = load_in_fresh_process(path)
            print(
                f"{label:<24} {size(stat.st_size):>9} {size(stat.st_blocks * 512):>9} {facts['rows']:>12,} "
                f"{run['wall']:>7.2f}s {size(run['peak_kb'] * 1024):>9} "
                f"{size((run['peak_kb'] - run['base_kb']) * 1024):>9} {size(facts['whole_bytes']):>17}"
            )
            notes.append(f"  {label}: {run['result']} (whole-file estimate: {facts['whole_how']})")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print("\n".join(notes))
    print(
        "peak RSS: VmHWM of the fresh process, which imports Python, numpy, torch and ibsearch first; "
        "'load adds': the peak minus the VmHWM just before load_imu.\n"
        "whole-file: estimated from array and object sizes, not run (checked against a run of the old "
        "loader on a 20 MB CSV and a 256 MiB .npy: 9% and 1% under what it took)"
    )


if __name__ == "__main__":
    main()
