"""Admission of a new task: the checks that depend on settings and on the host's capacity,
after the request body has passed the seed's format rules (`models.schemas.TaskCreate`).
"""

from fastapi import HTTPException
from sqlmodel import Session, col, select

from api.errors import field_error
from models.fit import HostLimits, exceeded_limits
from models.phases import ACTIVE_PHASES
from models.quantities import format_size
from models.schemas import TaskCreate
from models.settings import Settings
from models.tables import Capacity, Task

# Beyond these a request is nonsense on any host, whether or not capacity is known yet.
MAX_COUNT = 4096
MAX_SIZE_BYTES = 1 << 50


def admit(body: TaskCreate, settings: Settings, session: Session) -> int:
    """Raise 413/422 naming the field where the task cannot be accepted; return its timeout.

    Code with a NUL character is refused: Python cannot run it, so it could only ever fail.
    stdin may hold any text."""
    code_bytes = len(body.code.encode("utf-8"))
    if code_bytes > settings.max_code_bytes:
        raise HTTPException(413, [field_error(
            ["body", "code"],
            f"code is {code_bytes} bytes; the limit is {settings.max_code_bytes} bytes",
            "too_large")])
    if "\x00" in body.code:
        raise HTTPException(422, [field_error(
            ["body", "code"],
            f"code contains a NUL character (at position {body.code.index(chr(0))}); "
            "Python source code cannot contain NUL characters", "nul_character")])
    if body.stdin is not None and len(body.stdin.encode("utf-8")) > settings.max_code_bytes:
        raise HTTPException(413, [field_error(
            ["body", "stdin"], f"stdin is larger than {settings.max_code_bytes} bytes",
            "too_large")])

    timeout = settings.default_timeout_seconds if body.timeout_seconds is None \
        else body.timeout_seconds
    if not 1 <= timeout <= settings.max_timeout_seconds:
        raise HTTPException(422, [field_error(
            ["body", "timeout_seconds"],
            f"timeout_seconds must be between 1 and {settings.max_timeout_seconds}",
            "out_of_range")])

    resources = body.resources
    errors = []
    for name, value in (("cpu", resources.cpu_count), ("gpu", resources.gpu_count)):
        if value > MAX_COUNT:
            errors.append(field_error(["body", "resources", name],
                                      f"{name} {value} is more than any host has", "too_large"))
    for name, value in (("ram", resources.ram_bytes), ("storage", resources.storage_bytes)):
        if value > MAX_SIZE_BYTES:
            errors.append(field_error(["body", "resources", name],
                                      f"{name} is more than any host has", "too_large"))
    if resources.ram_bytes < settings.min_ram_bytes:
        errors.append(field_error(
            ["body", "resources", "ram"],
            f"ram must be at least {format_size(settings.min_ram_bytes)} "
            "(the container engine's minimum)", "below_minimum"))
    if resources.storage_bytes < settings.min_storage_bytes:
        errors.append(field_error(
            ["body", "resources", "storage"],
            f"storage must be at least {format_size(settings.min_storage_bytes)}",
            "below_minimum"))
    if errors:
        raise HTTPException(422, errors)

    capacity = session.get(Capacity, "local")
    if capacity is not None and capacity.heartbeat_at is not None:
        host = HostLimits(cpus=len(capacity.cpu_ids), gpus=len(capacity.gpu_ids),
                          ram=capacity.ram_allocatable, storage=capacity.storage_allocatable)
        problems = exceeded_limits(cpu=resources.cpu_count, gpu=resources.gpu_count,
                                   ram=resources.ram_bytes, storage=resources.storage_bytes,
                                   host=host)
        if problems:
            raise HTTPException(422, [
                field_error(["body", "resources", name], message, "exceeds_capacity")
                for name, message in problems
            ])
    return timeout


def check_quota(session: Session, settings: Settings, user: str, cpu: int) -> None:
    """429 where this user's unfinished tasks already use up their share."""
    active = list(session.exec(
        select(Task.cpu).where(col(Task.owner) == user,
                               col(Task.phase).in_([p.value for p in ACTIVE_PHASES]))
    ))
    limit = settings.user_max_active_tasks
    if limit and len(active) >= limit:
        raise HTTPException(429, f"quota: you have {len(active)} unfinished tasks, the most "
                                 f"one user may have is {limit}; wait for some to finish")
    if settings.user_max_cpus and sum(active) + cpu > settings.user_max_cpus:
        raise HTTPException(429, f"quota: your unfinished tasks ask for {sum(active)} CPUs and "
                                 f"this one for {cpu}; one user may have "
                                 f"{settings.user_max_cpus} at once")
