"""The warm pool on its own: sizing from free RAM and the queue, claims, refills, expiry."""

import itertools
import threading
import time

import pytest

from controller.warm_pool import Warm, WarmPool, warm_targets

MB = 1 << 20


def test_the_pool_lives_in_ram_no_task_holds() -> None:
    targets = warm_targets(size=4, idle_ram=32 * MB, free_ram=70 * MB, waiting=[], recent=[64 * MB])
    assert targets == {64 * MB: 2}


def test_no_free_ram_no_pool() -> None:
    assert (
        warm_targets(size=4, idle_ram=32 * MB, free_ram=0, waiting=[1 * MB], recent=[1 * MB]) == {}
    )
    assert (
        warm_targets(size=4, idle_ram=32 * MB, free_ram=-5 * MB, waiting=[], recent=[1 * MB]) == {}
    )


def test_size_zero_turns_it_off() -> None:
    assert (
        warm_targets(
            size=0,
            idle_ram=32 * MB,
            free_ram=10_000 * MB,
            waiting=[1 * MB],
            recent=[1 * MB],
        )
        == {}
    )


def test_waiting_tasks_sizes_come_first_then_the_most_used() -> None:
    targets = warm_targets(
        size=4,
        idle_ram=MB,
        free_ram=1000 * MB,
        waiting=[5 * MB, 7 * MB],
        recent=[1 * MB, 2 * MB, 2 * MB],
    )
    assert targets == {5 * MB: 1, 7 * MB: 1, 2 * MB: 2}


@pytest.mark.parametrize(
    ("size", "slots", "waiting", "free_ram", "expected"),
    [
        pytest.param(2, 8, 200, 1000, 8, id="a long queue: one per slot"),
        pytest.param(2, 8, 3, 1000, 3, id="a short queue: one per waiting task"),
        pytest.param(2, 8, 0, 1000, 2, id="no queue: the configured size"),
        pytest.param(10, 8, 200, 1000, 10, id="a larger configured size stays"),
        pytest.param(2, 8, 200, 5, 5, id="never beyond the RAM no task holds"),
        pytest.param(0, 8, 200, 1000, 0, id="size 0 keeps it off"),
    ],
)
def test_a_queue_grows_the_pool_to_a_container_per_slot(
    size: int, slots: int, waiting: int, free_ram: int, expected: int
) -> None:
    targets = warm_targets(
        size=size,
        idle_ram=MB,
        free_ram=free_ram * MB,
        waiting=[5 * MB] * waiting,
        recent=[5 * MB],
        slots=slots,
    )
    assert sum(targets.values()) == expected


def test_a_long_queue_fills_the_whole_budget_with_its_own_sizes() -> None:
    targets = warm_targets(
        size=3,
        idle_ram=MB,
        free_ram=1000 * MB,
        waiting=[5 * MB] * 200,
        recent=[1 * MB],
    )
    assert targets == {5 * MB: 3}


class Engine:
    """Stands in for the container engine: counts what was made and discarded."""

    def __init__(self, fail: bool = False) -> None:
        self.names = itertools.count()
        self.made: list[str] = []
        self.discarded: list[str] = []
        self.fail = fail
        self.lock = threading.Lock()

    def make(self, key: str) -> Warm[str]:
        if self.fail:
            raise OSError("engine down")
        with self.lock:
            name = f"{key}-{next(self.names)}"
            self.made.append(name)
        return Warm(name=name, key=key, created=time.monotonic(), stdin=None)

    def discard(self, warm: Warm[str]) -> None:
        with self.lock:
            self.discarded.append(warm.name)


def wait_until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_fills_to_target_and_each_claim_is_single_use() -> None:
    engine = Engine()
    pool: WarmPool[str] = WarmPool(engine.make, engine.discard, max_idle_seconds=60)
    pool.want({"a": 2})
    wait_until(lambda: pool.ready_count() == 2)

    first, second = pool.claim("a"), pool.claim("a")
    assert first is not None and second is not None
    assert first.name != second.name
    wait_until(lambda: pool.ready_count() == 2)  # refilled in the background
    third = pool.claim("a")
    assert third is not None and third.name not in {first.name, second.name}
    assert pool.claim("other") is None
    pool.close()
    assert len(engine.discarded) == 1  # the one left unclaimed; claimed ones are the caller's
    assert set(engine.discarded).isdisjoint({first.name, second.name, third.name})


def test_shrinking_the_target_discards_the_surplus() -> None:
    engine = Engine()
    pool: WarmPool[str] = WarmPool(engine.make, engine.discard, max_idle_seconds=60)
    pool.want({"a": 3})
    wait_until(lambda: pool.ready_count() == 3)
    pool.want({"a": 1})
    assert pool.ready_count() == 1
    assert len(engine.discarded) == 2
    pool.want({})
    assert pool.ready_count() == 0
    pool.close()
    assert sorted(engine.discarded) == sorted(engine.made)


def test_a_stale_container_is_discarded_at_claim() -> None:
    engine = Engine()
    skew = [0.0]
    pool: WarmPool[str] = WarmPool(
        engine.make, engine.discard, max_idle_seconds=60, clock=lambda: time.monotonic() + skew[0]
    )
    pool.want({"a": 1})
    wait_until(lambda: pool.ready_count() == 1)
    stale = engine.made[0]
    skew[0] = 120.0
    assert pool.claim("a") is None
    assert stale in engine.discarded
    pool.close()


