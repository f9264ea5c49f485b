"""Truth tables and invariants of `controller.scheduling.place`.

`place(pending, allocatable, holdings)` is pure: the tests build the queue, the host and what
running tasks hold, and check which tasks start, on which cores and GPUs, and why others wait.
"""

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.scheduling import Allocatable, Holding, Placement, Plan, Request, place

MIB = 1024 * 1024
GIB = 1024 * MIB


def request(
    task_id: str,
    *,
    cpu: int = 1,
    gpu: int = 0,
    ram: int = 64 * MIB,
    storage: int = 64 * MIB,
    runs_for: float = 30,
) -> Request:
    return Request(task_id, cpu, gpu, ram, storage, runs_for)


def host(
    *,
    cpus: int = 4,
    gpus: int = 0,
    ram: int = 4 * GIB,
    storage: int = 10 * GIB,
    gpu_sharing: int = 1,
) -> Allocatable:
    return Allocatable(tuple(range(cpus)), tuple(range(gpus)), ram, storage, gpu_sharing)


def holding(
    task_id: str,
    *,
    cpus: tuple[int, ...] = (),
    gpus: tuple[int, ...] = (),
    ram: int = 64 * MIB,
    storage: int = 64 * MIB,
    ends_in: float = 100,
) -> Holding:
    return Holding(task_id, cpus, gpus, ram, storage, ends_in)


def placed(plan: Plan) -> dict[str, Placement]:
    return {p.task_id: p for p in plan.placements}


def waiting(plan: Plan) -> dict[str, str]:
    return {w.task_id: w.message for w in plan.waiting}


def never(plan: Plan) -> dict[str, str]:
    return {w.task_id: w.message for w in plan.never_fits}


# --- truth table: one request against a partly used host --------------------------------------


@pytest.mark.parametrize(
    ("req", "holdings", "message"),
    [
        pytest.param(
            request("t", cpu=2),
            [holding("h", cpus=(0, 1, 2))],
            "Insufficient cpu: requested 2, free 1",
            id="insufficient-cpu",
        ),
        pytest.param(
            request("t", ram=512 * MIB),
            [holding("h", ram=4 * GIB - 256 * MIB)],
            "Insufficient ram: requested 512MB, free 256MB",
            id="insufficient-ram",
        ),
        pytest.param(
            request("t", storage=2 * GIB),
            [holding("h", storage=9 * GIB)],
            "Insufficient storage: requested 2GB, free 1GB",
            id="insufficient-storage",
        ),
        pytest.param(
            request("t", gpu=1),
            [holding("h", gpus=(0, 1))],
            "Insufficient gpu: requested 1, free 0",
            id="insufficient-gpu",
        ),
    ],
)
def test_request_that_does_not_fit_now_waits_with_the_reason(
    req: Request, holdings: list[Holding], message: str
) -> None:
    plan = place([req], host(gpus=2), holdings)
    assert plan.placements == []
    assert plan.never_fits == []
    assert message in waiting(plan)["t"]


def test_every_shortfall_is_listed() -> None:
    plan = place(
        [request("t", cpu=2, ram=512 * MIB)],
        host(),
        [holding("h", cpus=(0, 1, 2), ram=4 * GIB - 256 * MIB)],
    )
    message = waiting(plan)["t"]
    assert "Insufficient cpu: requested 2, free 1" in message
    assert "Insufficient ram: requested 512MB, free 256MB" in message


def test_waiting_head_says_when_it_expects_to_start() -> None:
    plan = place([request("t", cpu=4)], host(), [holding("h", cpus=(0,), ends_in=42)])
    assert waiting(plan)["t"].endswith("next in line, starts once task h ends")


@pytest.mark.parametrize(
    ("req", "field", "text"),
    [
        pytest.param(
            request("t", cpu=5),
            "cpu",
            "requested 5 CPUs, this host can allocate 4",
            id="more-cpus-than-host",
        ),
        pytest.param(
            request("t", gpu=1),
            "gpu",
            "requested 1 GPU, this host can allocate 0",
            id="gpu-on-host-without-gpus",
        ),
        pytest.param(
            request("t", ram=8 * GIB),
            "ram",
            "requested 8GB RAM, this host can allocate 4GB",
            id="more-ram-than-host",
        ),
        pytest.param(
            request("t", storage=20 * GIB),
            "storage",
            "requested 20GB storage, this host can allocate 10GB",
            id="more-storage-than-host",
        ),
    ],
)
def test_request_beyond_the_whole_host_never_fits(req: Request, field: str, text: str) -> None:
    plan = place([req], host(), [])
    assert plan.placements == []
    assert plan.waiting == []
    assert never(plan)["t"] == f"{field}: {text}"


