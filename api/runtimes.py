"""GET /runtimes: the runtimes this host can run, as the controller last saw its images.

The catalogue (`models.runtimes`) says what each runtime is; the controller writes which
images the engine holds, with the version read from each, into the Capacity row; this route
joins the two. It never asks the engine itself.
"""

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from api.auth import CallerDep
from api.deps import ReadSession
from api.errors import error_responses
from models.runtimes import RUNTIMES, Runtime
from models.tables import Capacity

router = APIRouter(responses=error_responses(401, 503))


class RuntimeRead(BaseModel):
    name: str
    language: str
    version: str | None
    aliases: list[str]
    main_file: str
    compiled: bool
    image: str | None
    packages: dict[str, str]


class RuntimeList(BaseModel):
    """`items`: the installed runtimes; `not_installed`: the others, with how to add them."""

    items: list[RuntimeRead]
    not_installed: list[dict[str, str]]


def _read(runtime: Runtime, seen: dict[str, Any]) -> RuntimeRead:
    packages = seen.get("packages")
    return RuntimeRead(
        name=runtime.name,
        language=runtime.language,
        version=seen.get("version") if isinstance(seen.get("version"), str) else None,
        aliases=list(runtime.aliases),
        main_file=runtime.main_file,
        compiled=bool(runtime.compile),
        image=seen.get("image") if isinstance(seen.get("image"), str) else None,
        packages={str(k): str(v) for k, v in packages.items()}
        if isinstance(packages, dict)
        else {},
    )


@router.get("/runtimes", response_model=RuntimeList)
def list_runtimes(session: ReadSession, caller: CallerDep) -> RuntimeList:
    """The runtimes whose images this host holds, and the ones it does not."""
    capacity = session.get(Capacity, "local")
    installed: dict[str, Any] = dict(capacity.runtimes) if capacity is not None else {}
    items = [
        _read(runtime, installed[runtime.name]) for runtime in RUNTIMES if runtime.name in installed
    ]
    missing = [
        {"name": runtime.name, "install": f"taskyard image build --runtime {runtime.name}"}
        for runtime in RUNTIMES
        if runtime.name not in installed
    ]
    return RuntimeList(items=items, not_installed=missing)
