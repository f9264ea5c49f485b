"""GET /metrics through the real app over a real SQLite file: the Prometheus text format, tasks
by phase, capacity from the controller's row, and the controller's counters and histograms once
a `Reconciler` (over the in-memory fake engine) has written them.
"""

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import col

import controller.observe
from api.app import create_app
from controller.capacity import HostCapacity
from controller.fake_runtime import FakeRuntime
from controller.loop import Reconciler
from controller.runtime import container_name
from models.clock import utcnow
from models.database import Database, open_database
from models.phases import Phase
from models.quantities import GIB
from models.settings import Settings
from models.tables import Capacity, Task

OWNER = "metrics-owner"
HOST = HostCapacity(
    cpus_total=2,
    cpu_ids=(0, 1),
    ram_total=8 * GIB,
    ram_allocatable=4 * GIB,
    storage_total=20 * GIB,
    storage_allocatable=10 * GIB,
    gpus=(),
    gpu_sharing=1,
)
SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$"
)
LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>[^"\\]*)"')


# --- parsing the exposition format ------------------------------------------------------------


@dataclass
class Family:
    name: str
    kind: str
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, **labels: str) -> float:
        found = [v for name, lbl, v in self.samples if name == self.name and lbl == labels]
        assert len(found) == 1, (self.name, labels, self.samples)
        return found[0]


def parse(text: str) -> dict[str, Family]:
    """Parse Prometheus text, checking that HELP and TYPE come first and that every sample
    directly follows the TYPE line of its own family."""
    assert text.endswith("\n")
    families: dict[str, Family] = {}
    current: Family | None = None
    pending_help: tuple[str, str] | None = None
    for line in text.splitlines():
        assert line, "blank line in the exposition"
        if line.startswith("# HELP "):
            name, _, help_text = line.removeprefix("# HELP ").partition(" ")
            assert help_text, line
            pending_help = (name, help_text)
            current = None
            continue
        if line.startswith("# TYPE "):
            name, kind = line.removeprefix("# TYPE ").split(" ")
            assert kind in {"gauge", "counter", "histogram", "summary", "untyped"}, line
            assert name not in families, f"{name} declared twice"
            assert pending_help is not None and pending_help[0] == name, (
                f"# HELP {name} must come right before its # TYPE"
            )
            current = families[name] = Family(name, kind, pending_help[1])
            pending_help = None
            continue
        assert not line.startswith("#"), line
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        assert current is not None, f"sample outside a family: {line}"
        sample_name = match["name"]
        allowed = {current.name}
        if current.kind == "histogram":
            allowed = {current.name + s for s in ("_bucket", "_sum", "_count")}
        assert sample_name in allowed, f"{sample_name} does not belong to {current.name}"
        labels = dict(LABEL.findall(match["labels"] or ""))
        value = float(match["value"])
        assert not math.isnan(value), line
        current.samples.append((sample_name, labels, value))
    for family in families.values():
        assert family.samples, f"{family.name} has no samples"
    return families


def check_histogram(family: Family) -> tuple[float, float]:
    """Check bucket order and cumulative counts; return (count, sum)."""
    assert family.kind == "histogram"
    buckets = [(lbl["le"], v) for name, lbl, v in family.samples if name.endswith("_bucket")]
    assert buckets and buckets[-1][0] == "+Inf"
    bounds = [float(le) for le, _ in buckets]
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds)
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets must be cumulative"
    total = [v for n, _, v in family.samples if n == family.name + "_count"]
    sums = [v for n, _, v in family.samples if n == family.name + "_sum"]
    assert len(total) == 1 and len(sums) == 1
    assert counts[-1] == total[0]
    assert sums[0] >= 0
    return total[0], sums[0]


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def client(tmp_path: Path, database: Database) -> Iterator[TestClient]:
    with TestClient(
        create_app(Settings(data_dir=tmp_path), database), base_url="http://127.0.0.1"
    ) as test_client:
        yield test_client


def submit(client: TestClient, cpu: str = "1") -> str:
    response = client.post(
        "/tasks",
        json={
            "task_type": "execute_code",
            "code": "print(1)",
            "resources": {"cpu": cpu, "gpu": "0", "ram": "64MB", "storage": "100MB"},
        },
    )
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


def set_phase(database: Database, task_id: str, phase: Phase) -> None:
    with database.write() as session:
        session.execute(update(Task).where(col(Task.id) == task_id).values(phase=phase))
        session.commit()


def scrape(client: TestClient) -> dict[str, Family]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "version=0.0.4" in response.headers["content-type"]
    return parse(response.text)


# --- tests ------------------------------------------------------------------------------------


def test_the_parser_rejects_a_sample_under_another_family() -> None:
    # The format check below must be able to fail.
    bad = (
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n"
        "# HELP b B.\n# TYPE b gauge\na_total 2\n"
    )
    with pytest.raises(AssertionError, match="does not belong"):
        parse(bad)


def test_tasks_by_phase_match_the_tasks(client: TestClient, database: Database) -> None:
    ids = [submit(client) for _ in range(7)]
    for task_id, phase in zip(
        ids[2:],
        [Phase.RUNNING, Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED],
        strict=True,
    ):
        set_phase(database, task_id, phase)

    tasks = scrape(client)["taskyard_tasks"]

    assert tasks.kind == "gauge"
    expected = {
        "Pending": 2,
        "Scheduled": 0,
        "Running": 2,
        "Succeeded": 1,
        "Failed": 1,
        "TimedOut": 0,
        "Cancelled": 1,
    }
    assert {lbl["phase"]: v for _, lbl, v in tasks.samples} == expected


