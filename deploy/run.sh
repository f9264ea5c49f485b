#!/usr/bin/env bash
# The one command to set up this host and run taskyard: `sudo deploy/run.sh [serve options]`.
# The API listens on 127.0.0.1:8000; data lives under $TASKYARD_DATA_DIR (or taskyard's default).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TASKYARD_VENV:-$REPO/.venv}"

bash "$REPO/deploy/setup-host.sh"
exec "$VENV/bin/taskyard" serve "$@"
