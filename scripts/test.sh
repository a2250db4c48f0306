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
# constraints.txt pins the CPU torch wheel; an open range would pull several GB of CUDA packages.
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
.venv/bin/ruff check ibsearch tests scripts
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