def test_never_fitting_request_does_not_block_the_queue() -> None:
    plan = place([request("huge", cpu=64), request("small")], host(), [])
    assert "huge" in never(plan)
    assert placed(plan)["small"].cpus == (0,)


def test_request_that_fits_gets_the_lowest_free_cores() -> None:
    plan = place([request("t", cpu=2)], host(), [holding("h", cpus=(0, 2))])
    assert plan.placements == [Placement("t", (1, 3), ())]
    assert plan.waiting == [] and plan.never_fits == []


def test_each_task_gets_distinct_cores() -> None:
    plan = place(
        [request("a", cpu=2), request("b", cpu=1), request("c", cpu=1)],
        host(cpus=6),
        [holding("h", cpus=(1, 4))],
    )
    assert [p.cpus for p in plan.placements] == [(0, 2), (3,), (5,)]


def test_best_effort_task_gets_no_cores() -> None:
    plan = place([request("t", cpu=0)], host(), [holding("h", cpus=(0, 1, 2, 3))])
    assert plan.placements == [Placement("t", (), ())]


def test_first_come_first_served_when_both_want_every_cpu() -> None:
    plan = place([request("first", cpu=4), request("second", cpu=4)], host(), [])
    assert plan.placements == [Placement("first", (0, 1, 2, 3), ())]
    assert "Insufficient cpu: requested 4, free 0" in waiting(plan)["second"]


def test_later_request_does_not_overtake_a_head_it_would_delay() -> None:
    # The head needs all 4 cores at t=100 when "h" ends; a 1-core task running 500 s would
    # still hold a core then.
    plan = place(
        [request("head", cpu=4), request("long", cpu=1, runs_for=500)],
        host(),
        [holding("h", cpus=(0, 1), ends_in=100)],
    )
    assert plan.placements == []
    assert waiting(plan)["long"] == "would delay an earlier task; queued behind an earlier task"


def test_short_task_is_backfilled_when_it_ends_before_the_head_can_start() -> None:
    plan = place(
        [request("head", cpu=4), request("short", cpu=1, runs_for=10)],
        host(),
        [holding("h", cpus=(0, 1), ends_in=100)],
    )
    assert placed(plan) == {"short": Placement("short", (2,), ())}
    assert "head" in waiting(plan)


def test_task_ending_exactly_when_the_head_starts_is_backfilled() -> None:
    plan = place(
        [request("head", cpu=4), request("short", cpu=1, runs_for=100)],
        host(),
        [holding("h", cpus=(0, 1), ends_in=100)],
    )
    assert list(placed(plan)) == ["short"]


def test_long_task_is_backfilled_on_capacity_the_head_will_not_need() -> None:
    # At t=100 all 4 cores are free and the head needs 2: 2 spare cores for long tasks.
    plan = place(
        [
            request("head", cpu=2),
            request("long1", cpu=1, runs_for=500),
            request("long2", cpu=1, runs_for=500),
        ],
        host(),
        [holding("h", cpus=(0, 1, 2), ends_in=100)],
    )
    assert placed(plan) == {"long1": Placement("long1", (3,), ())}
    assert waiting(plan)["long2"].startswith("Insufficient cpu: requested 1, free 0")


def test_long_tasks_share_the_spare_capacity_rather_than_each_using_all_of_it() -> None:
    # At t=100 the head takes 3 of 4 cores: one spare core, though two are free now.
    plan = place(
        [
            request("head", cpu=3),
            request("long1", cpu=1, runs_for=500),
            request("long2", cpu=1, runs_for=500),
        ],
        host(),
        [holding("h", cpus=(0, 1), ends_in=100)],
    )
    assert placed(plan) == {"long1": Placement("long1", (2,), ())}
    assert waiting(plan)["long2"] == "would delay an earlier task; queued behind an earlier task"


