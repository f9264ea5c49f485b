"""Warm containers: started before any code arrives, each claimed by exactly one task.

A cold start (create, then start) costs the engine about a quarter of a second; a warm one costs
a limits update and a rename. The pool keeps a few containers per storage size started and
waiting on stdin, with the same hardening as a cold container and an idle memory limit. When a
task claims one, the runtime fits it to the task's placement (cores, CPU quota, memory), renames
it to the attempt's deterministic name and delivers the code. A claimed container is never
returned to the pool: it is removed with its task like any other.

`WarmPool` is engine-agnostic (the runtime passes in how to make and discard a container);
`warm_targets` decides, from free capacity and the queue, how many to keep.
"""

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger("taskyard.controller")

# Two at once: the engine creates containers faster side by side on a multi-core host.
FILL_WORKERS = 2
# How long a failed fill waits before the next try, so a broken engine is not hammered.
FILL_BACKOFF_SECONDS = 2.0
# How long after a claim the refill it calls for waits to start. The claimed container is then
# being fitted and given its code, and the code starts: a container start at the same moment
# competes with it for the engine and the cores. Measured on 2 cores (deploy/bench.py, side by
# side): Example 1 took a median 110 ms with refills starting at once and 80 to 91 ms with this
# delay; the burst of 200 tasks did not change (0.87× to 0.92× of `docker run` either way).
REFILL_DELAY_SECONDS = 0.15


K = TypeVar("K", bound=Hashable)
S = TypeVar("S", bound=Hashable)  # a shape of warm container: what `warm_targets` counts


@dataclass
class Warm(Generic[K]):
    """One started container waiting for its code, and the open stdin that will carry it."""

    name: str
    key: K  # what it can be claimed for
    created: float  # time.monotonic() when it was started
    stdin: Any  # the runtime's handle on the container's stdin
    engine_id: str = ""  # the engine's id for it, where the runtime has one


