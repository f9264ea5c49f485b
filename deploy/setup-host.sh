#!/usr/bin/env bash
# Prepare a Debian/Ubuntu host to run taskyard: Docker engine, a virtualenv with taskyard in it,
# and the runner image. Safe to run again; it only does what is missing. Run as root.
#
#   TASKYARD_VENV    where the virtualenv goes (default: <repo>/.venv)
#   TASKYARD_PYTHON  the Python (>= 3.11) to build it from (default: /usr/bin/python3)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TASKYARD_VENV:-$REPO/.venv}"
PYTHON="${TASKYARD_PYTHON:-/usr/bin/python3}"
DOCKERD_LOG=/var/log/taskyard-dockerd.log
# `su` without `-` and some CI runners drop the sbin directories, where dockerd and debootstrap live.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

say() { echo "setup-host: $*"; }
die() { echo "setup-host: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0): it installs packages and starts dockerd"

# --- packages: one apt call for everything that is missing -------------------------------------
packages=()
# Not docker.io's recommends (needrestart would restart services on a live host), but AppArmor:
# without apparmor_parser dockerd runs every task container without the docker-default profile.
command -v dockerd >/dev/null || packages+=(docker.io apparmor ca-certificates)
command -v debootstrap >/dev/null || packages+=(debootstrap)
# The dashboard's browser tests drive Debian's Chromium; without recommends it brings no font,
# and screenshots would show boxes instead of text.
[ -x /usr/bin/chromium ] || packages+=(chromium fonts-liberation)
# The benchmark (deploy/bench.py) drives the submit rate with wrk; the asyncio client it falls
# back to saturates near 450 requests/s here, below what either server answers.
command -v wrk >/dev/null || packages+=(wrk)
# gVisor, for TASKYARD_DOCKER_RUNTIME=runsc (Debian ships it; where apt has no runsc, runc only).
if ! command -v runsc >/dev/null && apt-cache show runsc >/dev/null 2>&1; then
    packages+=(runsc)
fi
# Ubuntu hosts need Debian's keys to check what debootstrap downloads.
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || packages+=(debian-archive-keyring)
if [ -z "${TASKYARD_PYTHON:-}" ]; then
    [ -x "$PYTHON" ] || packages+=(python3)
    # Debian ships ensurepip (which venv needs) in python3-venv, not with python3 itself.
    { [ -x "$PYTHON" ] && "$PYTHON" -c 'import ensurepip' 2>/dev/null; } || packages+=(python3-venv)
fi
if [ "${#packages[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${packages[*]} and no apt-get to install them"
    say "installing ${packages[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}"
else
    say "needed packages are installed (docker.io, debootstrap, python3-venv, chromium, wrk)"
fi

# --- Docker engine --------------------------------------------------------------------------
docker_answers() { timeout 10 docker info >/dev/null 2>&1; }
dockerd_running() { [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }

# live-restore: task containers keep running while dockerd restarts (an upgrade, a crash), and
# the controller adopts them again. gVisor's runsc is registered as a runtime where installed,
# with its own network stack turned off. Other keys in daemon.json are kept.
daemon_json_changed=0
if "$PYTHON" - <<'PY'
import json, os, shutil, sys
path = "/etc/docker/daemon.json"
config = {}
if os.path.exists(path):
    with open(path) as f:
        config = json.load(f)
wanted = dict(config, **{"live-restore": True})
runsc = shutil.which("runsc")
if runsc:
    runtimes = dict(wanted.get("runtimes", {}))
    runtimes["runsc"] = {"path": runsc, "runtimeArgs": ["--network=none"]}
    wanted["runtimes"] = runtimes
if wanted == config:
    sys.exit(1)
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path + ".tmp", "w") as f:
    json.dump(wanted, f, indent=2)
    f.write("\n")
os.replace(path + ".tmp", path)
PY
then
    daemon_json_changed=1
    say "wrote /etc/docker/daemon.json (live-restore$(command -v runsc >/dev/null && echo ', runtime runsc'))"
fi

if docker_answers; then
    say "Docker engine is answering"
else
    if dockerd_running; then
        say "dockerd is running but not answering yet; waiting for it"
    elif [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && systemctl start docker 2>/dev/null; then
        say "started docker.service with systemctl"
    else
        # No systemd (containers, WSL, CI sandboxes): run dockerd in its own session so that
        # it outlives this script and a Ctrl-C on `taskyard serve` does not reach it.
        say "starting dockerd in the background (log: $DOCKERD_LOG)"
        nohup setsid dockerd </dev/null >>"$DOCKERD_LOG" 2>&1 &
    fi
    for _ in $(seq 60); do
        docker_answers && break
        sleep 1
    done
    docker_answers || die "the Docker engine did not answer within 60 s; see $DOCKERD_LOG
  or \`journalctl -u docker\`, fix it, then run $0 again"
    say "Docker engine is answering"
fi
if [ "$daemon_json_changed" = 1 ] && [ "$(docker info --format '{{.LiveRestoreEnabled}}')" != true ]; then
    # Both settings are reloadable: SIGHUP applies them without stopping a single container.
    say "reloading dockerd's configuration (SIGHUP)"
    if [ -f /var/run/docker.pid ]; then kill -HUP "$(cat /var/run/docker.pid)"; fi
    for _ in $(seq 20); do
        [ "$(docker info --format '{{.LiveRestoreEnabled}}')" = true ] && break
        sleep 0.5
    done
fi
[ "$(docker info --format '{{.LiveRestoreEnabled}}')" = true ] ||
    say "warning: live-restore is off; a dockerd restart will kill running tasks"

# --- virtualenv with taskyard ----------------------------------------------------------------
[ -x "$PYTHON" ] || die "no Python at $PYTHON (set TASKYARD_PYTHON to a Python >= 3.11)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$PYTHON is $("$PYTHON" --version 2>&1); taskyard needs Python >= 3.11 (set TASKYARD_PYTHON)"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    say "virtualenv $VENV exists"
else
    # A venv whose Python is gone (or a half-made one) is rebuilt; anything else is left alone.
    if [ -e "$VENV" ]; then
        [ -f "$VENV/pyvenv.cfg" ] || die "$VENV exists and is not a virtualenv; move it away"
        rm -rf "$VENV"
    fi
    say "creating virtualenv $VENV with $PYTHON ($("$PYTHON" --version 2>&1))"
    "$PYTHON" -m venv "$VENV"
fi

# Editable install: code changes need no reinstall, only pyproject.toml changes do.
stamp="$VENV/.taskyard-pyproject.sha256"
pip_log="$VENV/pip-install.log"
want="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
if [ -x "$VENV/bin/taskyard" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    say "taskyard already installed in $VENV (pyproject.toml unchanged)"
else
    say "pip install -e ${REPO}[test] (log: $pip_log)"
    if ! "$VENV/bin/pip" install --disable-pip-version-check -e "${REPO}[test]" >"$pip_log" 2>&1; then
        tail -n 60 "$pip_log" >&2
        die "pip install failed; full log in $pip_log"
    fi
    echo "$want" >"$stamp"
fi

# --- runner image ------------------------------------------------------------------------------
say "runner image: $VENV/bin/taskyard image build"
"$VENV/bin/taskyard" image build
say "host ready: $VENV/bin/taskyard serve"
