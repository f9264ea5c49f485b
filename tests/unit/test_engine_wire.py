"""The docker SDK's private parts that `controller.engine_wire` relies on are still there and
still do what it needs; and no other module of the product reaches into another object's
private attributes. (tests/e2e/test_engine_wire_real.py uses them against the real engine.)"""

import ast
import inspect
import json
import socket
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from docker.api.client import APIClient

from controller import engine_wire

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ["models", "api", "controller", "sandbox", "taskyard"]


@pytest.fixture
def api() -> APIClient:
    # With the version given, the client asks the engine nothing: no engine needed here.
    client: APIClient = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    return client


@pytest.mark.parametrize(
    ("name", "parameters"),
    [(name, params) for name, params in engine_wire.PRIVATE_CALLS.items() if params],
)
def test_each_private_method_keeps_its_parameters(name: str, parameters: tuple[str, ...]) -> None:
    owner, method = name.split(".")
    assert owner == "APIClient"
    found = inspect.signature(getattr(APIClient, method)).parameters
    assert list(found)[1 : 1 + len(parameters)] == list(parameters)


def test_url_names_the_versioned_endpoint_with_the_name_quoted(api: APIClient) -> None:
    assert (
        api._url("/containers/{0}/update", "a b")
        == "http+docker://localhost/v1.41/containers/a%20b/update"
    )


def test_post_json_sends_the_fields_as_json(
    api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: dict[str, Any] = {}

    def post(url: str, **kwargs: Any) -> str:
        sent.update(kwargs, url=url)
        return "response"

    monkeypatch.setattr(api, "_post", post)

    assert api._post_json("u", data={"NanoCpus": 5, "Memory": 7}) == "response"
    assert sent["url"] == "u"
    assert json.loads(sent["data"]) == {"NanoCpus": 5, "Memory": 7}
    assert sent["headers"]["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("status", "raised"),
    [(404, docker.errors.NotFound), (409, docker.errors.APIError), (500, docker.errors.APIError)],
)
def test_raise_for_status_raises_the_sdks_errors(
    api: APIClient, status: int, raised: type[Exception]
) -> None:
    response = requests.Response()
    response.status_code = status
    response.url = "http+docker://localhost/v1.41/containers/c/update"
    response._content = b'{"message": "the reason"}'

    with pytest.raises(raised, match="the reason"):
        api._raise_for_status(response)


def test_a_socket_io_keeps_its_socket_as_sock() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        wrapped = socket.SocketIO(ours, "rwb")
        assert wrapped._sock is ours


def private_attributes_outside_self(path: Path) -> list[str]:
    """`x._name` in the file, for any x but self and cls."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__") or (
            isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}
        ):
            continue
        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_only_engine_wire_reaches_into_private_attributes() -> None:
    wire = Path(engine_wire.__file__).resolve()
    found = [
        line
        for package in PRODUCT
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.resolve() != wire
        for line in private_attributes_outside_self(path)
    ]
    assert found == []
    assert private_attributes_outside_self(wire)  # the check sees what it looks for
