"""`engine_call`: each error the docker SDK raises becomes one of taskyard's, once, or success
where the caller asked for idempotence."""

import pytest
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from urllib3.exceptions import ProtocolError

from controller.engine_errors import engine_call
from controller.errors import ContainerGone, ImageMissing, RuntimeUnavailable, StartRejected


def api_error(status: int, explanation: str = "no such thing") -> APIError:
    response = requests.Response()
    response.status_code = status
    return APIError(f"{status} error", response=response, explanation=explanation)


def not_found() -> NotFound:
    response = requests.Response()
    response.status_code = 404
    return NotFound("404", response=response, explanation="No such container: c")


def image_not_found() -> ImageNotFound:
    response = requests.Response()
    response.status_code = 404
    return ImageNotFound("404", response=response, explanation="No such image: runner")


NONE: dict[str, bool] = {}
GONE_OK = {"gone_ok": True}
CONFLICT_OK = {"conflict_ok": True}
SPEC = {"spec_at_fault": True}


@pytest.mark.parametrize(
    ("raised", "flags", "becomes"),
    [
        (not_found(), NONE, ContainerGone),
        (not_found(), GONE_OK, None),
        (not_found(), CONFLICT_OK, ContainerGone),
        (image_not_found(), NONE, ImageMissing),
        (image_not_found(), GONE_OK, ImageMissing),
        (api_error(409), NONE, RuntimeUnavailable),
        (api_error(409), CONFLICT_OK, None),
        (api_error(409), SPEC, StartRejected),
        (api_error(400), NONE, RuntimeUnavailable),
        (api_error(400), SPEC, StartRejected),
        (api_error(400), {"gone_ok": True, "conflict_ok": True}, RuntimeUnavailable),
        (api_error(500), SPEC, RuntimeUnavailable),
        (api_error(503), NONE, RuntimeUnavailable),
        (DockerException("Error while fetching server API version"), NONE, RuntimeUnavailable),
        (requests.exceptions.ConnectionError("Connection refused"), GONE_OK, RuntimeUnavailable),
        (requests.exceptions.ReadTimeout("Read timed out"), SPEC, RuntimeUnavailable),
        (ConnectionResetError(104, "reset by peer"), CONFLICT_OK, RuntimeUnavailable),
        (ProtocolError("Connection broken"), NONE, RuntimeUnavailable),
    ],
    ids=[
        "gone",
        "gone-is-success",
        "gone-is-not-a-conflict",
        "image-missing",
        "image-missing-is-not-a-gone-container",
        "conflict",
        "conflict-is-success",
        "conflict-over-a-spec-is-a-refusal",
        "bad-request",
        "bad-request-over-a-spec-is-final",
        "bad-request-is-never-success",
        "server-error-is-transient-even-over-a-spec",
        "unavailable",
        "no-engine",
        "connection-refused",
        "timeout",
        "connection-reset",
        "stream-broken",
    ],
)
def test_one_translation(
    raised: Exception, flags: dict[str, bool], becomes: type[Exception] | None
) -> None:
    def call() -> str:
        with engine_call("remove c", **flags):
            raise raised
        return "went on"

    if becomes is None:
        assert call() == "went on"
        return
    with pytest.raises(becomes) as caught:
        call()
    assert type(caught.value) is becomes
    assert caught.value.__cause__ is raised


def test_messages_say_what_was_done_and_the_engines_reason() -> None:
    refusing = engine_call("create the container", spec_at_fault=True)
    with pytest.raises(StartRejected) as refused, refusing:
        raise api_error(400, "invalid CpusetCpus: 99")
    with pytest.raises(ContainerGone) as gone, engine_call("inspect c"):
        raise not_found()

    assert (
        str(refused.value) == "the engine refused to create the container: invalid CpusetCpus: 99"
    )
    assert str(gone.value) == "cannot inspect c: it is gone (No such container: c)"


def test_what_is_not_the_engines_passes_through() -> None:
    with pytest.raises(KeyError), engine_call("inspect c"):
        raise KeyError("Id")
