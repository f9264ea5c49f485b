"""What the engine says about a container, read into an `ObservedContainer`.

Called by `controller.docker_runtime` with the answers of the engine's inspect and list calls.
"""

from datetime import datetime
from typing import Any

from controller.container_config import GVISOR_RUNTIME
from controller.runtime import ATTEMPT_LABEL, TASK_LABEL, WARM_LABEL, ObservedContainer
from models.clock import as_utc


def observed(attrs: dict[str, Any]) -> ObservedContainer:
    """The container as an inspect describes it."""
    labels = attrs.get("Config", {}).get("Labels") or {}
    state = attrs.get("State", {})
    name = attrs.get("Name", "").lstrip("/")
    task_id, attempt = labels.get(TASK_LABEL, ""), int(labels.get(ATTEMPT_LABEL, "0") or 0)
    started_at = engine_time(state.get("StartedAt"))
    if labels.get(WARM_LABEL):
        # A claimed warm container carries its attempt in the name the claim gave it
        # (`container_name`), and started long before its task did: its engine start time
        # says nothing about the task.
        task_id, _, number = name.rpartition("-")
        task_id = task_id.rpartition("-")[2]
        attempt = int(number) if number.isdigit() else 0
        started_at = None
    return ObservedContainer(
        name=name,
        task_id=task_id,
        attempt=attempt,
        state=state.get("Status", "unknown"),
        exit_code=state.get("ExitCode") if state.get("Status") in {"exited", "dead"} else None,
        oom_killed=bool(state.get("OOMKilled")),
        started_at=started_at,
        finished_at=engine_time(state.get("FinishedAt")),
        sandboxed=attrs.get("HostConfig", {}).get("Runtime") == GVISOR_RUNTIME,
    )


def listed(name: str, summary: dict[str, Any]) -> ObservedContainer:
    """The container as the engine's list describes it: its state, without exit details."""
    return observed(
        {
            "Name": name,
            "Config": {"Labels": summary["Labels"]},
            "State": {"Status": summary.get("State")},
        }
    )


def engine_time(text: str | None) -> datetime | None:
    """A time the engine wrote, in nanoseconds ("2026-11-27T22:00:00.123456789Z"); Python
    takes microseconds. None for the engine's zero time (never started, never finished)."""
    if not text or text.startswith("0001-01-01"):
        return None
    head, _, rest = text.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    moment = datetime.fromisoformat(f"{head}.{fraction or '0'}+00:00")
    return as_utc(moment)