def test_backfill_counts_spare_ram_not_only_cores() -> None:
    plan = place(
        [request("head", cpu=4, ram=3 * GIB), request("long", cpu=0, ram=2 * GIB, runs_for=500)],
        host(),
        [holding("h", cpus=(0,), ram=512 * MIB, ends_in=100)],
    )
    assert plan.placements == []
    assert "would delay an earlier task" in waiting(plan)["long"]


def test_request_behind_a_waiting_head_says_it_is_queued() -> None:
    plan = place(
        [request("head", cpu=4), request("next", cpu=4)],
        host(),
        [holding("h", cpus=(0,))],
    )
    assert waiting(plan)["next"] == (
        "Insufficient cpu: requested 4, free 3; queued behind an earlier task"
    )


def test_a_queued_request_keeps_its_message_when_the_head_changes() -> None:
    # Each start makes a new head; the tasks behind it must not get a new message (a write
    # each) for it.
    before = place(
        [request("a", cpu=4), request("b", cpu=4), request("c", cpu=4)],
        host(),
        [holding("h", cpus=(0, 1, 2, 3))],
    )
    after = place(
        [request("b", cpu=4), request("c", cpu=4)], host(), [holding("a", cpus=(0, 1, 2, 3))]
    )
    assert waiting(before)["c"] == waiting(after)["c"]


def test_shared_gpu_takes_two_gpu_tasks() -> None:
    plan = place([request("a", gpu=1), request("b", gpu=1)], host(gpus=1, gpu_sharing=2), [])
    assert placed(plan)["a"].gpus == (0,)
    assert placed(plan)["b"].gpus == (0,)


def test_shared_gpus_are_spread_before_they_are_shared() -> None:
    plan = place([request("a", gpu=1), request("b", gpu=1)], host(gpus=2, gpu_sharing=2), [])
    assert {placed(plan)["a"].gpus, placed(plan)["b"].gpus} == {(0,), (1,)}


def test_shared_gpu_already_held_by_one_task_takes_one_more() -> None:
    plan = place(
        [request("a", gpu=1), request("b", gpu=1)],
        host(gpus=1, gpu_sharing=2),
        [holding("h", gpus=(0,))],
    )
    assert placed(plan) == {"a": Placement("a", (0,), (0,))}
    assert "Insufficient gpu: requested 1, free 0" in waiting(plan)["b"]


def test_unshared_gpu_goes_to_one_task_only() -> None:
    plan = place([request("a", gpu=1), request("b", gpu=1)], host(gpus=1, gpu_sharing=1), [])
    assert placed(plan) == {"a": Placement("a", (0,), (0,))}
    assert "Insufficient gpu: requested 1, free 0" in waiting(plan)["b"]


def test_multi_gpu_request_gets_distinct_gpus_even_when_shared() -> None:
    plan = place([request("t", gpu=2)], host(gpus=2, gpu_sharing=3), [])
    assert placed(plan)["t"].gpus == (0, 1)


# --- properties ---------------------------------------------------------------------------------


