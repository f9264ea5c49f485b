"""GET /metrics in the Prometheus text format: tasks by phase, capacity, and the controller's
counters and histograms (read from the capacity row, since the controller may be another
process), plus this API process's own watcher count.

Like the task endpoints, it needs a token (a user's or the admin's) once open mode is over.
"""

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import func
from sqlmodel import col, select

from api.auth import require_caller
from api.deps import ReadSession
from api.errors import error_responses
from models.phases import Phase
from models.tables import Capacity, Task

router = APIRouter()


def _histogram(lines: list[str], name: str, help_text: str, data: dict[str, Any]) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for bound, count in zip(data.get("buckets", []), data.get("counts", []), strict=True):
        lines.append(f'{name}_bucket{{le="{bound}"}} {count}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {data.get("count", 0)}')
    lines.append(f"{name}_sum {data.get('sum', 0.0)}")
    lines.append(f"{name}_count {data.get('count', 0)}")


def _gauge(lines: list[str], name: str, help_text: str, kind: str = "gauge") -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


# `Response` (no media type of its own) so that the 503 is documented as the JSON it is.
@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(require_caller)],
    responses={
        200: {"description": "Prometheus text format", "content": {"text/plain": {}}},
        **error_responses(401, 503),
    },
)
def metrics(request: Request, session: ReadSession) -> PlainTextResponse:
    """Prometheus metrics of the tasks, the host's capacity and the controller."""
    lines: list[str] = []
    counts = dict(session.exec(select(Task.phase, func.count()).group_by(col(Task.phase))).all())
    _gauge(lines, "taskyard_tasks", "Tasks by phase.")
    for phase in Phase:
        lines.append(f'taskyard_tasks{{phase="{phase.value}"}} {counts.get(phase.value, 0)}')

    row = session.get(Capacity, "local")
    if row is not None:
        allocatable = {
            "cpu": len(row.cpu_ids),
            "gpu": len(row.gpu_ids) * row.gpu_sharing,
            "ram_bytes": row.ram_allocatable,
            "storage_bytes": row.storage_allocatable,
        }
        allocated = {
            "cpu": len(row.allocated_cpus),
            "gpu": len(row.allocated_gpus),
            "ram_bytes": row.allocated_ram,
            "storage_bytes": row.allocated_storage,
        }
        _gauge(lines, "taskyard_allocatable", "What the host can hand to tasks, per resource.")
        for name, value in allocatable.items():
            lines.append(f'taskyard_allocatable{{resource="{name}"}} {value}')
        _gauge(lines, "taskyard_allocated", "What running and scheduled tasks hold.")
        for name, value in allocated.items():
            lines.append(f'taskyard_allocated{{resource="{name}"}} {value}')
        _gauge(lines, "taskyard_runtime_up", "1 when the container engine and image are usable.")
        lines.append(f"taskyard_runtime_up {int(row.runtime_ok)}")
        stats = row.stats or {}
        _gauge(
            lines,
            "taskyard_engine_errors_total",
            "Container engine errors seen by the controller since it started.",
            "counter",
        )
        lines.append(f"taskyard_engine_errors_total {stats.get('engine_errors', 0)}")
        _gauge(
            lines,
            "taskyard_containers_started_total",
            "Task containers started by the controller since it started.",
            "counter",
        )
        lines.append(f"taskyard_containers_started_total {stats.get('containers_started', 0)}")
        for key, help_text in (
            ("pass_seconds", "Duration of one reconcile pass."),
            ("submit_to_start_seconds", "Time from submission to the container's start."),
            ("run_seconds", "Time from the container's start to the task's end."),
        ):
            if key in stats:
                _histogram(
                    lines,
                    f"taskyard_reconcile_{key}"
                    if key == "pass_seconds"
                    else f"taskyard_task_{key}",
                    help_text,
                    stats[key],
                )
    _gauge(lines, "taskyard_watchers", "Open /watch streams on this API process.")
    lines.append(f"taskyard_watchers {request.app.state.feed.watchers}")
    return PlainTextResponse(
        "\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8"
    )
