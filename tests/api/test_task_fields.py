"""What a task may bring beside its code (`runtime`, `files`, `args`, `env`, `collect`), and
GET /runtimes: each field round-trips, and every bad value gets a 4xx naming it.
Through the real app over a real SQLite file.
"""

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from models.clock import utcnow
from models.database import Database, open_database
from models.quantities import GIB, MIB
from models.settings import Settings
from models.tables import Capacity

SMALL = {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"}


def body(**changes: Any) -> dict[str, Any]:
    return {"task_type": "execute_code", "code": "print(1)", "resources": dict(SMALL), **changes}


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def client(tmp_path: Path, database: Database) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, admin_token="admin", max_files_bytes=MIB)
    with TestClient(
        create_app(settings, database), raise_server_exceptions=False, base_url="http://127.0.0.1"
    ) as client:
        yield client


def report_runtimes(database: Database, runtimes: dict[str, Any]) -> None:
    """What the controller writes once it has looked at the engine's images."""
    with database.write() as session:
        session.add(
            Capacity(
                node="local",
                cpus_total=2,
                cpu_ids=[0, 1],
                ram_total=8 * GIB,
                ram_allocatable=4 * GIB,
                storage_total=20 * GIB,
                storage_allocatable=10 * GIB,
                runtime_ok=True,
                runtime_message="fake engine",
                heartbeat_at=utcnow(),
                runtimes=runtimes,
            )
        )
        session.commit()


def problem(response: Any) -> tuple[list[Any], str]:
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    return detail[0]["loc"], detail[0]["msg"]


def test_every_new_field_round_trips_through_its_spec(client: TestClient) -> None:
    sent = body(
        runtime="python-data",
        files=[
            {"name": "data/in.csv", "content": "a,b\n1,2\n", "encoding": "utf8"},
            {
                "name": "raw.bin",
                "content": base64.b64encode(b"\x00\xff").decode(),
                "encoding": "base64",
            },
        ],
        args=["--rows", "2"],
        env={"MODE": "fast"},
        collect=["*.png", "out/**"],
    )
    created = client.post("/tasks", json=sent)
    assert created.status_code == 201, created.text
    spec = client.get(f"/tasks/{created.json()['id']}").json()["spec"]
    for name in ("runtime", "files", "args", "env", "collect"):
        assert spec[name] == sent[name]
    again = client.post("/tasks", json={k: v for k, v in spec.items()})
    assert again.status_code == 201, again.text


def test_a_seed_shaped_request_means_the_python_runtime_with_nothing_beside(
    client: TestClient,
) -> None:
    task = client.post("/tasks", json=body()).json()
    assert task["spec"]["runtime"] == "python"
    assert (task["spec"]["files"], task["spec"]["args"], task["spec"]["env"]) == ([], [], {})
    assert task["status"]["files"] == [] and task["status"]["usage"] is None


@pytest.mark.parametrize(("alias", "name"), [("py", "python"), ("JS", "node"), ("c++", "cpp")])
def test_an_alias_is_stored_as_its_runtimes_name(client: TestClient, alias: str, name: str) -> None:
    task = client.post("/tasks", json=body(runtime=alias)).json()
    assert task["spec"]["runtime"] == name


def test_an_unknown_runtime_is_422_naming_the_runtimes(client: TestClient) -> None:
    response = client.post("/tasks", json=body(runtime="cobol"))
    assert response.status_code == 422
    loc, message = problem(response)
    assert loc == ["body", "runtime"]
    assert "cobol" in message and "python-data" in message and "java" in message


def test_a_runtime_the_host_does_not_hold_is_422_naming_those_it_does(
    client: TestClient, database: Database
) -> None:
    report_runtimes(database, {"python": {"version": "Python 3.11.2"}, "bash": {}})
    response = client.post("/tasks", json=body(runtime="node"))
    assert response.status_code == 422
    loc, message = problem(response)
    assert loc == ["body", "runtime"]
    assert "bash, python" in message and "taskyard image build --runtime node" in message
    assert client.post("/tasks", json=body(runtime="bash")).status_code == 201


BAD_NAMES = [
    ("", "empty"),
    ("/etc/passwd", "absolute"),
    ("../up", "dot-dot"),
    ("a/../../b", "dot-dot-inside"),
    ("./a", "dot"),
    ("a//b", "empty-part"),
    ("a/", "trailing-slash"),
    ("a\x00b", "nul"),
    ("a\nb", "newline"),
    ("a\x1bb", "escape"),
    ("a\\b", "backslash"),
    ("x" * 256, "too-long"),
    ("/".join("d" * 17), "too-deep"),
]


