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
# The tests need no GPU: take torch from PyTorch's CPU index (PyPI's Linux wheels are CUDA builds of
# several GB). Where that index cannot be reached, pip falls back to the other indexes it knows.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q -c constraints.txt torch --index-url https://download.pytorch.org/whl/cpu \
    || .venv/bin/python -m pip install -q -c constraints.txt torch
fi
# The ray extra: the cluster-ingest tests run a real local Ray runtime.
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev,ray]'
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
