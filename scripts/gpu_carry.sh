#!/usr/bin/env bash
# Prepares here what scripts/gpu_check.sh needs on this workplace's lent GPU machines, which hold
# PyTorch but reach no network: wheels of the project's other compiled dependencies for their Python
# (3.12, x86-64) and real JPEGs, in folders that git ignores, for the device tool to carry. The working
# tree and what is carried may not pass 64 MiB in one call, so PyAV (35 MB) travels in a call of its
# own (DEVELOPERS.md, "The GPU check on a lent machine").
# Usage: bash scripts/gpu_carry.sh [JPEG_COUNT]   (default 32; PYTHON=... picks the interpreter)
# Makes: .carry-av/ (the PyAV wheel), .carry/wheels/ (faiss-cpu, platformdirs, ftfy, wcwidth),
#        .carry/jpegs/ (JPEG_COUNT real JPEGs from Debian packages, as bench_ceiling.py picks them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
COUNT=${1:-32}
for folder in .carry-av .carry .site; do
  grep -qx "/$folder/" .git/info/exclude 2>/dev/null || echo "/$folder/" >> .git/info/exclude
done
rm -rf .carry-av .carry
mkdir -p .carry-av .carry/wheels .carry/jpegs
tags=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
"$PY" -m pip download -q "${tags[@]}" -d .carry-av av
"$PY" -m pip download -q "${tags[@]}" -d .carry/wheels faiss-cpu platformdirs ftfy wcwidth
"$PY" - "$COUNT" <<'EOF'
import shutil, sys, tempfile
from pathlib import Path

sys.path.insert(0, "scripts")
from bench_ceiling import real_jpegs

count = int(sys.argv[1])
work = Path(tempfile.gettempdir()) / "ibsearch-gpu-carry"
for i, jpeg in enumerate(dict.fromkeys(real_jpegs(work, None, count))):
    shutil.copyfile(jpeg, Path(".carry/jpegs") / f"{i:03d}-{jpeg.name}")
EOF
du -sh .carry-av .carry/wheels .carry/jpegs >&2
echo "gpu_carry: ready; the two calls are in DEVELOPERS.md" >&2
