#!/usr/bin/env bash
# The one command to set up this host and run taskyard: `sudo deploy/run.sh [serve options]`.
# deploy/setup-host.sh first says what it will change on this host (packages it installs,
# /etc/docker/daemon.json, which it backs up before rewriting, a reload or start of dockerd),
# then does only that; it installs what serving needs, and none of the test tools
# (deploy/test.sh adds those). `deploy/setup-host.sh --dry-run` shows the plan alone.
# The API listens on 127.0.0.1:8000; data lives under $TASKYARD_DATA_DIR (or taskyard's default).
# As a systemd service instead: `sudo deploy/install-service.sh`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TASKYARD_VENV:-$REPO/.venv}"

bash "$REPO/deploy/setup-host.sh"
exec "$VENV/bin/taskyard" serve "$@"
