"""The contract's round trip: any `spec` the API returns (from POST, GET and the list), sent back
as a `POST /tasks` body, is a new task with the same spec; resources come back as written.
Through the real app over a real SQLite file, with a capacity row as a controller writes it.
"""

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from models.clock import utcnow
from models.database import Database, open_database
from models.quantities import GIB, parse_size
from models.settings import Settings
from models.tables import Capacity

# What a host has after its reserves: not whole megabytes.
RAM_ALLOCATABLE = int(7.6 * GIB)
STORAGE_ALLOCATABLE = int(50.3 * GIB)
UNSET = object()
# Each optional field absent, null (where the contract allows it) and set.
OPTIONAL_VALUES: dict[str, list[Any]] = {
    "timeout_seconds": [UNSET, None, 7],
    "stdin": [UNSET, None, "42\n"],
    "interactive": [UNSET, False, True],
}
RESOURCE_SPELLINGS = [
    {"cpu": "1", "gpu": "0", "ram": "256MB", "storage": "64MB"},
    {"cpu": "02", "gpu": "00", "ram": "1gb", "storage": "1024Mb"},
    {"cpu": "0", "gpu": "0", "ram": "1024MB", "storage": "1GB"},
]


def _label(value: Any) -> str:
    return "absent" if value is UNSET else repr(value)


COMBINATIONS = [
    pytest.param(
        dict(zip(OPTIONAL_VALUES, values, strict=True)),
        resources,
        id="-".join(
            f"{name}={_label(value)}" for name, value in zip(OPTIONAL_VALUES, values, strict=True)
        )
        + f"-resources{index}",
    )
    for index, resources in enumerate(RESOURCE_SPELLINGS)
    for values in itertools.product(*OPTIONAL_VALUES.values())
    # every combination of the optional fields once, each resource spelling a few times
    if index == 0 or values[0] is UNSET
]


def body_of(optional: dict[str, Any], resources: dict[str, str]) -> dict[str, Any]:
    body = {"task_type": "execute_code", "code": "print(input())", "resources": resources}
    body.update({name: value for name, value in optional.items() if value is not UNSET})
    return body


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir = tmp_path_factory.mktemp("round-trip")
    database = open_database(f"sqlite:///{data_dir / 'taskyard.db'}")
    add_capacity(database)
    with TestClient(
        create_app(Settings(data_dir=data_dir), database), base_url="http://127.0.0.1"
    ) as test_client:
        yield test_client
    database.dispose()


def add_capacity(database: Database) -> None:
    with database.write() as session:
        session.add(
            Capacity(
                node="local",
                cpus_total=4,
                cpu_ids=[0, 1, 2, 3],
                ram_total=16 * GIB,
                ram_allocatable=RAM_ALLOCATABLE,
                storage_total=100 * GIB,
                storage_allocatable=STORAGE_ALLOCATABLE,
                runtime_ok=True,
                runtime_message="fake engine",
                heartbeat_at=utcnow(),
            )
        )
        session.commit()


def created(client: TestClient, body: dict[str, Any], query: str = "") -> dict[str, Any]:
    response = client.post(f"/tasks{query}", json=body)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def specs_returned(client: TestClient, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The spec of one new task as each way of reading it returns it."""
    posted = created(client, body)
    waited = created(client, body, "?wait=0.01")  # the route, not the plain-POST path
    listing = client.get("/tasks", params={"limit": 2}).json()["items"]
    assert [task["id"] for task in listing] == [waited["id"], posted["id"]]
    return {
        "POST": posted["spec"],
        "POST?wait": waited["spec"],
        "GET": client.get(f"/tasks/{posted['id']}").json()["spec"],
        "list": listing[1]["spec"],
    }


@pytest.mark.parametrize(("optional", "resources"), COMBINATIONS)
def test_every_returned_spec_is_accepted_back_as_the_same_spec(
    client: TestClient, optional: dict[str, Any], resources: dict[str, str]
) -> None:
    specs = specs_returned(client, body_of(optional, resources))

    assert specs["POST"]["resources"] == resources  # as written: strings, unit case kept
    for source, spec in specs.items():
        again = created(client, spec)
        assert again["spec"] == spec, source
        assert client.get(f"/tasks/{again['id']}").json()["spec"] == spec, source


SIZE = st.builds(
    lambda n, unit: f"{n}{unit}", st.integers(16, 2048), st.sampled_from(["MB", "mb", "Mb", "mB"])
)
COUNT = st.builds(lambda zeros, n: "0" * zeros + str(n), st.integers(0, 2), st.integers(0, 4))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cpu=COUNT,
    ram=SIZE,
    storage=SIZE,
    timeout=st.none() | st.integers(1, 600),
    stdin=st.none() | st.text(max_size=20),
)
def test_any_spelling_of_the_resources_round_trips(
    client: TestClient, cpu: str, ram: str, storage: str, timeout: int | None, stdin: str | None
) -> None:
    resources = {"cpu": cpu, "gpu": "0", "ram": ram, "storage": storage}
    first = created(
        client,
        {
            "task_type": "execute_code",
            "code": "pass",
            "resources": resources,
            "timeout_seconds": timeout,
            "stdin": stdin,
        },
    )

    assert first["spec"]["resources"] == resources
    assert created(client, first["spec"])["spec"] == first["spec"]


def test_a_task_the_host_cannot_hold_is_refused_with_sizes_that_are_accepted(
    client: TestClient,
) -> None:
    # Ask beyond the host, then for what the messages say it can allocate.
    resources = {"cpu": "9", "gpu": "1", "ram": "9GB", "storage": "51GB"}
    response = client.post(
        "/tasks", json={"task_type": "execute_code", "code": "pass", "resources": resources}
    )
    assert response.status_code == 422
    quoted = {
        entry["loc"][-1]: entry["msg"].rsplit(" ", 1)[-1] for entry in response.json()["detail"]
    }
    assert quoted == {"cpu": "4", "gpu": "0", "ram": "7782MB", "storage": "51507MB"}
    assert "requested 1 GPU," in response.text
    assert (
        created(client, {"task_type": "execute_code", "code": "pass", "resources": quoted})["spec"][
            "resources"
        ]
        == quoted
    )
    assert RAM_ALLOCATABLE - parse_size(quoted["ram"]) < 1024 * 1024
