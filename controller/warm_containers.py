"""Warm containers on the Docker engine: `DockerRuntime`'s `WarmPool`, the containers it
makes, their fitting to the task that claims one, and the sweep of those left by an earlier run.

A warm container is created like a cold one (`controller.container_config`), started, and its
stdin attached; a claim fits its limits to the task and renames it to the attempt's name. The
pool lives only as long as the engine connection, whose loss kills those attaches: `lose` then
swaps the pool out under a lock and closes it in the background. Every reader takes the pool
into a local name once, so a loss on the events thread between a check and a use cannot leave
the pass holding no pool.
"""

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from controller import engine_wire
from controller.container_config import GVISOR_RUNTIME, create_args, fitted_limits
from controller.engine import EngineConnection
from controller.engine_errors import engine_call
from controller.errors import RuntimeUnavailable
from controller.runtime import OWNER_LABEL, WARM_LABEL, ContainerSpec, WarmKey
from controller.warm_pool import Warm, WarmPool

log = logging.getLogger("taskyard.controller")
# How long a start waits for a warm container already being made, rather than creating one
# more (a burst drains the pool faster than it refills). A cold start costs as much engine
# work as a fill, so a fill under way almost always ends first; this bounds a fill that hangs.
CLAIM_WAIT_SECONDS = 2.0


class WarmContainers:
    """The warm pool of one instance (`owner`) on the engine."""

    def __init__(
        self,
        engine: EngineConnection,
        owner: str,
        *,
        seccomp: str | None,
        max_idle_seconds: float,
        remove: Callable[[str], None],
    ) -> None:
        self._engine = engine
        self._owner = owner
        self._seccomp = seccomp
        self._max_idle = max_idle_seconds
        self._remove = remove
        self.prefix = f"taskyard-{owner[:12]}-warm-"
        self._templates: dict[WarmKey, ContainerSpec] = {}
        self._lock = threading.Lock()  # guards the swaps of `_pool` and `_closed`
        self._pool: WarmPool[WarmKey] | None = None
        self._closed = False
        self._said_no_warm = False

    def want(self, wanted: list[tuple[ContainerSpec, int]]) -> None:
        """Keep this many warm containers for each template spec from now on."""
        targets = self._targets(wanted)
        pool = self._pool
        if pool is None:
            if not targets:
                return
            pool = self._start_pool()
        if pool is not None:
            pool.want(targets)

    def claim(self, spec: ContainerSpec) -> Warm[WarmKey] | None:
        """A warm container that can serve `spec`, now the caller's; None where none is ready."""
        key = WarmKey.of(spec)
        pool = self._pool
        if pool is None or key is None:
            return None
        return pool.claim(key, wait=CLAIM_WAIT_SECONDS)

    def ready(self) -> int:
        """Warm containers ready to be claimed now."""
        pool = self._pool
        return pool.ready_count() if pool is not None else 0

    def lose(self) -> None:
        """The engine connection is gone, and with it every warm container's stdin: drop the
        pool (closed in the background); the next `want` sweeps them and starts anew."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            threading.Thread(target=pool.close, name="taskyard-warm-close", daemon=True).start()

    def close(self) -> None:
        """Remove the warm containers no task claimed, and make no more."""
        with self._lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is not None:
            pool.close()

    def fit(self, warm: Warm[WarmKey], spec: ContainerSpec) -> bool:
        """Fit a claimed warm container to the task and give it the attempt's name; False
        where that failed (the container is discarded, and the caller starts cold)."""
        try:
            with engine_call(f"fit warm container {warm.name}"):
                api = self._engine.client().api
                engine_wire.update_limits(api, warm.name, fitted_limits(spec))
                api.rename(warm.name, spec.name)
        except RuntimeUnavailable as exc:
            log.info("warm container %s could not be fitted (%s); starting cold", warm.name, exc)
            self.discard(warm)
            return False
        return True

    def discard(self, warm: Warm[WarmKey]) -> None:
        raw, release = warm.stdin
        raw.close()
        release()
        self._remove(warm.name)

    def _targets(self, wanted: list[tuple[ContainerSpec, int]]) -> dict[WarmKey, int]:
        targets = {}
        for template, count in wanted:
            key = WarmKey.of(template)
            if template.docker_runtime == GVISOR_RUNTIME:
                # runsc cannot change a running container's limits (`docker update` fails: it
                # has no `update` command), so no warm container could be fitted to its task.
                if not self._said_no_warm:
                    log.info("no warm containers under gVisor: runsc cannot update limits")
                    self._said_no_warm = True
                continue
            if key is not None:
                self._templates[key] = template
                targets[key] = count
        return targets

    def _start_pool(self) -> WarmPool[WarmKey] | None:
        """A new pool, once the containers of an earlier one are swept; None once closed."""
        self._remove_stale()
        pool = WarmPool(self._make, self.discard, max_idle_seconds=self._max_idle)
        with self._lock:
            if self._closed:
                return None
            if self._pool is None:
                self._pool = pool
            return self._pool

    def _make(self, key: WarmKey) -> Warm[WarmKey]:
        name = self.prefix + uuid.uuid4().hex[:16]
        spec = replace(
            self._templates[key], name=name, labels={OWNER_LABEL: self._owner, WARM_LABEL: "1"}
        )
        api = self._engine.client().api
        # It waits for its code a little longer than the pool keeps it, then ends by itself.
        arguments = create_args(
            api, spec, seccomp=self._seccomp, delivery_timeout=self._max_idle + 60
        )
        with engine_call(f"create warm container {name}"):
            created = api.create_container(**arguments)
        try:
            with engine_call(f"start warm container {name}"):
                api.start(name)
                stdin = engine_wire.attach_stdin(api, name)
        except RuntimeUnavailable:
            self._remove(name)
            raise
        return Warm(
            name=name, key=key, created=time.monotonic(), stdin=stdin, engine_id=created["Id"]
        )

    def _remove_stale(self) -> None:
        """Warm containers of an earlier run of this instance: their stdin is gone with it."""
        try:
            with engine_call("list warm containers left by an earlier run"):
                stale = self._engine.client().api.containers(
                    all=True, filters={"label": [f"{OWNER_LABEL}={self._owner}", WARM_LABEL]}
                )
        except RuntimeUnavailable as exc:
            log.warning("%s", exc)
            return
        for summary in stale:
            name = (summary.get("Names") or ["/"])[0].lstrip("/")
            if name.startswith(self.prefix):
                self._remove(name)