@pytest.mark.parametrize("name", [name for name, _ in BAD_NAMES], ids=[i for _, i in BAD_NAMES])
def test_a_bad_file_name_is_422_naming_the_file(client: TestClient, name: str) -> None:
    files = [{"name": "ok.txt", "content": ""}, {"name": name, "content": "x"}]
    response = client.post("/tasks", json=body(files=files))
    assert response.status_code == 422, response.text
    loc, _ = problem(response)
    assert loc[:4] == ["body", "files", 1, "name"]


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ([{"name": "main.py", "content": ""}], "where the code goes"),
        ([{"name": "a", "content": ""}, {"name": "a", "content": ""}], "given twice"),
        ([{"name": "a", "content": ""}, {"name": "a/b", "content": ""}], "file and a directory"),
        ([{"name": "a", "content": "!!", "encoding": "base64"}], "not valid base64"),
        ([{"name": "a", "content": "", "encoding": "latin1"}], "utf8"),
        ([{"name": "a", "content": "", "mode": "0777"}], "mode"),
        ([{"name": f"f{n}", "content": ""} for n in range(101)], "100"),
    ],
    ids=["main-file", "twice", "file-and-dir", "bad-base64", "bad-encoding", "extra-key", "101"],
)
def test_files_that_cannot_be_written_as_asked_are_422(
    client: TestClient, files: list[dict[str, str]], words: str
) -> None:
    response = client.post("/tasks", json=body(files=files))
    assert response.status_code == 422, response.text
    assert words in response.text


def test_files_larger_than_the_limit_in_all_are_413_naming_files(client: TestClient) -> None:
    half = "x" * (MIB // 2 + 1)
    files = [{"name": "a", "content": half}, {"name": "b", "content": half}]
    response = client.post("/tasks", json=body(files=files))
    assert response.status_code == 413, response.text
    loc, message = problem(response)
    assert loc == ["body", "files"] and f"{MIB} bytes" in message


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"lower": "x"}, "[A-Z_][A-Z0-9_]*"),
        ({"1A": "x"}, "[A-Z_][A-Z0-9_]*"),
        ({"A-B": "x"}, "[A-Z_][A-Z0-9_]*"),
        ({"PATH": "/tmp"}, "sandbox's own"),
        ({"HOME": "/"}, "sandbox's own"),
        ({"A": "x\x00y"}, "without NUL"),
        ({"A": "x" * 4097}, "4096"),
        ({f"V{n}": "" for n in range(65)}, "64"),
        ({"A": 1}, "string"),
    ],
    ids=["lower", "digit-first", "dash", "PATH", "HOME", "nul", "long", "65", "number"],
)
def test_a_bad_env_is_422_naming_it(client: TestClient, env: dict[str, Any], words: str) -> None:
    response = client.post("/tasks", json=body(env=env))
    assert response.status_code == 422, response.text
    assert problem(response)[0][:2] == ["body", "env"]
    assert words in response.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("args", ["a\x00b"]),
        ("args", ["x"] * 257),
        ("args", ["x" * 4097]),
        ("args", [1]),
        ("collect", ["/etc/*"]),
        ("collect", ["../*"]),
        ("collect", ["*"] * 17),
        ("runtime", 3),
    ],
    ids=[
        "arg-nul",
        "257-args",
        "long-arg",
        "arg-number",
        "abs-glob",
        "up-glob",
        "17-globs",
        "rt-num",
    ],
)
def test_bad_args_collect_and_runtime_are_422_naming_the_field(
    client: TestClient, field: str, value: Any
) -> None:
    response = client.post("/tasks", json=body(**{field: value}))
    assert response.status_code == 422, response.text
    assert problem(response)[0][:2] == ["body", field]


def test_runtimes_lists_what_the_host_holds_and_how_to_add_the_rest(
    client: TestClient, database: Database
) -> None:
    report_runtimes(
        database,
        {
            "python": {"image": "taskyard-runner:1", "version": "Python 3.11.2"},
            "python-data": {
                "image": "x",
                "version": "Python 3.11.2",
                "packages": {"numpy": "1.24.2"},
            },
        },
    )
    listed = client.get("/runtimes").json()
    by_name = {item["name"]: item for item in listed["items"]}
    assert list(by_name) == ["python", "python-data"]
    assert by_name["python"]["version"] == "Python 3.11.2"
    assert by_name["python"]["aliases"] == ["py", "python3"]
    assert by_name["python"]["main_file"] == "main.py"
    assert by_name["python-data"]["packages"] == {"numpy": "1.24.2"}
    missing = {item["name"]: item["install"] for item in listed["not_installed"]}
    assert missing["java"] == "taskyard image build --runtime java"
    assert "python" not in missing