def test_an_engine_that_fails_leaves_the_pool_empty_and_claims_fall_back() -> None:
    engine = Engine(fail=True)
    pool: WarmPool[str] = WarmPool(engine.make, engine.discard, max_idle_seconds=60)
    pool.want({"a": 2})
    wait_until(lambda: pool.failures >= 1)
    assert pool.claim("a") is None
    pool.close()


def pool_after_a_claim(refill_delay: float) -> tuple[Engine, WarmPool[str], float]:
    """A pool of one container, filled (the first fill does not wait: no claim yet), whose
    container was then claimed; and the moment just before the claim."""
    engine = Engine()
    pool: WarmPool[str] = WarmPool(
        engine.make, engine.discard, max_idle_seconds=60, refill_delay_seconds=refill_delay
    )
    pool.want({"a": 1})
    wait_until(lambda: pool.ready_count() == 1)
    claimed_at = time.monotonic()
    assert pool.claim("a") is not None
    return engine, pool, claimed_at


def test_a_refill_leaves_the_claimed_container_its_start() -> None:
    engine, pool, claimed_at = pool_after_a_claim(refill_delay=0.5)

    wait_until(lambda: pool.ready_count() == 1)  # refilled, but only once the delay was over

    assert time.monotonic() - claimed_at >= 0.5
    assert len(engine.made) == 2
    pool.close()


def test_closing_the_pool_cuts_a_refill_delay_short() -> None:
    engine, pool, _ = pool_after_a_claim(refill_delay=60)
    # A fill is counted, under the pool's lock, just before it waits out the delay.
    wait_until(lambda: pool.filling_count() == 1)

    began = time.monotonic()
    pool.close()

    assert time.monotonic() - began < 30  # not the 60 s delay: close woke the worker
    assert engine.made == ["a-0"]  # and nothing was made after the pool closed


def test_a_refill_no_longer_wanted_after_its_delay_makes_nothing() -> None:
    engine, pool, _ = pool_after_a_claim(refill_delay=0.5)
    wait_until(lambda: pool.filling_count() == 1)  # a worker is waiting out the delay
    pool.want({})  # tasks took the RAM: the pool shrinks to nothing

    # Past the delay, the worker drops the fill; had it made a container, the fill would
    # have been counted until the container was made.
    wait_until(lambda: pool.filling_count() == 0)

    assert engine.made == ["a-0"]
    pool.close()


def test_the_pool_keeps_warm_containers_of_the_runtimes_that_start_next() -> None:
    targets = warm_targets(
        size=3,
        idle_ram=32 * MB,
        free_ram=1024 * MB,
        waiting=[("node", 64 * MB)],
        recent=[("python", 64 * MB), ("java", 64 * MB), ("java", 64 * MB)],
    )
    assert targets == {("node", 64 * MB): 1, ("java", 64 * MB): 2}


class GatedEngine(Engine):
    """An engine whose containers are made only once `go` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def make(self, key: str) -> Warm[str]:
        assert self.go.wait(timeout=10)
        return super().make(key)


def test_a_claim_waits_for_the_container_being_made_instead_of_starting_cold() -> None:
    engine = GatedEngine()
    pool: WarmPool[str] = WarmPool(
        engine.make, engine.discard, max_idle_seconds=60, refill_delay_seconds=0
    )
    pool.want({"a": 1})
    wait_until(lambda: pool.filling_count() == 1)  # a worker is making one
    threading.Timer(0.2, engine.go.set).start()

    warm = pool.claim("a", wait=10)

    assert warm is not None and warm.name == "a-0"
    pool.close()


def test_a_claim_does_not_wait_where_nothing_is_being_made() -> None:
    engine = GatedEngine()
    pool: WarmPool[str] = WarmPool(engine.make, engine.discard, max_idle_seconds=60)
    pool.want({"a": 1})
    wait_until(lambda: pool.filling_count() == 1)

    began = time.monotonic()
    assert pool.claim("b", wait=10) is None  # no fill for this key: answered at once
    assert time.monotonic() - began < 5
    engine.go.set()
    pool.close()


def test_a_claim_gives_up_waiting_after_its_bound() -> None:
    engine = GatedEngine()
    pool: WarmPool[str] = WarmPool(engine.make, engine.discard, max_idle_seconds=60)
    pool.want({"a": 1})
    wait_until(lambda: pool.filling_count() == 1)

    began = time.monotonic()
    assert pool.claim("a", wait=0.3) is None  # the fill hangs: the caller starts cold
    assert time.monotonic() - began >= 0.3
    engine.go.set()
    pool.close()


def test_a_claim_does_not_wait_for_a_container_no_longer_wanted() -> None:
    engine = GatedEngine()
    pool: WarmPool[str] = WarmPool(engine.make, engine.discard, max_idle_seconds=60)
    pool.want({"a": 1})
    wait_until(lambda: pool.filling_count() == 1)
    pool.want({})  # it will be discarded when made

    began = time.monotonic()
    assert pool.claim("a", wait=10) is None
    assert time.monotonic() - began < 5
    engine.go.set()
    pool.close()
