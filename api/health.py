"""GET /healthz: whether the database answers, the controller is alive, and the engine works."""

from datetime import timedelta

from fastapi import APIRouter
from sqlalchemy import text

from api.deps import ReadSession, SettingsDep
from api.errors import error_responses
from models.clock import as_utc, isoformat_z, utcnow
from models.schemas import Health
from models.tables import Capacity

router = APIRouter()


@router.get("/healthz", response_model=Health, responses=error_responses(503))
def healthz(session: ReadSession, settings: SettingsDep) -> Health:
    """Liveness and readiness of the database, the controller and the container engine."""
    checks: dict[str, object] = {}
    degraded = False
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
    except Exception as exc:  # any database failure is a health fact, not a 500
        checks["database"] = {"ok": False, "message": str(exc)}
        return Health(status="degraded", checks=checks)

    capacity = session.get(Capacity, "local")
    stale_after = timedelta(
        seconds=max(settings.controller_stale_seconds, 5 * settings.reconcile_interval_seconds)
    )
    if capacity is None or capacity.heartbeat_at is None:
        checks["controller"] = {"ok": False, "message": "the controller has not reported yet"}
        checks["runtime"] = {"ok": False, "message": "unknown until the controller reports"}
        return Health(status="degraded", checks=checks)
    age = utcnow() - as_utc(capacity.heartbeat_at)
    alive = age <= stale_after
    checks["controller"] = {
        "ok": alive,
        "last_pass_at": isoformat_z(capacity.heartbeat_at),
        **({} if alive else {"message": f"no reconcile pass for {age.total_seconds():.0f} s"}),
    }
    checks["runtime"] = {"ok": capacity.runtime_ok, "message": capacity.runtime_message}
    checks["gpus"] = {"ok": True, "count": len(capacity.gpu_ids), "names": capacity.gpu_names}
    degraded = not alive or not capacity.runtime_ok
    return Health(status="degraded" if degraded else "ok", checks=checks)
