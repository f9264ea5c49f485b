"""Pure placement of pending tasks onto free CPU cores, GPUs, RAM and storage.

`place()` takes no database, no engine and no clock: the reconcile pass hands it the queue in
arrival order, what the host can allocate and what running tasks hold (with an upper bound on
when each ends, from its deadline). It is first come, first served with EASY backfill: when
the head of the queue does not fit, it gets a reservation at the earliest time enough is freed,
and a later task may jump ahead only if it fits now and either ends before that time or uses
only what the head will not need then. Deadlines bound every running task, so the head always
starts eventually. Every task left waiting gets the reasons why, as kube-scheduler's
`fitsRequest` gives them.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from models.fit import HostLimits, exceeded_limits
from models.quantities import format_size, format_size_floor


@dataclass(frozen=True)
class Request:
    task_id: str
    cpu: int
    gpu: int
    ram: int
    storage: int
    runs_for: float  # upper bound in seconds once started: the task's timeout


@dataclass(frozen=True)
class Holding:
    """What a scheduled or running task holds, and an upper bound on when it gives it back."""

    task_id: str
    cpus: tuple[int, ...]
    gpus: tuple[int, ...]
    ram: int
    storage: int
    ends_in: float


@dataclass(frozen=True)
class Allocatable:
    cpu_ids: tuple[int, ...]
    gpu_ids: tuple[int, ...]
    ram: int
    storage: int
    gpu_sharing: int = 1


@dataclass(frozen=True)
class Placement:
    task_id: str
    cpus: tuple[int, ...]
    gpus: tuple[int, ...]


@dataclass(frozen=True)
class Wait:
    task_id: str
    message: str


@dataclass
class Plan:
    placements: list[Placement] = field(default_factory=list)
    waiting: list[Wait] = field(default_factory=list)
    never_fits: list[Wait] = field(default_factory=list)


@dataclass
class _Free:
    cpus: set[int]
    gpu_slots: dict[int, int]
    ram: int
    storage: int

    def gpus_available(self) -> int:
        return sum(1 for slots in self.gpu_slots.values() if slots > 0)


def never_fits(request: Request, allocatable: Allocatable) -> list[str]:
    """Why `request` could not run on this host even when it is idle (empty when it could)."""
    host = HostLimits(
        cpus=len(allocatable.cpu_ids),
        gpus=len(allocatable.gpu_ids),
        ram=allocatable.ram,
        storage=allocatable.storage,
    )
    problems = exceeded_limits(
        cpu=request.cpu, gpu=request.gpu, ram=request.ram, storage=request.storage, host=host
    )
    return [f"{name}: {message}" for name, message in problems]


def _shortfalls(request: Request, free: _Free) -> list[str]:
    reasons = []
    if request.cpu > len(free.cpus):
        reasons.append(f"Insufficient cpu: requested {request.cpu}, free {len(free.cpus)}")
    if request.gpu > free.gpus_available():
        reasons.append(f"Insufficient gpu: requested {request.gpu}, free {free.gpus_available()}")
    if request.ram > free.ram:
        reasons.append(
            f"Insufficient ram: requested {format_size(request.ram)}, "
            f"free {format_size_floor(free.ram)}"
        )
    if request.storage > free.storage:
        reasons.append(
            f"Insufficient storage: requested {format_size(request.storage)}, "
            f"free {format_size_floor(free.storage)}"
        )
    return reasons


def _free_now(allocatable: Allocatable, holdings: Sequence[Holding]) -> _Free:
    free = _Free(
        cpus=set(allocatable.cpu_ids),
        gpu_slots={gpu: allocatable.gpu_sharing for gpu in allocatable.gpu_ids},
        ram=allocatable.ram,
        storage=allocatable.storage,
    )
    for holding in holdings:
        _take(free, holding.cpus, holding.gpus, holding.ram, holding.storage)
    return free


def _take(free: _Free, cpus: Sequence[int], gpus: Sequence[int], ram: int, storage: int) -> None:
    free.cpus.difference_update(cpus)
    for gpu in gpus:
        if gpu in free.gpu_slots:
            free.gpu_slots[gpu] -= 1
    free.ram -= ram
    free.storage -= storage


def _give(free: _Free, holding: Holding) -> None:
    free.cpus.update(holding.cpus)
    for gpu in holding.gpus:
        if gpu in free.gpu_slots:
            free.gpu_slots[gpu] += 1
    free.ram += holding.ram
    free.storage += holding.storage


def _choose(request: Request, free: _Free) -> Placement:
    cpus = tuple(sorted(free.cpus)[: request.cpu])
    # Spread shared GPUs: the ones with the most free shares first, then by id.
    open_gpus = sorted(
        (gpu for gpu, n in free.gpu_slots.items() if n > 0),
        key=lambda gpu: (-free.gpu_slots[gpu], gpu),
    )
    gpus = tuple(sorted(open_gpus[: request.gpu]))
    return Placement(request.task_id, cpus, gpus)


@dataclass
class _Reservation:
    """The head's claim: when it can start, and what is left over for backfill past then."""

    head_id: str
    starts_in: float
    after_task: str
    spare_cpus: int
    spare_gpus: int
    spare_ram: int
    spare_storage: int

    def admits(self, request: Request) -> bool:
        return (
            request.cpu <= self.spare_cpus
            and request.gpu <= self.spare_gpus
            and request.ram <= self.spare_ram
            and request.storage <= self.spare_storage
        )

    def consume(self, request: Request) -> None:
        self.spare_cpus -= request.cpu
        self.spare_gpus -= request.gpu
        self.spare_ram -= request.ram
        self.spare_storage -= request.storage


