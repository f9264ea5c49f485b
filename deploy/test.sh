#!/usr/bin/env bash
# Set up this host, then run every check CI runs: lint, types, import contracts, tests.
# Extra arguments go to pytest: `sudo deploy/test.sh -k scheduling -x`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TASKYARD_VENV:-$REPO/.venv}"

step() { printf '\n==> %s\n' "$*"; }

step "setup host"
bash "$REPO/deploy/setup-host.sh"

cd "$REPO"
# The venv's tools first, so that a ruff or mypy elsewhere on PATH cannot answer for them.
export PATH="$VENV/bin:$PATH"

step "ruff check ."
ruff check .

step "mypy models controller api taskyard"
mypy models controller api taskyard

step "lint-imports"
lint-imports

step "pytest $*"
pytest "$@"
