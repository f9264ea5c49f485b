"""The engine's "die" events for one instance's containers, followed on a thread of their own.

`ControllerService` runs `DockerRuntime.wait_for_exit_events` on its events thread, which calls
`follow_exits`: each die wakes a pass at once instead of at its next tick. When the stream
ends or breaks (the engine restarted or crashed), `on_lost` is called and the stream is opened
again, two seconds later where it could not be opened at all.
"""

import threading
from collections.abc import Callable
from typing import Any

from controller.engine import EngineConnection
from controller.engine_errors import engine_call
from controller.errors import RuntimeUnavailable
from controller.runtime import OWNER_LABEL

RETRY_SECONDS = 2.0


def follow_exits(
    engine: EngineConnection,
    owner: str,
    *,
    on_die: Callable[[str], None],
    on_lost: Callable[[], None],
    stop: threading.Event,
) -> None:
    """Call `on_die(container_id)` for each of the owner's containers that dies, until `stop`
    is set (seen after the next event, or at the next retry)."""
    filters = {"type": "container", "event": ["die"], "label": f"{OWNER_LABEL}={owner}"}
    while not stop.is_set():
        try:
            with engine_call("follow the engine's events"):
                events = engine.client().events(decode=True, filters=filters)
                try:
                    for event in events:
                        on_die(_container_id(event))
                        if stop.is_set():
                            return
                finally:
                    events.close()
        except (RuntimeUnavailable, ValueError):  # ValueError: a line that is not JSON
            stop.wait(RETRY_SECONDS)
        on_lost()


def _container_id(event: dict[str, Any]) -> str:
    return str(event.get("id") or event.get("Actor", {}).get("ID", ""))
