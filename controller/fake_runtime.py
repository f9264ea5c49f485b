"""An in-memory `ContainerRuntime` for fast tests of the reconcile loop.

A test drives it like an engine: `finish(name, exit_code, stdout=...)` makes a running
container exit, `fail_next_run` injects engine errors, `available = False` makes every call
fail as an unreachable engine does, and a name in `full_inputs` is a container that has stopped
reading its stdin. A kill stops the container at once, as the engine does within milliseconds;
the pass that sent it sees that on its next list, as with the engine.
"""

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from controller.errors import RuntimeUnavailable
from controller.runtime import (
    ATTEMPT_LABEL,
    TASK_LABEL,
    CapturedOutput,
    ContainerSpec,
    InputResult,
    ObservedContainer,
    RuntimeHealth,
)
from models.clock import utcnow
from sandbox.supervisor import Report


@dataclass
class FakeContainer:
    spec: ContainerSpec
    observed: ObservedContainer
    stdout: bytes = b""
    stderr: bytes = b""
    report: Report | None = None


@dataclass
class FakeRuntime:
    available: bool = True
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    fail_next_run: Exception | None = None
    inputs: dict[str, list[bytes]] = field(default_factory=dict)
    closed_inputs: set[str] = field(default_factory=set)
    full_inputs: set[str] = field(default_factory=set)
    kills: list[str] = field(default_factory=list)
    clock_skew: timedelta = timedelta(0)
    warm_wanted: list[tuple[ContainerSpec, int]] = field(default_factory=list)
    closed: bool = False
    runtimes: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"python": {"image": "fake", "version": "fake 1", "packages": {}}}
    )

    def _now(self) -> datetime:
        return utcnow() + self.clock_skew

    def _check(self) -> None:
        if not self.available:
            raise RuntimeUnavailable("fake engine is down")

    def health(self) -> RuntimeHealth:
        if not self.available:
            return RuntimeHealth(ok=False, message="fake engine is down")
        return RuntimeHealth(
            ok=True, message="fake engine", data_root=None, runtimes=dict(self.runtimes)
        )

    def list_owned(self, *, settled: Collection[str] = ()) -> list[ObservedContainer]:
        self._check()
        return [c.observed for c in self.containers.values()]

    def create_only(self, spec: ContainerSpec) -> None:
        """Leave a created, never started container, as a crash between create and start does."""
        self.containers[spec.name] = FakeContainer(
            spec,
            ObservedContainer(
                name=spec.name,
                task_id=spec.labels[TASK_LABEL],
                attempt=int(spec.labels[ATTEMPT_LABEL]),
                state="created",
            ),
        )

    def run(self, spec: ContainerSpec) -> ObservedContainer:
        self._check()
        if self.fail_next_run is not None:
            error, self.fail_next_run = self.fail_next_run, None
            raise error
        self.runs.append(spec.name)
        observed = ObservedContainer(
            name=spec.name,
            task_id=spec.labels[TASK_LABEL],
            attempt=int(spec.labels[ATTEMPT_LABEL]),
            state="running",
            started_at=self._now(),
        )
        self.containers[spec.name] = FakeContainer(spec, observed)
        return observed

    def finish(
        self,
        name: str,
        exit_code: int,
        *,
        stdout: bytes = b"",
        stderr: bytes = b"",
        oom_killed: bool = False,
        report: Report | bool = True,
    ) -> None:
        """The code ended: with a normal report (True), this one, or none (False)."""
        container = self.containers[name]
        container.report = (
            Report(exit_code=exit_code)
            if report is True
            else report
            if isinstance(report, Report)
            else None
        )
        container.stdout = stdout
        container.stderr = stderr
        container.observed = replace(
            container.observed,
            state="exited",
            exit_code=exit_code,
            oom_killed=oom_killed,
            finished_at=self._now(),
        )

    def keep_warm(self, wanted: list[tuple[ContainerSpec, int]]) -> None:
        """Records what the reconciler asked for; a fake container starts instantly anyway."""
        self.warm_wanted = wanted

    def close(self) -> None:
        self.closed = True

    def send_input(self, name: str, data: bytes, *, eof: bool) -> InputResult:
        container = self.containers.get(name)
        if container is None or not container.spec.interactive or name in self.closed_inputs:
            return InputResult.CLOSED
        if name in self.full_inputs:
            return InputResult.FULL
        self.inputs.setdefault(name, []).append(data)
        if eof:
            self.closed_inputs.add(name)
        return InputResult.SENT

    def kill(self, name: str) -> None:
        self._check()
        self.kills.append(name)
        container = self.containers.get(name)
        if container is None:
            return
        self.closed_inputs.add(name)
        if not container.observed.has_exited:
            container.observed = replace(
                container.observed, state="exited", exit_code=137, finished_at=self._now()
            )

    def inspect(self, name: str) -> ObservedContainer | None:
        self._check()
        container = self.containers.get(name)
        return container.observed if container is not None else None

    def follow(self, name: str) -> Iterator[tuple[str, bytes]]:
        """What the container printed so far; a fake container prints all at once."""
        container = self.containers.get(name)
        if container is None:
            return iter(())
        return iter([("stdout", container.stdout)] if container.stdout else [])

    def output(self, name: str) -> CapturedOutput:
        self._check()
        container = self.containers.get(name)
        if container is None:
            return CapturedOutput(b"", b"")
        return CapturedOutput(container.stdout, container.stderr, container.report)

    def remove(self, name: str) -> None:
        self._check()
        self.containers.pop(name, None)

    def remove_soon(self, name: str, then: Callable[[], None] | None = None) -> None:
        try:
            self.remove(name)
        finally:  # as the Docker runtime: `then` also after a failed removal
            if then is not None:
                then()

    def names(self) -> set[str]:
        return set(self.containers)
