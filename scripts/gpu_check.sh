#!/usr/bin/env bash
# The GPU check (issue 22): on a machine with an NVIDIA GPU, run the GPU tests and the ingest and search
# benchmarks in under 8 minutes and print one table (images/s, audio files/s, search p50 at 1M, bf16
# cosine). Installs nothing beyond the project: torch with CUDA must already be there (or come from
# PyPI, whose Linux wheels are CUDA builds). See DEVELOPERS.md.
# Usage: bash scripts/gpu_check.sh        (PYTHON=... picks the interpreter; default .venv, else python3;
#        JPEGS=folder uses those JPEGs instead of downloading Debian's: see scripts/gpu_carry.sh)
# Exit codes: 0 all passed, 1 a step failed, 2 no usable NVIDIA GPU here.
set -uo pipefail
# Checked before anything else, with shell builtins only: without a GPU there is nothing to check.
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check: nvidia-smi not found: no NVIDIA GPU (or driver) on this machine; run it where one is" >&2
  exit 2
fi
if ! gpu=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null) || [ -z "$gpu" ]; then
  echo "gpu_check: nvidia-smi failed: no NVIDIA GPU usable here (driver not loaded?); see 'nvidia-smi'" >&2
  exit 2
fi
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
WORK=$(mktemp -d /tmp/ibsearch-gpu-check.XXXXXX)
echo "GPU: ${gpu%%$'\n'*}; python: $PY; work folder: $WORK" >&2
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: $PY has no torch that sees the GPU; install a CUDA build of torch first (README, GPUs)" >&2
  exit 2
fi
# The project itself, and only what it declares (no constraints file: it pins the CPU build of torch).
if ! "$PY" -c "import ibsearch, faiss, av, pytest" 2>/dev/null; then
  "$PY" -m pip install -q -e '.[dev]' || { echo "gpu_check: installing the project failed" >&2; exit 1; }
fi
start=$SECONDS
status=0
# The tests that run on CUDA when it is there: every device here (tests/test_devices_here.py), and
# the encoder's precision rules (tests/test_runtime.py).
timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_devices_here.py tests/test_runtime.py \
  > "$WORK/tests.txt" 2>&1 || status=1
tail -n 3 "$WORK/tests.txt" >&2
# Ingest: real JPEGs end to end against the tower alone (bf16 and fp32), and generated WAVs.
# JPEGS=folder: pictures brought along (a machine without network cannot download Debian's).
timeout 240 "$PY" scripts/bench_ceiling.py --device cuda --precisions bf16,fp32 --images 128 --batch 32 \
  --audio 64 ${JPEGS:+--jpegs "$JPEGS"} --work "$WORK/ingest" --json-out "$WORK/ingest.json" \
  > "$WORK/ingest.txt" 2>&1 || status=1
# Search at 1M x 1024 on the GPU, the bf16 cosine, and the table.
timeout 60 "$PY" scripts/gpu_check.py --ingest "$WORK/ingest.json" --tests "$WORK/tests.txt" || status=1
echo "gpu_check: $((SECONDS - start)) s; logs in $WORK" >&2
exit $status