def test_an_empty_service_reports_zero_tasks_and_no_capacity(client: TestClient) -> None:
    families = scrape(client)

    assert {lbl["phase"]: v for _, lbl, v in families["taskyard_tasks"].samples} == {
        p.value: 0 for p in Phase
    }
    assert "taskyard_allocatable" not in families
    assert families["taskyard_watchers"].value() == 0


def test_capacity_lines_come_from_the_capacity_row(client: TestClient, database: Database) -> None:
    with database.write() as session:
        session.add(
            Capacity(
                node="local",
                cpus_total=8,
                cpu_ids=[0, 1, 2, 3, 4, 5],
                ram_total=16 * GIB,
                ram_allocatable=12 * GIB,
                storage_total=100 * GIB,
                storage_allocatable=50 * GIB,
                gpu_ids=[0, 1],
                gpu_names=["A", "B"],
                gpu_sharing=2,
                allocated_cpus=[1, 4],
                allocated_gpus=[0],
                allocated_ram=3 * GIB,
                allocated_storage=1 * GIB,
                runtime_ok=False,
                runtime_message="down",
                heartbeat_at=utcnow(),
            )
        )
        session.commit()

    families = scrape(client)

    allocatable, allocated = families["taskyard_allocatable"], families["taskyard_allocated"]
    assert allocatable.value(resource="cpu") == 6
    assert allocatable.value(resource="gpu") == 4
    assert allocatable.value(resource="ram_bytes") == 12 * GIB
    assert allocatable.value(resource="storage_bytes") == 50 * GIB
    assert allocated.value(resource="cpu") == 2
    assert allocated.value(resource="gpu") == 1
    assert allocated.value(resource="ram_bytes") == 3 * GIB
    assert allocated.value(resource="storage_bytes") == 1 * GIB
    assert families["taskyard_runtime_up"].value() == 0
    assert families["taskyard_engine_errors_total"].kind == "counter"
    assert families["taskyard_engine_errors_total"].value() == 0
    # No pass has been timed yet.
    assert "taskyard_reconcile_pass_seconds" not in families


def test_controller_histograms_and_counters_after_reconcile_passes(
    tmp_path: Path, database: Database, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(controller.observe, "discover_capacity", lambda *_a, **_k: HOST)
    fake = FakeRuntime()
    reconciler = Reconciler(
        Settings(data_dir=tmp_path), database, fake, owner=OWNER, gpu_probe=lambda: ([], "no gpus")
    )
    first, second = submit(client), submit(client)
    reconciler.reconcile_once()
    fake.finish(container_name(OWNER, first, 1), 0, stdout=b"ok\n")
    reconciler.reconcile_once()
    fake.available = False
    reconciler.reconcile_once()
    passes = 3

    families = scrape(client)

    count, total = check_histogram(families["taskyard_reconcile_pass_seconds"])
    assert count == passes
    assert 0 < total < 30
    started, _ = check_histogram(families["taskyard_task_submit_to_start_seconds"])
    assert started == 2
    ran, _ = check_histogram(families["taskyard_task_run_seconds"])
    assert ran == 1
    assert families["taskyard_containers_started_total"].value() == 2
    assert families["taskyard_engine_errors_total"].value() >= 1
    assert families["taskyard_runtime_up"].value() == 0
    assert families["taskyard_allocatable"].value(resource="cpu") == 2
    assert families["taskyard_allocated"].value(resource="cpu") == 1
    tasks = families["taskyard_tasks"]
    assert tasks.value(phase="Succeeded") == 1
    assert tasks.value(phase="Running") == 1
    assert container_name(OWNER, second, 1) in fake.names()


def test_every_family_is_declared_once_with_its_samples_right_after(
    tmp_path: Path, database: Database, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(controller.observe, "discover_capacity", lambda *_a, **_k: HOST)
    Reconciler(
        Settings(data_dir=tmp_path),
        database,
        FakeRuntime(),
        owner=OWNER,
        gpu_probe=lambda: ([], "no gpus"),
    ).reconcile_once()
    submit(client)

    text = client.get("/metrics").text
    families = parse(text)

    assert set(families) >= {
        "taskyard_tasks",
        "taskyard_allocatable",
        "taskyard_allocated",
        "taskyard_runtime_up",
        "taskyard_engine_errors_total",
        "taskyard_containers_started_total",
        "taskyard_reconcile_pass_seconds",
        "taskyard_task_submit_to_start_seconds",
        "taskyard_task_run_seconds",
        "taskyard_watchers",
    }
    for name, family in families.items():
        assert name.startswith("taskyard_")
        if name.endswith("_total"):
            assert family.kind == "counter", name
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("# TYPE "):
            name = line.split()[2]
            following = lines[index + 1]
            assert following.startswith(name), f"{line!r} is followed by {following!r}"


def test_metrics_need_no_admin_token(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 200


def test_once_user_tokens_exist_metrics_need_a_valid_token(client: TestClient) -> None:
    admin = {"Authorization": f"Bearer {client.app.state.admin_token}"}  # type: ignore[attr-defined]
    created = client.post("/admin/tokens", json={"name": "alice"}, headers=admin)
    assert created.status_code == 201, created.text
    alice = {"Authorization": f"Bearer {created.json()['token']}"}

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer ty_unknown"}).status_code == 401
    assert client.get("/metrics", headers=alice).status_code == 200
    assert client.get("/metrics", headers=admin).status_code == 200
    client.delete(f"/admin/tokens/{created.json()['id']}", headers=admin)
    assert client.get("/metrics", headers=alice).status_code == 401
