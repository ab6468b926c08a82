#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the whole test suite, then the linters.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# numba caches compiled kernels; keep that cache inside the checkout.
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.venv/numba-cache}"
status=0
ruff check netanomd tests benchmarks || status=1
mypy || status=1
pytest -q -p no:cacheprovider "$@" || status=$?
exit $status
