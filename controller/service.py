"""Runs reconcile passes: one APScheduler job (never two passes at once) on an interval, woken
early by new commits to the database (`Database.commit_watch`: SQLite's `data_version`, or
Postgres' notifications, which also carry other processes' commits), by container exits (engine
events) and by the next deadline. A wake that arrives during a pass makes that pass run once
more. `taskyard.service` builds it.
"""

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from controller.loop import Reconciler
from models.clock import utcnow
from models.database import Database

log = logging.getLogger("taskyard.controller")

# Reading the commit counter costs microseconds; a new task waits at most this long to be noticed.
DATABASE_POLL_SECONDS = 0.01


class ControllerService:
    """Runs `Reconciler` passes as an APScheduler job and wakes it early when work arrives."""

    def __init__(
        self,
        reconciler: Reconciler,
        database: Database,
        *,
        interval: float,
        exit_events: Callable[[Callable[[], None], threading.Event], None] | None = None,
        watch_database: bool = True,
    ) -> None:
        self._reconciler = reconciler
        reconciler.wake_hook = self.wake
        self._db = database
        self._interval = interval
        self._exit_events = exit_events
        self._watch = watch_database
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._again = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._job: Any = None
        logging.getLogger("apscheduler").setLevel(logging.ERROR)

    def start(self) -> None:
        self._job = self._scheduler.add_job(
            self._run_pass,
            "interval",
            seconds=self._interval,
            id="reconcile",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=utcnow(),
        )
        self._scheduler.start()
        if self._watch:
            self._spawn(self._watch_database, "taskyard-db-watch")
        if self._exit_events is not None:
            exit_events = self._exit_events
            self._spawn(lambda: exit_events(self.wake, self._stop), "taskyard-engine-events")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._scheduler.shutdown(wait=True)
        self._reconciler.close()

    def wake(self, at: datetime | None = None) -> None:
        """Run a pass now (or at `at`), or once more right after the one in progress."""
        if self._stop.is_set() or self._job is None:
            return
        if at is None:
            self._again.set()
        try:
            next_run = self._job.next_run_time
            when = at or utcnow()
            if next_run is None or when < next_run:
                self._job.modify(next_run_time=when)
        except Exception:  # the job is being rescheduled by the scheduler itself: the flag holds
            pass

    def _run_pass(self) -> None:
        while not self._stop.is_set():
            self._again.clear()
            try:
                report = self._reconciler.reconcile_once()
            except Exception:
                log.exception("reconcile pass failed; the next one starts from scratch")
                return
            if report.next_deadline is not None:
                self.wake(at=report.next_deadline)
            if not self._again.is_set():
                return

    def _watch_database(self) -> None:
        # The counter moves whenever another connection commits: new tasks, cancellations.
        commits = self._db.commit_watch()
        try:
            last = None
            while not self._stop.wait(DATABASE_POLL_SECONDS):
                version = commits.version()
                if last is not None and version != last:
                    self.wake()
                last = version
        finally:
            commits.close()
