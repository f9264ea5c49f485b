"""Hostile and odd input gets a clear 4xx that names the problem, never a 5xx; odd but valid
text is accepted and comes back exactly as sent. Through the real app over a real SQLite file,
with the default limits (1 MiB of code).

Decisions these tests pin down (README, "Bad input"):
- a request body that is not sent as JSON gets 415;
- a body that is not JSON (nested too deeply, not UTF-8, numbers of thousands of digits) gets
  422 naming the body;
- query parameters the route does not know are ignored, on every route;
- code with a NUL character gets 422 (Python cannot run it); stdin may hold any text.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import create_app
from models.database import Database, open_database
from models.quantities import MIB
from models.settings import Settings
from models.tables import Task

SMALL = {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"}
JSON = {"content-type": "application/json"}


def body(**changes: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "task_type": "execute_code",
        "code": "print(1)",
        "resources": dict(SMALL),
    }
    result.update(changes)
    return result


def raw_body(**raw_fields: str) -> str:
    """A valid request as JSON text, with some fields replaced by raw JSON text."""
    fields = {name: json.dumps(value) for name, value in body().items()}
    fields.update(raw_fields)
    return "{" + ", ".join(f"{json.dumps(name)}: {text}" for name, text in fields.items()) + "}"


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def client(tmp_path: Path, database: Database) -> Iterator[TestClient]:
    with TestClient(
        create_app(Settings(data_dir=tmp_path, admin_token="admin"), database),
        raise_server_exceptions=False,
        base_url="http://127.0.0.1",
    ) as test_client:
        yield test_client


def stored(database: Database) -> int:
    with database.read() as session:
        return len(list(session.exec(select(Task))))


def detail_text(response: Any) -> str:
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else " ".join(entry["msg"] for entry in detail)


def locs(response: Any) -> list[list[Any]]:
    return [entry["loc"] for entry in response.json()["detail"]]


# --- size ---------------------------------------------------------------------------------


def test_code_of_exactly_the_maximum_size_is_accepted(client: TestClient) -> None:
    code = "#" * (MIB - 1) + "\n"

    response = client.post("/tasks", json=body(code=code))

    assert response.status_code == 201, response.text[:300]
    assert client.get(response.headers["location"]).json()["spec"]["code"] == code


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("#" * (MIB + 1), id="ascii"),
        pytest.param("#" * (MIB - 1) + "é", id="two-byte-character-at-the-end"),
    ],
)
def test_code_one_byte_over_the_maximum_is_413_naming_code(
    client: TestClient,
    database: Database,
    code: str,
) -> None:
    response = client.post("/tasks", json=body(code=code))

    assert response.status_code == 413, response.text[:300]
    assert locs(response) == [["body", "code"]]
    assert f"{MIB + 1} bytes" in detail_text(response)
    assert stored(database) == 0


# MiB past the largest body a task can have: 12 times the code's limit (JSON escapes) and twice
# the files' (base64 and escapes).
BEYOND_ANY_TASK = 12 + 2 * 8 + 1


def test_body_larger_than_any_task_is_413_from_its_content_length(client: TestClient) -> None:
    response = client.post(
        "/tasks", content=b"{" + b" " * (BEYOND_ANY_TASK * MIB) + b"}", headers=JSON
    )

    assert response.status_code == 413
    assert "request body is larger than" in response.json()["detail"]


def test_chunked_body_larger_than_any_task_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(BEYOND_ANY_TASK + 1):
            yield b" " * MIB

    response = client.post("/tasks", content=chunks(), headers=JSON)

    assert response.status_code == 413
    assert "request body is larger than" in response.json()["detail"]


def test_chunked_body_within_the_limit_is_read_as_usual(client: TestClient) -> None:
    payload = json.dumps(body(code="print('chunked')")).encode()

    response = client.post("/tasks", content=iter([payload[:10], payload[10:]]), headers=JSON)

    assert response.status_code == 201, response.text
    assert response.json()["spec"]["code"] == "print('chunked')"


# --- content type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        None,
    ],
)
def test_body_not_sent_as_json_is_415_naming_the_content_type(
    client: TestClient,
    database: Database,
    content_type: str | None,
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}

    response = client.post("/tasks", content=json.dumps(body()), headers=headers)

    assert response.status_code == 415, response.text
    assert "Content-Type: application/json" in response.json()["detail"]
    assert stored(database) == 0


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/merge-patch+json", "APPLICATION/JSON"],
)
def test_json_content_types_are_accepted(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/tasks", content=json.dumps(body()), headers={"content-type": content_type}
    )

    assert response.status_code == 201, response.text


def test_admin_routes_with_a_body_also_answer_415(client: TestClient) -> None:
    admin = {"Authorization": "Bearer admin", "content-type": "text/plain"}

    response = client.post("/admin/tokens", content='{"name": "alice"}', headers=admin)

    assert response.status_code == 415


def test_a_post_without_a_body_needs_no_content_type(client: TestClient) -> None:
    task_id = client.post("/tasks", json=body()).json()["id"]

    response = client.post(
        f"/admin/tasks/{task_id}/reset",
        headers={"Authorization": "Bearer admin", "content-type": "text/plain"},
    )

    assert response.status_code == 409  # the reset itself makes no sense: it is Pending
    assert "already Pending" in response.json()["detail"]


# --- bodies that are not JSON -------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("[" * 100_000, id="100000-open-brackets"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="100000-levels-closed"),
        pytest.param(raw_body(code='{"a": ' * 50_000 + "1" + "}" * 50_000), id="deep-code-field"),
    ],
)
def test_deeply_nested_json_is_422_saying_so(
    client: TestClient,
    database: Database,
    content: str,
) -> None:
    response = client.post("/tasks", content=content, headers=JSON)

    assert response.status_code == 422, response.text[:300]
    assert "nested too deeply" in detail_text(response)
    assert stored(database) == 0


def test_body_that_is_not_utf8_is_422_saying_so(client: TestClient) -> None:
    response = client.post("/tasks", content=b'{"code": "\xff\xfe"}', headers=JSON)

    assert response.status_code == 422
    assert "not valid UTF-8" in detail_text(response)


def test_integer_literal_of_thousands_of_digits_is_422(client: TestClient) -> None:
    response = client.post("/tasks", content=raw_body(timeout_seconds="9" * 5000), headers=JSON)

    assert response.status_code == 422
    assert "too many digits" in detail_text(response)


def test_malformed_json_is_422_naming_the_body(client: TestClient) -> None:
    response = client.post("/tasks", content='{"code": ', headers=JSON)

    assert response.status_code == 422
    assert locs(response)[0][0] == "body"


# --- huge numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "literal", ["1e999", "-1e999", "10" + "0" * 400, "NaN", "Infinity", "1.5", "true"]
)
def test_huge_or_odd_timeout_is_422_naming_timeout_seconds(
    client: TestClient,
    database: Database,
    literal: str,
) -> None:
    response = client.post("/tasks", content=raw_body(timeout_seconds=literal), headers=JSON)

    assert response.status_code == 422, response.text
    assert ["body", "timeout_seconds"] in locs(response)
    assert stored(database) == 0


@pytest.mark.parametrize(
    ("name", "literal"),
    [
        ("cpu", "1e999"),
        ("cpu", "1" + "0" * 400),
        ("gpu", "-1e999"),
        ("ram", "1e999"),
        ("storage", "1" + "0" * 400),
        ("cpu", json.dumps("1" + "0" * 400)),
        ("gpu", json.dumps("9" * 400)),
        ("ram", json.dumps("9" * 400 + "MB")),
        ("storage", json.dumps("9" * 400 + "GB")),
    ],
)
def test_huge_resource_is_422_naming_it(
    client: TestClient,
    database: Database,
    name: str,
    literal: str,
) -> None:
    resources = {key: json.dumps(value) for key, value in SMALL.items()} | {name: literal}
    raw = "{" + ", ".join(f'"{key}": {text}' for key, text in resources.items()) + "}"

    response = client.post("/tasks", content=raw_body(resources=raw), headers=JSON)

    assert response.status_code == 422, response.text[:300]
    assert ["body", "resources", name] in locs(response)
    assert stored(database) == 0


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        pytest.param({"resources": SMALL | {"cpu": "-1"}}, "cpu", "'-1' should be", id="cpu"),
        pytest.param(
            {"resources": SMALL | {"ram": "5"}}, "ram", "'5' is not a valid size", id="ram"
        ),
        pytest.param({"resources": SMALL | {"gpu": "two"}}, "gpu", "'two' should be", id="gpu"),
    ],
)
def test_field_errors_read_as_sentences_without_pydantics_prefix(
    client: TestClient, changes: dict[str, Any], field: str, says: str
) -> None:
    response = client.post("/tasks", json=body(**changes))

    assert response.status_code == 422, response.text
    [entry] = [entry for entry in response.json()["detail"] if entry["loc"][-1] == field]
    assert entry["msg"].startswith(says), entry
    assert "Value error" not in response.text


@pytest.mark.parametrize(
    "query",
    [
        "limit=1e999",
        "limit=" + "9" * 400,
        "cursor=" + "9" * 400,
        "phase=" + "x" * 10_000,
        "id_prefix=" + "9" * 400,
    ],
)
def test_huge_list_parameters_are_422(client: TestClient, query: str) -> None:
    response = client.get(f"/tasks?{query}")

    assert response.status_code == 422
    assert locs(response)[0][0] == "query"


@pytest.mark.parametrize("wait", ["1e999", "nan", "-0.5", "61"])
def test_bad_wait_is_422(client: TestClient, wait: str) -> None:
    response = client.post(f"/tasks?wait={wait}", json=body())

    assert response.status_code == 422
    assert ["query", "wait"] in locs(response)


@pytest.mark.parametrize("path", ["/watch", "/tasks/{id}/logs"])
@pytest.mark.parametrize(
    "resume",
    [
        # "²" is a digit to str.isdigit, but not to int(); headers travel as latin-1.
        pytest.param({"headers": {"Last-Event-ID": "²".encode("latin-1")}}, id="superscript-two"),
        pytest.param({"headers": {"Last-Event-ID": "9" * 400}}, id="400-digits"),
        pytest.param({"headers": {"Last-Event-ID": "-1"}}, id="negative"),
        pytest.param({"params": {"since": "9" * 30}}, id="since-beyond-sqlite-integers"),
    ],
)
def test_resume_point_that_is_not_a_seq_is_422(
    client: TestClient,
    path: str,
    resume: dict[str, Any],
) -> None:
    task_id = client.post("/tasks", json=body()).json()["id"]

    response = client.get(path.format(id=task_id), **resume)

    assert response.status_code == 422, response.text
    assert "detail" in response.json()


# --- unknown query parameters -------------------------------------------------------------


def test_unknown_query_parameters_are_ignored_everywhere(client: TestClient) -> None:
    created = client.post("/tasks?colour=blue&wait_for=10", json=body())
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]

    assert client.get(f"/tasks/{task_id}?colour=blue").json()["id"] == task_id
    listed = client.get("/tasks?colour=blue&limit=1&page=7").json()
    assert [task["id"] for task in listed["items"]] == [task_id]
    assert client.get(f"/tasks/{task_id}/events?x=1").status_code == 200
    assert client.delete(f"/tasks/{task_id}?force=true").status_code == 202
    assert client.get("/healthz?verbose=1").status_code == 200
    assert (
        client.get("/admin/tasks/stuck?x=1", headers={"Authorization": "Bearer admin"}).status_code
        == 200
    )


# --- text ---------------------------------------------------------------------------------


def test_code_with_nul_bytes_is_422_naming_code(client: TestClient, database: Database) -> None:
    response = client.post("/tasks", json=body(code="print('a')\x00print('b')"))

    assert response.status_code == 422
    assert locs(response) == [["body", "code"]]
    assert "NUL character (at position 10)" in detail_text(response)
    assert stored(database) == 0


def test_code_with_nul_as_a_json_escape_is_422(client: TestClient) -> None:
    response = client.post("/tasks", content=raw_body(code='"a\\u0000b"'), headers=JSON)

    assert response.status_code == 422
    assert "NUL" in detail_text(response)


@pytest.mark.parametrize("field", ["code", "stdin"])
def test_lone_surrogate_escape_is_422_naming_the_field(
    client: TestClient,
    database: Database,
    field: str,
) -> None:
    response = client.post("/tasks", content=raw_body(**{field: '"print(1)\\ud800"'}), headers=JSON)

    assert response.status_code == 422
    assert locs(response) == [["body", field]]
    assert "lone surrogate at position 8" in detail_text(response)
    assert stored(database) == 0


def test_lone_surrogate_in_an_unknown_field_name_is_422_not_500(client: TestClient) -> None:
    response = client.post(
        "/tasks",
        content=raw_body(**{"\ud800": "1"}).replace(json.dumps("\ud800"), '"\\ud800"'),
        headers=JSON,
    )

    assert response.status_code == 422, response.text
    assert locs(response)[0][0] == "body"


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(
            "print('\u202eabc\u202c')  # \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
            id="right-to-left",
        ),
        pytest.param(
            "print('e\u0301 a\u0308\u0323 \u0928\u093f Z\u0351\u0307\u0325')", id="combining"
        ),
        pytest.param("print('\u200f\u061c\u2067x\u2069')", id="bidi-marks-and-isolates"),
    ],
)
def test_right_to_left_and_combining_text_is_accepted_and_round_trips(
    client: TestClient,
    code: str,
) -> None:
    response = client.post("/tasks", json=body(code=code, stdin=code))
    assert response.status_code == 201, response.text

    fetched = client.get(response.headers["location"])

    assert fetched.json()["spec"]["code"] == code
    assert fetched.json()["spec"]["stdin"] == code
    listed = client.get("/tasks").json()["items"][0]
    assert listed["spec"]["code"] == code


# --- methods ------------------------------------------------------------------------------


def test_unsupported_method_is_405_listing_every_method_of_the_path(client: TestClient) -> None:
    response = client.request("PUT", "/tasks/some-id")

    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET"
    assert "PUT is not allowed" in response.json()["detail"]
