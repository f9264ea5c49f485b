"""Starting the parts: the API under uvicorn, the controller's loop, or both in one process."""

import contextlib
import gc
import logging
import signal
import threading
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from controller.docker_runtime import DockerRuntime
from controller.loop import Reconciler
from controller.service import ControllerService
from models.database import Database, open_database
from models.paths import SERVER_URL_FILE
from models.postgres import sqlalchemy_url
from models.settings import Settings

log = logging.getLogger("taskyard")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def instance_id(data_dir: Path) -> str:
    """This instance's owner label: its containers are the only ones it adopts or removes."""
    path = data_dir / "instance-id"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    owner = uuid.uuid4().hex
    path.write_text(owner + "\n")
    return owner


def settle_heap() -> None:
    """Keep the cycle collector's pauses short and rare: each one stops every thread, the
    event loop too. With 1,000 watchers connected a full collection scanned some 350,000
    objects and took 235 ms on 2 busy cores, in the middle of a fan-out.

    Start-up's objects (modules, the app, the schema: 137,000 of them) live as long as the
    process, so they are frozen out of the collector's sight; nothing of them is garbage (a
    collection runs just before), and what they later drop is still freed by reference
    counting. That halved the full collection. The youngest generation is collected every
    50,000 allocations instead of 700, and a full collection comes at most once per 100
    young ones, so about 70 times less often; a young one scans at most those 50,000.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)


def build_controller(
    settings: Settings, database: Database, *, watch_database: bool = True
) -> ControllerService:
    owner = instance_id(settings.data_dir)
    runtime = DockerRuntime(
        owner,
        settings.image,
        delivery_timeout=settings.code_delivery_timeout_seconds,
        warm_max_idle_seconds=settings.warm_pool_max_idle_seconds,
        seccomp_profile=settings.seccomp_profile,
    )
    reconciler = Reconciler(settings, database, runtime, owner=owner)
    service = ControllerService(
        reconciler,
        database,
        interval=settings.reconcile_interval_seconds,
        exit_events=runtime.wait_for_exit_events,
        watch_database=watch_database,
    )
    # Input refused while a task did not read is offered again as soon as it reads.
    runtime.on_stdin_room = service.wake
    return service


def check_listen_address(settings: Settings) -> None:
    """Beyond loopback, every task endpoint needs a token; still, opening up is explicit."""
    if settings.host in LOOPBACK or settings.allow_remote:
        return
    raise SystemExit(
        f"refusing to listen on {settings.host}: beyond loopback anyone who can reach the port "
        "could run code here. Create user tokens (POST /admin/tokens, `taskyard admin token "
        "create NAME`) and set TASKYARD_ALLOW_REMOTE=true; every task endpoint then needs a "
        "token."
    )


def local_url(host: str, port: int) -> str:
    """The URL a client on this host reaches a server listening on `host`:`port` at."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _shown(url: str) -> str:
    """The database URL without its password, for the log."""
    return make_url(sqlalchemy_url(url)).render_as_string(hide_password=True)


def announce(settings: Settings, url: str) -> None:
    """Where everything is: the API, the dashboard, the data, and how to point the CLI here."""
    for line in (
        f"API: {url} (reference: {url}/docs)",
        f"dashboard: {url}/",
        f"data dir: {settings.data_dir} (database {_shown(settings.resolved_database_url)})",
        f"the CLI on this host finds this address in {settings.data_dir / SERVER_URL_FILE}; "
        f"elsewhere, or as another user: export TASKYARD_SERVER={url}",
    ):
        log.info("%s", line)


def remember_url(settings: Settings, url: str) -> Path:
    """Write where this server listens into the data dir, where the CLI looks for it."""
    path = settings.data_dir / SERVER_URL_FILE
    path.write_text(url + "\n", encoding="utf-8")
    return path


def forget_url(path: Path, url: str) -> None:
    """Remove the address on the way out, unless another server has written its own since."""
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8").strip() == url:
            path.unlink()


def run_api(settings: Settings, *, with_controller: bool) -> None:
    # Imported here: `taskyard controller` never needs them, and a controller restarted after a
    # crash is back at work about half a second sooner without them.
    import uvicorn

    from api.app import create_app
    from taskyard.http_protocol import with_header_timeout

    check_listen_address(settings)
    database = open_database(settings.resolved_database_url)
    app = create_app(settings, database)
    controller = None
    if with_controller:
        # The controller gets engines of its own, and is woken by each of the API's commits
        # directly, instead of polling the database, which would also wake it on its own.
        # The other way round, its commits poke the API's transition feed, so that a watcher
        # or a `?wait` hears of a task's move at once rather than at the feed's next poll.
        controller_database = open_database(settings.resolved_database_url)
        controller_database.after_commit(app.state.feed.poke)
        controller = build_controller(settings, controller_database, watch_database=False)
        database.after_commit(controller.wake)
    settle_heap()  # before the controller's thread makes objects that are not start-up's
    if controller is not None:
        controller.start()
    url = local_url(settings.host, settings.port)
    announce(settings, url)
    url_file = remember_url(settings, url)
    token_path = app.state.admin_token_path
    log.info(
        "admin token: %s",
        f"in {token_path} (mode 0600)" if token_path else "from TASKYARD_ADMIN_TOKEN",
    )
    # uvicorn re-raises the SIGTERM it caught once it has shut down; with the default handler
    # that would end the process before the controller below stores what it holds and removes
    # its warm containers.
    signal.signal(signal.SIGTERM, lambda *_: log.info("stopping on SIGTERM"))
    try:
        # Open /watch streams never end by themselves: give them a moment, then close them.
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            # Our handler and format for uvicorn's lines too, and our access log (`api.access_log`)
            # in place of uvicorn's.
            log_config=None,
            log_level="info",
            access_log=False,
            timeout_graceful_shutdown=3,
            http=with_header_timeout(settings.header_timeout_seconds),
        )
    finally:
        forget_url(url_file, url)
        if controller is not None:
            controller.stop()
        database.dispose()


def run_controller(settings: Settings) -> None:
    database = open_database(settings.resolved_database_url)
    controller = build_controller(settings, database)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    settle_heap()
    controller.start()
    log.info("taskyard controller running against %s", database.display_url)
    stop.wait()
    controller.stop()
    database.dispose()
