#!/usr/bin/env bash
# Set up this host, then run every check CI runs: lint, types, import contracts, tests.
# Extra arguments go to pytest: `sudo deploy/test.sh -k scheduling -x`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TASKYARD_VENV:-$REPO/.venv}"

step() { printf '\n==> %s\n' "$*"; }

step "setup host (with the test tools)"
bash "$REPO/deploy/setup-host.sh" --test

# setup-host.sh builds the default runtime only; the end-to-end tests run every runtime.
step "taskyard image build --all"
"$VENV/bin/taskyard" image build --all

cd "$REPO"
# The venv's tools first, so that a ruff or mypy elsewhere on PATH cannot answer for them.
export PATH="$VENV/bin:$PATH"

step "ruff check . && ruff format --check ."
ruff check .
ruff format --check .

step "mypy models controller api taskyard sandbox"
mypy models controller api taskyard sandbox

step "lint-imports"
lint-imports

step "pytest $*"
pytest "$@"

# The benchmark's smoke run: it fails only when a figure cannot be measured at all (its
# figures are printed, never judged), so that the documented command keeps working.
if [ "$#" -eq 0 ]; then
    step "deploy/bench.py --quick"
    python deploy/bench.py --quick
fi

# The hostile suites again, with every task under gVisor. Given pytest arguments (a chosen
# subset), this script runs that subset only.
GVISOR_SUITE=(tests/e2e/test_hostile.py tests/e2e/test_hardening.py tests/e2e/test_warm_pool.py
             tests/e2e/test_sandbox_boundary.py tests/e2e/test_runtimes.py)
if [ "$#" -gt 0 ]; then
    step "gVisor: not run (pytest was given arguments)"
elif docker info --format '{{json .Runtimes}}' | grep -q '"runsc"'; then
    step "pytest under gVisor: ${GVISOR_SUITE[*]}"
    started=$SECONDS
    TASKYARD_DOCKER_RUNTIME=runsc pytest "${GVISOR_SUITE[@]}"
    echo "the gVisor run took $((SECONDS - started)) s"
elif [ "${CI:-}" = "true" ]; then
    echo "CI runs the hostile suites under gVisor too, but the engine lists no runsc runtime:" \
         "install Debian's runsc package and run deploy/setup-host.sh" >&2
    exit 1
else
    step "gVisor: not run (the engine lists no runsc runtime; deploy/setup-host.sh adds it)"
fi