def _reserve(request: Request, free: _Free, holdings: Sequence[Holding]) -> _Reservation | None:
    future = _Free(set(free.cpus), dict(free.gpu_slots), free.ram, free.storage)
    for holding in sorted(holdings, key=lambda h: h.ends_in):
        _give(future, holding)
        if not _shortfalls(request, future):
            return _Reservation(
                head_id=request.task_id,
                starts_in=max(holding.ends_in, 0.0),
                after_task=holding.task_id,
                spare_cpus=len(future.cpus) - request.cpu,
                spare_gpus=future.gpus_available() - request.gpu,
                spare_ram=future.ram - request.ram,
                spare_storage=future.storage - request.storage,
            )
    return None


def place(
    pending: Sequence[Request], allocatable: Allocatable, holdings: Sequence[Holding]
) -> Plan:
    """Decide which pending tasks (in arrival order) start now, and why the others wait."""
    plan = Plan()
    free = _free_now(allocatable, holdings)
    holdings = list(holdings)
    reservation: _Reservation | None = None
    for request in pending:
        impossible = never_fits(request, allocatable)
        if impossible:
            plan.never_fits.append(Wait(request.task_id, "; ".join(impossible)))
            continue
        short = _shortfalls(request, free)
        if reservation is None:
            if not short:
                placement = _choose(request, free)
                _take(free, placement.cpus, placement.gpus, request.ram, request.storage)
                holdings.append(
                    Holding(
                        request.task_id,
                        placement.cpus,
                        placement.gpus,
                        request.ram,
                        request.storage,
                        request.runs_for,
                    )
                )
                plan.placements.append(placement)
                continue
            reservation = _reserve(request, free, holdings)
            when = (
                # Named by the task it waits for, not by seconds: the message stays the same
                # from pass to pass, so waiting tasks are not rewritten every second.
                f"; next in line, starts once task {reservation.after_task} ends"
                if reservation is not None
                else ""
            )
            plan.waiting.append(Wait(request.task_id, "; ".join(short) + when))
            continue
        ends_before_head = request.runs_for <= reservation.starts_in
        if not short and (ends_before_head or reservation.admits(request)):
            placement = _choose(request, free)
            _take(free, placement.cpus, placement.gpus, request.ram, request.storage)
            if not ends_before_head:
                reservation.consume(request)
            plan.placements.append(placement)
            continue
        why = "; ".join(short) if short else "would delay an earlier task"
        # Not named by the head: the head changes with every start, and a message naming it
        # would rewrite every task in the queue on every pass (a burst's cost going quadratic).
        plan.waiting.append(Wait(request.task_id, f"{why}; queued behind an earlier task"))
    return plan
