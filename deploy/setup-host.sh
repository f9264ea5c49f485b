#!/usr/bin/env bash
# Prepare a Debian/Ubuntu host to run taskyard: Docker engine, a virtualenv with taskyard in it,
# and the runner image. It says what it will change before changing anything, and only does what
# is missing, so it is safe to run again. Run as root.
#
#   deploy/setup-host.sh [--test] [--dry-run]
#     --test     also what the tests need: chromium and fonts-liberation (browser tests), wrk
#                (benchmark), systemd (systemd-analyze, for the unit file's test), postgresql
#                and a system user taskyard-pg to run it as (the tests start a scratch server
#                of their own; none runs as a service), and taskyard's [test] extras in the
#                virtualenv. deploy/test.sh passes it; deploy/run.sh not.
#     --dry-run  say what would change on this host, and change nothing.
#
#   TASKYARD_VENV    where the virtualenv goes (default: <repo>/.venv)
#   TASKYARD_PYTHON  the Python (>= 3.11) to build it from (default: /usr/bin/python3)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TASKYARD_VENV:-$REPO/.venv}"
PYTHON="${TASKYARD_PYTHON:-/usr/bin/python3}"
DOCKERD_LOG=/var/log/taskyard-dockerd.log
DAEMON_JSON=/etc/docker/daemon.json
PG_BIN=/usr/lib/postgresql/15/bin
PG_USER=taskyard-pg
# `su` without `-` and some CI runners drop the sbin directories, where dockerd and debootstrap live.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

say() { echo "setup-host: $*"; }
die() { echo "setup-host: error: $*" >&2; exit 1; }

for_tests=0
dry_run=0
for arg in "$@"; do
    case "$arg" in
        --test) for_tests=1 ;;
        --dry-run) dry_run=1 ;;
        *) die "unknown argument $arg (usage: $0 [--test] [--dry-run])" ;;
    esac
done
[ "$dry_run" = 1 ] || [ "$(id -u)" -eq 0 ] ||
    die "run as root (sudo $0): it installs packages and starts dockerd ($0 --dry-run says what it would change)"

# --- what serving needs ----------------------------------------------------------------------
needed=()    # every package this run checks for
packages=()  # those missing, to install
# need "$(has CHECK...)" PACKAGE...: the packages are there where the check command succeeds.
has() { if "$@" >/dev/null 2>&1; then echo yes; else echo no; fi; }
need() { local present=$1; shift; needed+=("$@"); [ "$present" = yes ] || packages+=("$@"); }
# Not docker.io's recommends (needrestart would restart services on a live host), but AppArmor:
# without apparmor_parser dockerd runs every task container without the docker-default profile.
need "$(has command -v dockerd)" docker.io apparmor ca-certificates
# The runner image is built offline from Debian's packages where no registry answers.
need "$(has command -v debootstrap)" debootstrap
# gVisor, for TASKYARD_DOCKER_RUNTIME=runsc (Debian ships it; where apt has no runsc, runc only).
if command -v runsc >/dev/null || apt-cache show runsc >/dev/null 2>&1; then
    need "$(has command -v runsc)" runsc
fi
# Ubuntu hosts need Debian's keys to check what debootstrap downloads.
need "$(has test -f /usr/share/keyrings/debian-archive-keyring.gpg)" debian-archive-keyring
if [ -z "${TASKYARD_PYTHON:-}" ]; then
    need "$(has test -x "$PYTHON")" python3
    # Debian ships ensurepip (which venv needs) in python3-venv, not with python3 itself.
    need "$(has "$PYTHON" -c 'import ensurepip')" python3-venv
fi
# --- and what the tests need besides --------------------------------------------------------
extras=""
if [ "$for_tests" = 1 ]; then
    extras="[test]"
    # The dashboard's browser tests drive Debian's Chromium; without recommends it brings no
    # font, and screenshots would show boxes instead of text.
    need "$(has test -x /usr/bin/chromium)" chromium fonts-liberation
    # The benchmark (deploy/bench.py) drives the submit rate with wrk; the asyncio client it
    # falls back to saturates near 450 requests/s here, below what either server answers.
    need "$(has command -v wrk)" wrk
    # tests/unit/test_deploy.py checks deploy/systemd/taskyard.service with systemd-analyze.
    need "$(has command -v systemd-analyze)" systemd
    # Every API and controller test runs on PostgreSQL too: tests/scratch_postgres.py starts a
    # server of its own with initdb and pg_ctl from Debian's package, as the user below.
    need "$(has test -x "$PG_BIN/initdb")" postgresql
fi

