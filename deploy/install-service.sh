#!/usr/bin/env bash
# Install taskyard as a systemd service: `sudo deploy/install-service.sh`. Safe to run again
# (an upgrade: it reinstalls taskyard and restarts the service). It says what it will do first:
#
#   1. deploy/setup-host.sh: the Docker engine, daemon.json, the runner image (as deploy/run.sh);
#   2. the system user taskyard (home and data dir /var/lib/taskyard, no shell), in the docker group;
#   3. /opt/taskyard/venv: a virtualenv with a non-editable install of this checkout (a wheel);
#   4. /etc/taskyard/taskyard.env from deploy/systemd/taskyard.env, unless it exists;
#   5. /etc/systemd/system/taskyard.service, then `systemctl enable --now` (restart if running).
#
#   --no-start   do 1-5 but leave systemd alone: no daemon-reload, enable or start (hosts where
#                PID 1 is not systemd, such as containers, where the unit cannot run anyway).
#   TASKYARD_PYTHON  the Python (>= 3.11) for the virtualenv (default: /usr/bin/python3)
set -euo pipefail
umask 022  # the service user reads what root installs here

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${TASKYARD_PYTHON:-/usr/bin/python3}"
PREFIX=/opt/taskyard
VENV="$PREFIX/venv"
DATA=/var/lib/taskyard
ENV_FILE=/etc/taskyard/taskyard.env
UNIT=/etc/systemd/system/taskyard.service
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

say() { echo "install-service: $*"; }
die() { echo "install-service: error: $*" >&2; exit 1; }

start=1
for arg in "$@"; do
    case "$arg" in
        --no-start) start=0 ;;
        *) die "unknown argument $arg (usage: $0 [--no-start])" ;;
    esac
done
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0): it creates a user and installs a service"
if [ "$start" = 1 ] && [ "$(cat /proc/1/comm 2>/dev/null)" != systemd ]; then
    die "PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown), not systemd: the unit cannot run here.
  Run taskyard with deploy/run.sh instead, or pass --no-start to install the files only."
fi

say "this run will: set up the host (deploy/setup-host.sh), create the user taskyard in the"
say "docker group if missing, install taskyard into $VENV, write $ENV_FILE if missing,"
say "install $UNIT$([ "$start" = 1 ] && echo ', and enable and (re)start taskyard.service')"

# 1. Docker engine, daemon.json, runner image: what deploy/run.sh sets up. It says what it changes.
bash "$REPO/deploy/setup-host.sh"

# 2. The user. Its home is the data dir, so that nothing of it lands elsewhere.
getent group docker >/dev/null || die "no docker group: is docker.io installed?"
if ! getent passwd taskyard >/dev/null; then
    say "creating the system user taskyard"
    useradd --system --user-group --home-dir "$DATA" --no-create-home \
        --shell /usr/sbin/nologin --comment "taskyard service" taskyard
fi
if ! id -nG taskyard | tr ' ' '\n' | grep -qx docker; then
    say "adding taskyard to the docker group (root-equivalent: it starts containers)"
    usermod -aG docker taskyard
fi
install -d -o taskyard -g taskyard -m 0750 "$DATA"

# 3. A non-editable install, so that the service runs what was installed, not whatever the
# checkout holds later (and needs no access to the checkout, which may be in a home dir).
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
pip_log="$PREFIX/pip-install.log"
say "installing taskyard into $VENV from a wheel of $REPO (log: $pip_log)"
if ! {
    "$VENV/bin/pip" wheel --disable-pip-version-check --no-deps --wheel-dir "$wheels" "$REPO" &&
        "$VENV/bin/pip" install --disable-pip-version-check "$wheels"/taskyard-*.whl &&
        "$VENV/bin/pip" install --disable-pip-version-check --no-deps --force-reinstall \
            "$wheels"/taskyard-*.whl
} >"$pip_log" 2>&1; then
    tail -n 40 "$pip_log" >&2
    die "pip failed; full log in $pip_log"
fi

# 4. Settings: written once; later runs never overwrite what an admin edited.
if [ -e "$ENV_FILE" ]; then
    say "$ENV_FILE exists; left as it is"
else
    say "writing $ENV_FILE (edit it, then: systemctl restart taskyard)"
    install -d -m 0755 "$(dirname "$ENV_FILE")"
    # Readable by root and the service only: it may hold TASKYARD_ADMIN_TOKEN.
    install -o root -g taskyard -m 0640 "$REPO/deploy/systemd/taskyard.env" "$ENV_FILE"
fi

# 5. The unit.
install -m 0644 "$REPO/deploy/systemd/taskyard.service" "$UNIT"
say "installed $UNIT"
if [ "$start" = 0 ]; then
    say "--no-start: systemd left alone; when it runs: systemctl daemon-reload && systemctl enable --now taskyard"
    exit 0
fi
systemctl daemon-reload
systemctl enable taskyard.service
systemctl restart taskyard.service
say "taskyard.service is $(systemctl is-active taskyard.service); log: journalctl -u taskyard -f"
say "API and dashboard: http://127.0.0.1:$(sed -n 's/^TASKYARD_PORT=//p' "$ENV_FILE" | tail -1 | grep . || echo 8000)/"
say "admin verbs on this host: sudo TASKYARD_DATA_DIR=$DATA $VENV/bin/taskyard admin capacity"
