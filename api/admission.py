"""Admission of a new task: the checks that depend on settings and on the host's capacity,
after the request body has passed the seed's format rules (`models.schemas.TaskCreate`), and
the quota of unfinished tasks per user (`quota_problem`, and `batch_quota_problem` for a batch,
which is taken or refused whole).

POST /tasks calls `admit`, then `check_fits` with the host's limits as `HostLimitsCache` last
read them (at most a second ago). The submission writer checks the quota (`quota_problem`)
inside the transaction that stores the task, so two requests sent at once cannot both take
the last place.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.errors import field_error
from models.database import Database
from models.fit import HostLimits, exceeded_limits
from models.phases import ACTIVE_PHASES
from models.quantities import format_size
from models.schemas import TaskCreate
from models.settings import Settings
from models.tables import Capacity

# Beyond these a request is nonsense on any host, whether or not capacity is known yet.
MAX_COUNT = 4096
MAX_SIZE_BYTES = 1 << 50


# How long the host's limits, as read from the Capacity row, are trusted. The controller
# rewrites that row on every pass, but the limits only change when the host itself does.
HOST_LIMITS_MAX_AGE_SECONDS = 1.0


def host_limits(session: Session) -> HostLimits | None:
    """The most one task may ask of this host; None until the controller has reported."""
    capacity = session.get(Capacity, "local")
    if capacity is None or capacity.heartbeat_at is None:
        return None
    return HostLimits(
        cpus=len(capacity.cpu_ids),
        gpus=len(capacity.gpu_ids),
        ram=capacity.ram_allocatable,
        storage=capacity.storage_allocatable,
        runtimes=frozenset(capacity.runtimes) if capacity.runtimes else None,
    )


class HostLimitsCache:
    """`host_limits`, read again once it is older than a second: a submission then costs no
    database read of its own. While one request reads it again, the others go on with the
    limits read last (never more than a read's duration older than the second)."""

    def __init__(self, database: Database, max_age: float = HOST_LIMITS_MAX_AGE_SECONDS) -> None:
        self._database = database
        self._max_age = max_age
        self._limits: HostLimits | None = None
        self._read_at: float | None = None
        self._reading = False

    async def current(self) -> HostLimits | None:
        began = time.monotonic()
        if self._read_at is not None and (began - self._read_at <= self._max_age or self._reading):
            return self._limits
        self._reading = True
        try:
            self._limits = await run_in_threadpool(self._read)
            self._read_at = began
        finally:
            self._reading = False
        return self._limits

    def _read(self) -> HostLimits | None:
        with self._database.read() as session:
            return host_limits(session)


@dataclass(frozen=True)
class Admitted:
    """What an admitted request asks for, its quantities parsed once."""

    timeout: int
    cpu: int
    gpu: int
    ram_bytes: int
    storage_bytes: int


def admit(body: TaskCreate, settings: Settings) -> Admitted:
    """Raise 413/422 naming the field where the task cannot be accepted; return what it asks
    for, with its timeout."""
    _check_sizes(body, settings)
    timeout = (
        settings.default_timeout_seconds if body.timeout_seconds is None else body.timeout_seconds
    )
    if not 1 <= timeout <= settings.max_timeout_seconds:
        raise HTTPException(
            422,
            [
                field_error(
                    ["body", "timeout_seconds"],
                    f"timeout_seconds must be between 1 and {settings.max_timeout_seconds}",
                    "out_of_range",
                )
            ],
        )
    resources = body.resources
    asked = Admitted(
        timeout=timeout,
        cpu=resources.cpu_count,
        gpu=resources.gpu_count,
        ram_bytes=resources.ram_bytes,
        storage_bytes=resources.storage_bytes,
    )
    errors = _resource_problems(asked, settings)
    if errors:
        raise HTTPException(422, errors)
    return asked


def _too_large(field: str, message: str) -> HTTPException:
    return HTTPException(413, [field_error(["body", field], message, "too_large")])


def _check_sizes(body: TaskCreate, settings: Settings) -> None:
    """Code, files and stdin within their limits. Code with a NUL character is refused: no
    runtime can run it, so it could only ever fail. stdin may hold any text."""
    code_bytes = len(body.code.encode("utf-8"))
    if code_bytes > settings.max_code_bytes:
        raise _too_large(
            "code", f"code is {code_bytes} bytes; the limit is {settings.max_code_bytes} bytes"
        )
    if "\x00" in body.code:
        raise HTTPException(
            422,
            [
                field_error(
                    ["body", "code"],
                    f"code contains a NUL character (at position {body.code.index(chr(0))}); "
                    "Python source code cannot contain NUL characters",
                    "nul_character",
                )
            ],
        )
    files_bytes = sum(len(file.data) for file in body.files)
    if files_bytes > settings.max_files_bytes:
        raise _too_large(
            "files",
            f"files hold {files_bytes} bytes in all; the limit is {settings.max_files_bytes} bytes",
        )
    if body.stdin is not None and len(body.stdin.encode("utf-8")) > settings.max_code_bytes:
        raise _too_large("stdin", f"stdin is larger than {settings.max_code_bytes} bytes")


def _resource_problems(asked: Admitted, settings: Settings) -> list[dict[str, Any]]:
    """The resources asked beyond what any host has, or below the engine's minimums."""
    errors = []
    for name, value in (("cpu", asked.cpu), ("gpu", asked.gpu)):
        if value > MAX_COUNT:
            errors.append(
                field_error(
                    ["body", "resources", name],
                    f"{name} {value} is more than any host has",
                    "too_large",
                )
            )
    for name, value in (("ram", asked.ram_bytes), ("storage", asked.storage_bytes)):
        if value > MAX_SIZE_BYTES:
            errors.append(
                field_error(
                    ["body", "resources", name], f"{name} is more than any host has", "too_large"
                )
            )
    if asked.ram_bytes < settings.min_ram_bytes:
        errors.append(
            field_error(
                ["body", "resources", "ram"],
                f"ram must be at least {format_size(settings.min_ram_bytes)} "
                "(the container engine's minimum)",
                "below_minimum",
            )
        )
    if asked.storage_bytes < settings.min_storage_bytes:
        errors.append(
            field_error(
                ["body", "resources", "storage"],
                f"storage must be at least {format_size(settings.min_storage_bytes)}",
                "below_minimum",
            )
        )
    return errors


def check_runtime(runtime: str, host: HostLimits | None) -> None:
    """Raise 422 where the host does not hold the runtime's image (known once the controller
    has looked; a task whose runtime goes away later waits as RuntimeUnavailable)."""
    if host is None or host.runtimes is None or runtime in host.runtimes:
        return
    installed = ", ".join(sorted(host.runtimes))
    raise HTTPException(
        422,
        [
            field_error(
                ["body", "runtime"],
                f"runtime {runtime!r} is not installed on this host (installed: {installed}); "
                f"an operator installs it with `taskyard image build --runtime {runtime}`",
                "runtime_not_installed",
            )
        ],
    )


def check_fits(asked: Admitted, host: HostLimits | None) -> None:
    """Raise 422 naming each resource asked beyond what `host` can give one task (None: the
    controller has not reported yet, so any request may wait for it)."""
    if host is None:
        return
    problems = exceeded_limits(
        cpu=asked.cpu, gpu=asked.gpu, ram=asked.ram_bytes, storage=asked.storage_bytes, host=host
    )
    if problems:
        raise HTTPException(
            422,
            [
                field_error(["body", "resources", name], message, "exceeds_capacity")
                for name, message in problems
            ],
        )


_ACTIVE_CPUS = (
    "SELECT cpu FROM tasks WHERE owner = ? AND phase IN ("
    + ", ".join("?" * len(ACTIVE_PHASES))
    + ")"
)


def active_cpus(database: Database, driver: Any, user: str) -> list[int]:
    """The CPUs of each of this user's unfinished tasks (on the submission writer's driver
    connection, sqlite3 or psycopg, inside its transaction)."""
    phases = [phase.value for phase in ACTIVE_PHASES]
    rows = driver.execute(database.driver_sql(_ACTIVE_CPUS), (user, *phases)).fetchall()
    return [cpu for (cpu,) in rows]


def quota_problem(active: Sequence[int], settings: Settings, cpu: int) -> HTTPException | None:
    """The 429 for a task of `cpu` CPUs from a user whose unfinished tasks ask for `active`,
    where it goes beyond their share; None where it fits."""
    limit = settings.user_max_active_tasks
    if limit and len(active) >= limit:
        return HTTPException(
            429,
            f"quota: you have {len(active)} unfinished tasks, the most "
            f"one user may have is {limit}; wait for some to finish",
        )
    if settings.user_max_cpus and sum(active) + cpu > settings.user_max_cpus:
        return HTTPException(
            429,
            f"quota: your unfinished tasks ask for {sum(active)} CPUs "
            f"and this one for {cpu}; one user may have "
            f"{settings.user_max_cpus} at once",
        )
    return None


def batch_quota_problem(
    active: Sequence[int], settings: Settings, cpus: Sequence[int]
) -> HTTPException | None:
    """The 429 for a batch of tasks asking for `cpus` from a user whose unfinished tasks ask
    for `active`, where the batch as a whole goes beyond their share (as its tasks sent one
    by one would, at some task); None where all of it fits."""
    limit = settings.user_max_active_tasks
    if limit and len(active) + len(cpus) > limit:
        return HTTPException(
            429,
            f"quota: you have {len(active)} unfinished tasks and this batch brings "
            f"{len(cpus)}; the most one user may have is {limit}; nothing was stored",
        )
    if settings.user_max_cpus and sum(active) + sum(cpus) > settings.user_max_cpus:
        return HTTPException(
            429,
            f"quota: your unfinished tasks ask for {sum(active)} CPUs and this batch for "
            f"{sum(cpus)}; one user may have {settings.user_max_cpus} at once; "
            "nothing was stored",
        )
    return None