def warm_targets(
    *,
    size: int,
    idle_ram: int,
    free_ram: int,
    waiting: Sequence[S],
    recent: Sequence[S],
    slots: int = 0,
) -> dict[S, int]:
    """How many warm containers to keep per shape (a runtime and a storage size).

    The scheduler does not count the pool, so the pool can never keep a queued task from its
    slots; instead the pool lives in the RAM that no task holds (`idle_ram` per container, at
    most `size`) and shrinks as tasks take that RAM. While a queue waits, the pool grows to one
    container per CPU slot (`slots`) where `size` is smaller, so that each slot that frees finds
    its next container started. Waiting tasks' shapes come first (they start next); the rest
    goes to the shape started most lately.
    """
    if size <= 0 or idle_ram <= 0:
        return {}
    budget = min(max(size, min(len(waiting), slots)), max(0, free_ram) // idle_ram)
    targets: Counter[S] = Counter()
    for shape in waiting:
        if sum(targets.values()) >= budget:
            break
        targets[shape] += 1
    left = budget - sum(targets.values())
    if left > 0 and recent:
        targets[Counter(recent).most_common(1)[0][0]] += left
    return dict(targets)


class WarmPool(Generic[K]):
    """Keeps a target number of warm containers per key, filled by background threads.

    A key names what a container can be claimed for (the runtime uses everything that cannot be
    changed after creation: image, storage size, limits, runtime)."""

    def __init__(
        self,
        make: Callable[[K], Warm[K]],
        discard: Callable[[Warm[K]], None],
        *,
        max_idle_seconds: float,
        refill_delay_seconds: float = REFILL_DELAY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make = make
        self._discard = discard
        self._max_idle = max_idle_seconds
        self._refill_delay = refill_delay_seconds
        self._clock = clock
        self._last_claim = float("-inf")
        self._lock = threading.Condition()
        self._ready: dict[K, list[Warm[K]]] = {}
        self._filling: Counter[K] = Counter()
        self._targets: dict[K, int] = {}
        self._closed = False
        self._workers: list[threading.Thread] = []
        self.made = 0
        self.claimed = 0
        self.failures = 0

    def want(self, targets: dict[K, int]) -> None:
        """Keep this many per key from now on; surplus containers are discarded."""
        surplus: list[Warm[K]] = []
        with self._lock:
            if self._closed:
                return
            self._targets = {key: n for key, n in targets.items() if n > 0}
            for key, ready in self._ready.items():
                keep = self._targets.get(key, 0)
                surplus.extend(ready[keep:])
                del ready[keep:]
            self._start_workers()
            self._lock.notify_all()
        for warm in surplus:
            self._discard_quietly(warm)

    def claim(self, key: K, *, wait: float = 0.0) -> Warm[K] | None:
        """A warm container for this key, now the caller's alone; None if there is none.

        Where none is ready but one is being made for this key, wait up to `wait` seconds
        for it: a container already on its way starts sooner than a cold one would, and the
        engine makes one container for the task instead of two."""
        stale: list[Warm[K]] = []
        found = None
        until = time.monotonic() + wait
        with self._lock:
            while True:
                ready = self._ready.get(key, [])
                while ready and found is None:
                    warm = ready.pop(0)
                    if self._clock() - warm.created < self._max_idle:
                        found = warm
                    else:
                        stale.append(warm)
                being_made = self._filling[key] and self._targets.get(key, 0)
                if found is not None or self._closed or not being_made:
                    break
                if (left := until - time.monotonic()) <= 0:
                    break
                self._lock.wait(timeout=left)
            if found is not None:
                self.claimed += 1
                self._last_claim = self._clock()
            self._lock.notify_all()  # a worker refills what was taken
        for warm in stale:
            self._discard_quietly(warm)
        return found

    def ready_count(self) -> int:
        with self._lock:
            return sum(len(ready) for ready in self._ready.values())

    def filling_count(self) -> int:
        """Fills under way: waiting out the refill delay, or being made."""
        with self._lock:
            return sum(self._filling.values())

    def close(self) -> None:
        """Stop filling and discard every container not yet claimed."""
        with self._lock:
            self._closed = True
            leftovers = [warm for ready in self._ready.values() for warm in ready]
            self._ready.clear()
            self._lock.notify_all()
        for worker in self._workers:
            worker.join(timeout=30)
        for warm in leftovers:
            self._discard_quietly(warm)

    def _start_workers(self) -> None:
        if self._workers or not self._targets:
            return
        for number in range(FILL_WORKERS):
            worker = threading.Thread(
                target=self._fill, name=f"taskyard-warm-{number}", daemon=True
            )
            worker.start()
            self._workers.append(worker)

    def _most_short(self) -> K | None:
        """The key furthest below its target, counting fills in progress."""
        short = {
            key: target - len(self._ready.get(key, [])) - self._filling[key]
            for key, target in self._targets.items()
        }
        best = max(short.items(), key=lambda item: item[1], default=None)
        return best[0] if best is not None and best[1] > 0 else None

    def _fill(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                stale = self._take_expired()
                key = self._most_short()
                if key is None and not stale:
                    # Wake now and then to replace containers that idled too long.
                    self._lock.wait(timeout=self._max_idle / 4)
                    continue
                if key is not None:
                    self._filling[key] += 1
                    self._let_the_claim_start()
                    if self._closed or self._surplus(key):  # no longer needed after the wait
                        self._filling[key] -= 1
                        self._lock.notify_all()  # a claim waiting for it stops waiting
                        key = None
            for warm in stale:
                self._discard_quietly(warm)
            if key is not None:
                self._fill_one(key)

    def _surplus(self, key: K) -> bool:
        """Whether this key now has more ready and in progress than its target (under the
        lock): its target was lowered since the fill was counted."""
        return self._targets.get(key, 0) < len(self._ready.get(key, [])) + self._filling[key]

    def _let_the_claim_start(self) -> None:
        """Wait (under the lock) until the last claim is `refill_delay` old, or the pool
        closes. The moment is fixed when the wait begins: claims that come during it do not
        put the fill off again, so a steady stream of claims cannot starve the pool."""
        until = self._last_claim + self._refill_delay
        while not self._closed and (left := until - self._clock()) > 0:
            self._lock.wait(timeout=left)

    def _fill_one(self, key: K) -> None:
        warm = None
        try:
            warm = self._make(key)
        except Exception as exc:
            self.failures += 1
            log.warning("could not start a warm container: %s", exc)
        with self._lock:
            self._filling[key] -= 1
            keep = (
                warm is not None
                and not self._closed
                and len(self._ready.get(key, [])) < self._targets.get(key, 0)
            )
            if keep and warm is not None:
                self._ready.setdefault(key, []).append(warm)
                self.made += 1
            self._lock.notify_all()  # a claim may be waiting for this fill
        if warm is None:
            time.sleep(FILL_BACKOFF_SECONDS)
        elif not keep:
            self._discard_quietly(warm)

    def _take_expired(self) -> list[Warm[K]]:
        """Take (under the lock) the containers that idled past the limit."""
        now = self._clock()
        expired = []
        for ready in self._ready.values():
            old = [warm for warm in ready if now - warm.created >= self._max_idle]
            for warm in old:
                ready.remove(warm)
            expired.extend(old)
        return expired

    def _discard_quietly(self, warm: Warm[K]) -> None:
        try:
            self._discard(warm)
        except Exception as exc:
            log.warning("could not remove warm container %s: %s", warm.name, exc)