# --- what this run changes, said before it changes anything --------------------------------
docker_answers() { timeout 10 docker info >/dev/null 2>&1; }
dockerd_running() { [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }
runsc_path() {
    if command -v runsc >/dev/null; then command -v runsc
    elif [[ " ${packages[*]} " == *" runsc "* ]]; then echo /usr/bin/runsc
    fi
}
daemon_json() { "$PYTHON" "$REPO/deploy/daemon_json.py" --path "$DAEMON_JSON" --runsc "$(runsc_path)" "$@"; }
venv_stamp="$VENV/.taskyard-pyproject.sha256"
want_stamp="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1) ${extras:-[serve]}"
venv_current() {
    # A stamp without extras is from before --test existed, when every install had [test].
    local have
    have="$(cat "$venv_stamp" 2>/dev/null || true)"
    [ "${have#* }" != "$have" ] || have="$have [test]"
    [ -x "$VENV/bin/taskyard" ] &&
        { [ "$have" = "$want_stamp" ] || [ "$have" = "${want_stamp%% *} [test]" ]; }
}

pg_user_missing() { [ "$for_tests" = 1 ] && ! id -u "$PG_USER" >/dev/null 2>&1; }

say "setting up this host for $([ "$for_tests" = 1 ] && echo 'serving and tests' || echo 'serving (deploy/setup-host.sh --test adds the test tools)'); this run will:"
if [ "${#packages[@]}" -gt 0 ]; then
    say "  - apt-get install --no-install-recommends ${packages[*]} (it needs ${needed[*]})"
else
    say "  - install no package (it needs ${needed[*]}: all installed)"
fi
if [ -x "$PYTHON" ]; then
    if plan="$(daemon_json --dry-run)"; then
        say "  - rewrite $plan"
        if docker_answers; then
            say "  - reload dockerd's configuration with SIGHUP (running containers keep running)"
        fi
    else
        [ $? -eq 1 ] || die "$plan"
        say "  - leave $DAEMON_JSON as it is (it has live-restore$([ -n "$(runsc_path)" ] && echo ' and the runsc runtime'))"
    fi
else
    say "  - set live-restore (and the runsc runtime) in $DAEMON_JSON once python3 is installed"
fi
if ! docker_answers; then
    if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
        say "  - start docker.service (systemctl start docker)"
    else
        say "  - start dockerd in the background (no systemd here; log: $DOCKERD_LOG)"
    fi
fi
if pg_user_missing; then
    say "  - add the system user $PG_USER (the tests' scratch PostgreSQL runs as it: it refuses root)"
fi
if venv_current; then
    say "  - leave the virtualenv $VENV as it is (taskyard installed, pyproject.toml unchanged)"
else
    say "  - install taskyard into the virtualenv $VENV: pip install -e $REPO$extras"
fi
say "  - build the runner image (taskyard image build) if it is missing"
if [ "$dry_run" = 1 ]; then
    say "dry run: nothing was changed"
    exit 0
fi

# --- packages: one apt call for everything that is missing -------------------------------------
if [ "${#packages[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${packages[*]} and no apt-get to install them"
    say "installing ${packages[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

# The package's own cluster and service are not used (the tests start their own server); they
# are left as Debian set them up.
if pg_user_missing; then
    say "adding the system user $PG_USER"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_USER"
fi

# --- Docker engine --------------------------------------------------------------------------
# daemon.json first, so that a dockerd started below reads it; a running one reloads it.
answered_before=0
docker_answers && answered_before=1
daemon_json_changed=0
if out="$(daemon_json)"; then
    daemon_json_changed=1
    say "$out"
else
    [ $? -eq 1 ] || die "$out"
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
if [ "$daemon_json_changed" = 1 ] && [ "$answered_before" = 1 ]; then
    # live-restore and runtimes are both reloadable: SIGHUP applies them without stopping a
    # single container.
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

# Editable install: code changes need no reinstall, only pyproject.toml changes do. (The systemd
# service gets a non-editable install of its own: deploy/install-service.sh.)
pip_log="$VENV/pip-install.log"
if venv_current; then
    say "taskyard already installed in $VENV (pyproject.toml unchanged)"
else
    say "pip install -e ${REPO}${extras} (log: $pip_log)"
    if ! "$VENV/bin/pip" install --disable-pip-version-check -e "${REPO}${extras}" >"$pip_log" 2>&1; then
        tail -n 60 "$pip_log" >&2
        die "pip install failed; full log in $pip_log"
    fi
    echo "$want_stamp" >"$venv_stamp"
fi

# --- runner image ------------------------------------------------------------------------------
say "runner image: $VENV/bin/taskyard image build"
"$VENV/bin/taskyard" image build
say "host ready: $VENV/bin/taskyard serve"
