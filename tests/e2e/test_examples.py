"""The seed's examples, submitted verbatim to a real server on the real engine."""

import time

from harness import EXAMPLE_1, EXAMPLE_2, HOST_CPUS, Client, Server, task_containers


def test_example_1_runs_to_hello_world(client: Client) -> None:
    task = client.submit(EXAMPLE_1)
    assert task["status"]["phase"] == "Pending"
    assert task["spec"]["timeout_seconds"] == 30

    done = client.wait_for(task["id"], timeout=30)

    assert done["status"]["phase"] == "Succeeded"
    assert done["status"]["reason"] == "Completed"
    assert done["status"]["result"] == "Hello, World!\n"
    assert done["status"]["exit_code"] == 0
    assert len(done["status"]["assigned"]["cpus"]) == 2
    assert done["resource_version"] > task["resource_version"]


def test_example_2_counts_to_four(client: Client) -> None:
    task = client.submit(EXAMPLE_2)
    done = client.wait_for(task["id"], timeout=30)
    assert done["status"]["phase"] == "Succeeded"
    assert done["status"]["result"] == "".join(f"Count {i}\n" for i in range(5))
    assert len(done["status"]["assigned"]["cpus"]) == 1


def test_submit_with_wait_returns_the_finished_task(client: Client) -> None:
    started = time.monotonic()
    task = client.submit(EXAMPLE_1, wait=10)
    assert task["status"]["phase"] == "Succeeded"
    assert task["status"]["result"] == "Hello, World!\n"
    assert time.monotonic() - started < 10


def test_transitions_are_recorded_in_order(client: Client) -> None:
    task = client.submit(EXAMPLE_2, wait=10)
    events = client.events(task["id"])
    assert [(e["from_phase"], e["to_phase"]) for e in events] == [
        (None, "Pending"),
        ("Pending", "Scheduled"),
        ("Scheduled", "Running"),
        ("Running", "Succeeded"),
    ]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert events[-1]["resource_version"] == task["resource_version"]


def test_finished_containers_are_removed(client: Client, server: Server, engine) -> None:
    task = client.submit(EXAMPLE_2, wait=10)
    assert task["status"]["phase"] == "Succeeded"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        mine = task_containers(engine, server.owner, task["id"])
        if not mine:
            break
        time.sleep(0.1)
    assert mine == []


def test_stdin_reaches_the_code(client: Client) -> None:
    body = dict(
        EXAMPLE_2,
        code="import sys; print(sys.stdin.read().upper(), end='')",
        stdin="hello from stdin\n",
    )
    task = client.submit(body, wait=10)
    assert task["status"]["result"] == "HELLO FROM STDIN\n"


def test_a_request_that_can_never_fit_says_what_the_host_has(client: Client) -> None:
    body = dict(EXAMPLE_1, resources={"cpu": "512", "gpu": "0", "ram": "512MB", "storage": "1GB"})
    response = client.http.post("/tasks", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["body", "resources", "cpu"]
    assert f"this host can allocate {HOST_CPUS}" in detail[0]["msg"]
