#!/usr/bin/env bash
# The README's test command: set up (or refresh) .venv, then lint, type-check and run the test suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# The tests need no GPU: torch as the README installs it, from PyTorch's CPU index where it answers
# (its +cpu build wins; PyPI's Linux wheels are CUDA builds of several GB), else from PyPI.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q -c constraints.txt torch --extra-index-url https://download.pytorch.org/whl/cpu
fi
# The ray extra: the cluster-ingest tests run a real local Ray runtime; documents: PDFs; pictures: HEIC,
# JPEG XL, SVG, RAW; mcp: ibsearch mcp, driven by the SDK's client.
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev,ray,documents,pictures,mcp]'
.venv/bin/ruff check ibsearch tests scripts
# The formatter too: the `# fmt: skip` markers are the only places laid out by hand.
.venv/bin/ruff format --check ibsearch tests scripts
.venv/bin/mypy ibsearch
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests (exit 5)" >&2
  exit 1
fi
exit "$rc"
