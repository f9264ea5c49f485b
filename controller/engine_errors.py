"""The one place where the docker SDK's errors become taskyard's (`controller.errors`).

Every call `DockerRuntime` and its helpers make to the engine runs inside `engine_call`:

    docker.errors.ImageNotFound     → ImageMissing         transient
    docker.errors.NotFound          → ContainerGone        transient, or success with gone_ok
    APIError 409 Conflict           → success with conflict_ok (already exists, not running,
                                      removal already in progress), else as another 4xx
    APIError, another 4xx           → StartRejected where the request carries a task's spec
                                      (spec_at_fault), else RuntimeUnavailable
    APIError 5xx, DockerException,  → RuntimeUnavailable   transient: the next pass retries
    OSError (requests' connection errors and timeouts are OSErrors), a broken stream

The engine's own explanation ends each message, after what was being done.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from urllib3.exceptions import HTTPError as StreamError

from controller.errors import ContainerGone, ImageMissing, RuntimeUnavailable, StartRejected

CONFLICT = 409


@contextmanager
def engine_call(
    doing: str, *, gone_ok: bool = False, conflict_ok: bool = False, spec_at_fault: bool = False
) -> Iterator[None]:
    """Run the block's engine calls, raising only taskyard's errors; `doing` says what the
    block does ("remove taskyard-…-1") for the messages. An error the caller takes as success
    (`gone_ok`, `conflict_ok`) ends the block early and quietly."""
    try:
        yield
    except ImageNotFound as exc:
        raise ImageMissing(f"cannot {doing}: the image is missing ({_why(exc)})") from exc
    except NotFound as exc:
        if not gone_ok:
            raise ContainerGone(f"cannot {doing}: it is gone ({_why(exc)})") from exc
    except APIError as exc:
        if exc.status_code == CONFLICT and conflict_ok:
            return
        if spec_at_fault and exc.is_client_error():
            raise StartRejected(f"the engine refused to {doing}: {_why(exc)}") from exc
        raise RuntimeUnavailable(f"cannot {doing}: {exc}") from exc
    except (DockerException, OSError, StreamError) as exc:
        raise RuntimeUnavailable(f"cannot {doing}: {exc}") from exc


def _why(exc: APIError) -> str:
    return str(exc.explanation or exc)
