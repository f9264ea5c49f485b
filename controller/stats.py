"""The controller's counters and histograms, kept in memory and written with its heartbeat into
the capacity row, where the API's GET /metrics reads them (the API and the controller may be
separate processes). They restart from zero with the controller, as Prometheus counters may.
"""

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
RUN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        # Cumulative buckets, as Prometheus expects: each counts values <= its bound.
        for index in range(bisect_left(self.buckets, value), len(self.buckets)):
            self.counts[index] += 1
        self.total += value
        self.count += 1

    def dump(self) -> dict[str, Any]:
        return {
            "buckets": list(self.buckets),
            "counts": list(self.counts),
            "sum": self.total,
            "count": self.count,
        }


@dataclass
class ControllerStats:
    pass_seconds: Histogram = field(default_factory=lambda: Histogram(PASS_BUCKETS))
    submit_to_start_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    run_seconds: Histogram = field(default_factory=lambda: Histogram(RUN_BUCKETS))
    engine_errors: int = 0
    containers_started: int = 0

    def dump(self) -> dict[str, Any]:
        return {
            "pass_seconds": self.pass_seconds.dump(),
            "submit_to_start_seconds": self.submit_to_start_seconds.dump(),
            "run_seconds": self.run_seconds.dump(),
            "engine_errors": self.engine_errors,
            "containers_started": self.containers_started,
        }