@st.composite
def scenarios(
    draw: st.DrawFn, cores_only: bool = False
) -> tuple[Allocatable, list[Holding], list[Request]]:
    """A host, holdings that fit it, and a queue of requests (some of which never fit).

    `cores_only` leaves out GPUs, RAM and storage, so that the cases where cores alone decide
    (several backfill candidates competing for the head's spare cores) come up often.
    """
    cpu_ids = tuple(sorted(draw(st.sets(st.integers(0, 15), min_size=1, max_size=8))))
    gpu_ids = () if cores_only else tuple(sorted(draw(st.sets(st.integers(0, 7), max_size=3))))
    sharing = draw(st.integers(1, 3))
    ram = 0 if cores_only else draw(st.integers(0, 16)) * 256 * MIB
    storage = 0 if cores_only else draw(st.integers(0, 16)) * GIB
    allocatable = Allocatable(cpu_ids, gpu_ids, ram, storage, sharing)

    # A few round durations make "ends before the head starts" and its opposite both common.
    durations = st.one_of(st.sampled_from([10.0, 100.0, 500.0]), st.floats(1, 600))
    free_cpus = list(cpu_ids)
    gpu_slots = dict.fromkeys(gpu_ids, sharing)
    free_ram, free_storage = ram, storage
    holdings = []
    for n in range(draw(st.integers(0, 4))):
        cpus = draw(st.lists(st.sampled_from(free_cpus), unique=True)) if free_cpus else []
        open_gpus = [g for g, slots in gpu_slots.items() if slots > 0]
        gpus = draw(st.lists(st.sampled_from(open_gpus), unique=True)) if open_gpus else []
        held_ram = draw(st.one_of(st.just(0), st.integers(0, free_ram // MIB))) * MIB
        held_storage = draw(st.one_of(st.just(0), st.integers(0, free_storage // MIB))) * MIB
        for cpu in cpus:
            free_cpus.remove(cpu)
        for gpu in gpus:
            gpu_slots[gpu] -= 1
        free_ram -= held_ram
        free_storage -= held_storage
        holdings.append(
            Holding(
                f"held{n}",
                tuple(sorted(cpus)),
                tuple(sorted(gpus)),
                held_ram,
                held_storage,
                draw(durations),
            )
        )

    def amount(most: int, unit: int) -> int:
        # Mostly small amounts, so that queues with several fitting requests are common.
        if unit != 1 and cores_only:
            return 0
        return draw(st.one_of(st.just(0), st.integers(0, 2), st.integers(0, most + 1))) * unit

    pending = [
        Request(
            f"task{n}",
            cpu=amount(len(cpu_ids), 1),
            gpu=0 if cores_only else amount(len(gpu_ids), 1),
            ram=amount(ram // (256 * MIB), 256 * MIB),
            storage=amount(storage // GIB, GIB),
            runs_for=draw(durations),
        )
        for n in range(draw(st.integers(0, 8)))
    ]
    return allocatable, holdings, pending


def free_after(allocatable: Allocatable, holdings: list[Holding]) -> tuple[int, int, int, int]:
    """Free (cores, GPUs with a free share, ram, storage) once `holdings` are taken."""
    cpus = set(allocatable.cpu_ids).difference(c for h in holdings for c in h.cpus)
    shares = Counter(g for h in holdings for g in h.gpus)
    gpus = sum(1 for g in allocatable.gpu_ids if shares[g] < allocatable.gpu_sharing)
    ram = allocatable.ram - sum(h.ram for h in holdings)
    storage = allocatable.storage - sum(h.storage for h in holdings)
    return len(cpus), gpus, ram, storage


def fits(req: Request, free: tuple[int, int, int, int]) -> bool:
    cpus, gpus, ram, storage = free
    return req.cpu <= cpus and req.gpu <= gpus and req.ram <= ram and req.storage <= storage


def earliest_start(req: Request, allocatable: Allocatable, holdings: list[Holding]) -> float:
    """When `req` could start if each holding ends at its `ends_in` and nothing else starts."""
    for at in sorted({0.0, *(h.ends_in for h in holdings)}):
        if fits(req, free_after(allocatable, [h for h in holdings if h.ends_in > at])):
            return at
    return float("inf")


def as_holdings(plan: Plan, pending: list[Request]) -> list[Holding]:
    by_id = {r.task_id: r for r in pending}
    return [
        Holding(
            p.task_id,
            p.cpus,
            p.gpus,
            by_id[p.task_id].ram,
            by_id[p.task_id].storage,
            by_id[p.task_id].runs_for,
        )
        for p in plan.placements
    ]


PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


@PROPERTY_SETTINGS
@given(scenarios())
def test_allocated_never_exceeds_allocatable(
    scenario: tuple[Allocatable, list[Holding], list[Request]],
) -> None:
    allocatable, holdings, pending = scenario
    plan = place(pending, allocatable, holdings)
    everyone = holdings + as_holdings(plan, pending)

    assert sum(len(h.cpus) for h in everyone) <= len(allocatable.cpu_ids)
    assert sum(h.ram for h in everyone) <= allocatable.ram
    assert sum(h.storage for h in everyone) <= allocatable.storage
    shares = Counter(g for h in everyone for g in h.gpus)
    assert all(n <= allocatable.gpu_sharing for n in shares.values())
    assert set(shares) <= set(allocatable.gpu_ids)


@PROPERTY_SETTINGS
@given(scenarios())
def test_each_placement_gets_what_it_asked_for_on_this_host(
    scenario: tuple[Allocatable, list[Holding], list[Request]],
) -> None:
    allocatable, holdings, pending = scenario
    plan = place(pending, allocatable, holdings)
    by_id = {r.task_id: r for r in pending}
    for p in plan.placements:
        assert len(set(p.cpus)) == len(p.cpus) == by_id[p.task_id].cpu
        assert len(set(p.gpus)) == len(p.gpus) == by_id[p.task_id].gpu
        assert set(p.cpus) <= set(allocatable.cpu_ids)
        assert set(p.gpus) <= set(allocatable.gpu_ids)


@PROPERTY_SETTINGS
@given(scenarios())
def test_no_core_is_given_to_two_tasks(
    scenario: tuple[Allocatable, list[Holding], list[Request]],
) -> None:
    allocatable, holdings, pending = scenario
    plan = place(pending, allocatable, holdings)
    cores = [c for h in holdings for c in h.cpus] + [c for p in plan.placements for c in p.cpus]
    assert len(cores) == len(set(cores))


@PROPERTY_SETTINGS
@given(scenarios())
def test_unshared_gpu_is_never_given_to_two_tasks(
    scenario: tuple[Allocatable, list[Holding], list[Request]],
) -> None:
    allocatable, holdings, pending = scenario
    allocatable = Allocatable(
        allocatable.cpu_ids,
        allocatable.gpu_ids,
        allocatable.ram,
        allocatable.storage,
        gpu_sharing=1,
    )
    # Holdings drawn for a shared host may share a GPU; keep the first holder of each.
    seen: set[int] = set()
    unshared = []
    for h in holdings:
        gpus = tuple(g for g in h.gpus if g not in seen)
        seen.update(gpus)
        unshared.append(Holding(h.task_id, h.cpus, gpus, h.ram, h.storage, h.ends_in))
    plan = place(pending, allocatable, unshared)
    gpus = [g for h in unshared for g in h.gpus] + [g for p in plan.placements for g in p.gpus]
    assert len(gpus) == len(set(gpus))


@PROPERTY_SETTINGS
@given(scenarios())
def test_every_request_gets_exactly_one_answer(
    scenario: tuple[Allocatable, list[Holding], list[Request]],
) -> None:
    allocatable, holdings, pending = scenario
    plan = place(pending, allocatable, holdings)
    answered = (
        [p.task_id for p in plan.placements]
        + [w.task_id for w in plan.waiting]
        + [w.task_id for w in plan.never_fits]
    )
    assert sorted(answered) == sorted(r.task_id for r in pending)
    assert all(w.message for w in plan.waiting + plan.never_fits)


@PROPERTY_SETTINGS
@given(scenarios())
def test_head_that_fits_is_placed(
    scenario: tuple[Allocatable, list[Holding], list[Request]],
) -> None:
    allocatable, holdings, pending = scenario
    if not pending:
        return
    head = pending[0]
    plan = place(pending, allocatable, holdings)
    assert (head.task_id in placed(plan)) == fits(head, free_after(allocatable, holdings))


@PROPERTY_SETTINGS
@given(st.one_of(scenarios(), scenarios(cores_only=True)))
def test_backfill_never_delays_the_first_waiting_task(
    scenario: tuple[Allocatable, list[Holding], list[Request]],
) -> None:
    allocatable, holdings, pending = scenario
    plan = place(pending, allocatable, holdings)
    waiting_ids = {w.task_id for w in plan.waiting}
    heads = [i for i, r in enumerate(pending) if r.task_id in waiting_ids]
    if not heads:
        return
    head = pending[heads[0]]
    started = as_holdings(plan, pending)
    before_head = {r.task_id for r in pending[: heads[0]]}
    fcfs = [h for h in started if h.task_id in before_head]
    assert earliest_start(head, allocatable, holdings + started) <= earliest_start(
        head, allocatable, holdings + fcfs
    )


@PROPERTY_SETTINGS
@given(scenarios())
def test_placement_is_deterministic(
    scenario: tuple[Allocatable, list[Holding], list[Request]],
) -> None:
    allocatable, holdings, pending = scenario
    assert place(pending, allocatable, holdings) == place(pending, allocatable, holdings)
