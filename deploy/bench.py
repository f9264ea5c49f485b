"""The taskyard benchmark: each figure of the performance issue next to its baseline, both
measured in the same run on the same machine, printed as one table.

Run it from the repository root, on a host where the service runs (Docker engine up, runner
image built; `deploy/setup-host.sh` does both):

    .venv/bin/python deploy/bench.py                   # full run, about 3 min on 2 cores
    .venv/bin/python deploy/bench.py --quick           # smoke run for CI, under a minute
    .venv/bin/python deploy/bench.py --only latency rate

Figures (names for `--only`): footprint, latency, burst, programs (a batch of 200 short
programs with asserts), handoff, watch, rate, batch, reconcile, scheduler, postgres (the submit
rate and watch delivery with the tasks in PostgreSQL beside the same with SQLite, on a scratch
server this run starts and removes), runtimes (Example 1 per runtime). Each one starts what it
needs: a `taskyard serve` (or `taskyard api`) process on a free 127.0.0.1 port with a temporary
data dir, a no-op FastAPI app under uvicorn, plain `docker run` containers labelled
`taskyard.bench=<run id>`. Everything is stopped and every container it started is removed at
the end, also after Ctrl-C or SIGTERM. The run has a global deadline and each figure a time
budget: a figure stops early (fewer runs, or a lower bound such as "> 30 s") rather than
overrun, and one that does not fit at all is skipped. It reports medians and never asserts on
time: the exit code is 0 unless something broke (the engine or image missing, a server that does
not start, a task that fails, a watch client that cannot subscribe), and then 1 with the reason
under the table. Progress goes to stderr.

The submit rate is driven by `wrk` (Debian package `wrk`) where it is installed; otherwise by
an asyncio client, which may saturate before the server does (the output says which).
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("TASKYARD_IMAGE", "taskyard-runner:1")
BENCH_LABEL = "taskyard.bench"
OWNER_LABEL = "taskyard.owner"
TERMINAL = frozenset({"Succeeded", "Failed", "TimedOut", "Cancelled"})
CORES = len(os.sched_getaffinity(0))
MIB = 1024 * 1024
EXAMPLE_1: dict[str, Any] = {
    "task_type": "execute_code",
    "code": "print('Hello, World!')",
    "resources": {"cpu": "2", "gpu": "0", "ram": "512MB", "storage": "1GB"},
}
HELLO = "Hello, World!\n"
RATE_CONNECTIONS = 16
SUBMIT_THREADS = 16

NOOP_APP = '''\
"""The submit-rate baseline: a no-op route on the same kind of server as taskyard's API."""
import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.post("/noop")
async def noop():
    return {}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False)
'''


class BenchError(Exception):
    """Something broke: the figure cannot be measured, and the run exits non-zero."""


# --- sizes, budgets, results ----------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    latency_runs: int
    burst_tasks: int
    handoff_rounds: int
    watch_clients: int
    rate_seconds: int
    rate_rounds: int
    reconcile_terminal: int
    reconcile_passes: int
    scheduler_pending: int
    pending_pass_tasks: int
    batch_tasks: int
    batch_runs: int
    program_tasks: int
    runtime_runs: int
    settle_seconds: float
    deadline_seconds: float
    budgets: dict[str, float]


FULL = Sizes(
    latency_runs=20,
    burst_tasks=200,
    handoff_rounds=5,
    watch_clients=1000,
    rate_seconds=5,
    rate_rounds=3,
    reconcile_terminal=100_000,
    reconcile_passes=20,
    scheduler_pending=10_000,
    pending_pass_tasks=10_000,
    batch_tasks=1000,
    batch_runs=5,
    program_tasks=200,
    runtime_runs=5,
    settle_seconds=5.0,
    deadline_seconds=1800,
    budgets={
        "footprint": 60,
        "latency": 180,
        "burst": 480,
        "handoff": 150,
        "watch": 180,
        "rate": 180,
        "batch": 60,
        "programs": 420,
        "runtimes": 300,
        "reconcile": 300,
        "scheduler": 180,
        "postgres": 300,
    },
)
QUICK = Sizes(
    latency_runs=3,
    burst_tasks=20,
    handoff_rounds=1,
    watch_clients=50,
    rate_seconds=1,
    rate_rounds=1,
    reconcile_terminal=10_000,
    reconcile_passes=5,
    scheduler_pending=10_000,
    pending_pass_tasks=1_000,
    batch_tasks=1000,
    batch_runs=2,
    program_tasks=10,
    runtime_runs=1,
    settle_seconds=1.0,
    deadline_seconds=58,
    budgets={
        "footprint": 10,
        "latency": 10,
        "burst": 30,
        "handoff": 12,
        "watch": 12,
        "rate": 10,
        "batch": 8,
        "programs": 30,
        "runtimes": 45,
        "reconcile": 10,
        "scheduler": 10,
        "postgres": 20,
    },
)


@dataclass
class Row:
    """One line of the table; its `notes` are printed under the table."""

    figure: str
    taskyard: str
    baseline: str = "—"
    ratio: str = "—"
    target: str = "—"
    met: str = "—"
    notes: list[str] = field(default_factory=list)
    broken: bool = False
    source: str = ""  # the figure's name, for the table's order


def seconds(value: float) -> str:
    if value < 0.001:  # a pass of well under a millisecond is not "0 ms"
        return f"{value * 1000:.2f} ms"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def times(value: float) -> str:
    return f"{value:.2f}×"


def verdict(met: bool) -> str:
    return "yes" if met else "NO"


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def at_epoch(iso: str) -> float:
    """Seconds since the epoch of one of the API's ISO 8601 UTC times (`...Z`)."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def remaining(until: float) -> float:
    return until - time.monotonic()


# --- the processes the run starts -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """One server process of ours on a free 127.0.0.1 port, in its own process group."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        data_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.argv = [arg.replace("{port}", str(self.port)) for arg in argv]
        self.env = {**env, "TASKYARD_HOST": "127.0.0.1", "TASKYARD_PORT": str(self.port)}
        self.cwd = cwd
        self.data_dir = data_dir
        self.log = cwd / f"{name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready: Callable[[httpx.Client], bool], timeout: float = 60) -> "Service":
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise BenchError(
                        f"{self.name} exited with {self.process.returncode}:\n"
                        f"{self.log.read_text()[-2000:]}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if ready(client):
                        return self
                time.sleep(0.1)
        raise BenchError(
            f"{self.name} not ready after {timeout:.0f} s:\n{self.log.read_text()[-2000:]}"
        )

    def rss_mb(self) -> float:
        assert self.process is not None
        return psutil.Process(self.process.pid).memory_info().rss / MIB

    @property
    def owner(self) -> str | None:
        path = self.data_dir / "instance-id" if self.data_dir else None
        return path.read_text().strip() if path and path.exists() else None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)


def _serve_ready(client: httpx.Client) -> bool:
    response = client.get("/healthz")
    return response.status_code == 200 and response.json()["status"] == "ok"


def _answers(client: httpx.Client) -> bool:
    return client.get("/healthz").status_code == 200


def _noop_ready(client: httpx.Client) -> bool:
    return client.post("/noop").status_code == 200


def remove_containers(label: str) -> int:
    """Remove every container carrying `label` (key=value); how many there were."""
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    ids = listed.stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=180)
    return len(ids)


class Lab:
    """What this run starts, and `close()`, which stops and removes all of it."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:12]
        self.root = Path(tempfile.mkdtemp(prefix="taskyard-bench-"))
        self.services: list[Service] = []
        self._serve: Service | None = None
        self._noop: Service | None = None
        self._postgres: Any = None  # tests/scratch_postgres.py's ScratchPostgres, once started

    def _taskyard(
        self, verb: str, ready: Callable[[httpx.Client], bool], database_url: str | None = None
    ) -> Service:
        data_dir = self.root / f"{verb}-{len(self.services)}"
        data_dir.mkdir()
        # The server runs the code of the tree this file sits in, whatever is installed.
        python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "TASKYARD_DATA_DIR": str(data_dir), "PYTHONPATH": python_path}
        env.pop("TASKYARD_DATABASE_URL", None)
        if database_url is not None:
            env["TASKYARD_DATABASE_URL"] = database_url
        service = Service(
            f"taskyard-{verb}",
            [sys.executable, "-m", "taskyard.cli", verb],
            env=env,
            cwd=data_dir,
            data_dir=data_dir,
        )
        self.services.append(service)
        return service.start(ready)

    def serve(self) -> Service:
        """The `taskyard serve` process (API and controller) shared by the live figures."""
        if self._serve is None:
            self._serve = self._taskyard("serve", _serve_ready)
        return self._serve

    def api_only(self, database_url: str | None = None) -> Service:
        """A fresh `taskyard api` without a controller: submitted tasks stay Pending."""
        return self._taskyard("api", _answers, database_url)

    def postgres_url(self) -> str:
        """A new database on this run's scratch PostgreSQL, started at the first call with
        the server's default durability (fsync, synchronous commit), as SQLite's is FULL."""
        if self._postgres is None:
            sys.path.insert(0, str(REPO / "tests"))
            from scratch_postgres import PostgresMissing, ScratchPostgres

            server = ScratchPostgres(durable=True)
            try:
                server.start()
            except PostgresMissing as exc:
                raise BenchError(str(exc)) from None
            self._postgres = server
        return str(self._postgres.url(self._postgres.create_database()))

    def noop(self) -> Service:
        if self._noop is None:
            folder = self.root / "noop"
            folder.mkdir()
            (folder / "bench_noop.py").write_text(NOOP_APP)
            service = Service(
                "noop",
                [sys.executable, "bench_noop.py", "{port}"],
                env=dict(os.environ),
                cwd=folder,
            )
            self.services.append(service)
            self._noop = service.start(_noop_ready)
        return self._noop

    def docker_run(self, limits: Sequence[str], code: str) -> list[str]:
        """A plain `docker run` of `code`, hardened no further than the issue's baseline."""
        return [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--label",
            f"{BENCH_LABEL}={self.run_id}",
            *limits,
            IMAGE,
            "python3",
            "-c",
            code,
        ]

    def close(self) -> int:
        """Stop every process and remove every container of this run; leftover containers."""
        for service in reversed(self.services):
            service.stop()
        leftovers = remove_containers(f"{BENCH_LABEL}={self.run_id}")
        for service in self.services:
            if service.owner:
                leftovers += remove_containers(f"{OWNER_LABEL}={service.owner}")
        if self._postgres is not None:
            self._postgres.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        return leftovers


# --- talking to taskyard --------------------------------------------------------------------


def task_body(
    code: str, *, cpu: str = "1", ram: str = "128MB", storage: str = "64MB"
) -> dict[str, Any]:
    return {
        "task_type": "execute_code",
        "code": code,
        "resources": {"cpu": cpu, "gpu": "0", "ram": ram, "storage": storage},
    }


def created(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 201:
        raise BenchError(f"POST /tasks answered {response.status_code}: {response.text[:300]}")
    task: dict[str, Any] = response.json()
    return task


def wait_terminal(client: httpx.Client, task_id: str, until: float) -> dict[str, Any]:
    while True:
        wait = max(0.0, min(30.0, remaining(until)))
        response = client.get(f"/tasks/{task_id}", params={"wait": wait} if wait else None)
        task: dict[str, Any] = response.json()
        if task["status"]["phase"] in TERMINAL:
            return task
        if remaining(until) <= 0:
            raise BenchError(
                f"task {task_id} still {task['status']['phase']} when the "
                "figure's time budget ran out"
            )


def wait_phase(
    client: httpx.Client, task_ids: Sequence[str], phases: set[str], until: float
) -> list[dict[str, Any]]:
    while True:
        tasks = [client.get(f"/tasks/{task_id}").json() for task_id in task_ids]
        if all(task["status"]["phase"] in phases for task in tasks):
            return tasks
        if remaining(until) <= 0:
            raise BenchError(
                f"tasks not {'/'.join(sorted(phases))} within the time budget: "
                f"{[t['status']['phase'] for t in tasks]}"
            )
        time.sleep(0.02)


def metric_values(client: httpx.Client) -> dict[str, float]:
    """GET /metrics as {'name{labels}': value}."""
    values = {}
    for line in client.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def terminal_count(client: httpx.Client) -> int:
    values = metric_values(client)
    return int(sum(values.get(f'taskyard_tasks{{phase="{phase}"}}', 0) for phase in TERMINAL))


def run_docker(command: list[str], expect: str | None = None) -> float:
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - began
    if done.returncode != 0 or (expect is not None and done.stdout != expect):
        raise BenchError(f"docker run failed ({done.returncode}): {done.stderr[-500:]}")
    return took


# --- 6. footprint ----------------------------------------------------------------------------


def figure_footprint(lab: Lab, sizes: Sizes, until: float) -> list[Row]:
    serve = lab.serve()
    noop = lab.noop()
    time.sleep(min(sizes.settle_seconds, max(0.0, remaining(until) - 3)))
    samples, base = [], []
    for _ in range(5):
        samples.append(serve.rss_mb())
        base.append(noop.rss_mb())
        time.sleep(0.2)
    idle, noop_rss = statistics.median(samples), statistics.median(base)
    return [
        Row(
            "6 footprint: idle serve RSS",
            f"{idle:.0f} MB",
            f"{noop_rss:.0f} MB no-op app",
            times(idle / noop_rss),
            "< 150 MB",
            verdict(idle < 150),
            [
                "footprint: RSS of the `taskyard serve` process (API + controller, idle, "
                f"{sizes.settle_seconds:.0f} s after healthz ok), median of 5 samples; "
                "baseline: the no-op FastAPI app under uvicorn, for scale"
            ],
        )
    ]


# --- 1. latency ------------------------------------------------------------------------------


def figure_latency(lab: Lab, sizes: Sizes, until: float) -> list[Row]:
    if CORES < 2:
        return [Row("1 latency, Example 1", "skipped: Example 1 asks for 2 cores")]
    serve = lab.serve()
    command = lab.docker_run(["--cpus", "2", "-m", "512m"], EXAMPLE_1["code"])
    ours: list[float] = []
    theirs: list[float] = []
    stages: list[list[float]] = []

    with httpx.Client(base_url=serve.url, timeout=60) as client:

        def via_taskyard() -> None:
            sent = time.time()
            began = time.perf_counter()
            task = created(client.post("/tasks", params={"wait": 30}, json=EXAMPLE_1))
            took = time.perf_counter() - began
            status = task["status"]
            if status["phase"] != "Succeeded" or status["stdout"] != HELLO:
                raise BenchError(f"Example 1 ended {status['phase']}: {status['message']}")
            ours.append(took)
            marks = [
                sent,
                at_epoch(task["created_at"]),
                at_epoch(status["scheduled_at"]),
                at_epoch(status["started_at"]),
                at_epoch(status["finished_at"]),
                sent + took,
            ]
            stages.append([b - a for a, b in pairwise(marks)])

        def via_docker() -> None:
            theirs.append(run_docker(command, HELLO))

        via_taskyard()  # warm-up pair, not counted: first request, image in page cache
        via_docker()
        ours.clear()
        stages.clear()
        theirs.clear()
        for i in range(sizes.latency_runs):
            if remaining(until) < 2:
                break
            pair = (via_taskyard, via_docker) if i % 2 == 0 else (via_docker, via_taskyard)
            for run in pair:
                run()
    if not ours:
        raise BenchError("no latency run fitted in the time budget")
    ty, raw = statistics.median(ours), statistics.median(theirs)
    breakdown = [statistics.median(stage) for stage in zip(*stages, strict=True)]
    names = (
        "submit→created",
        "created→scheduled",
        "scheduled→started (container start)",
        "started→finished",
        "finished→client",
    )
    return [
        Row(
            f"1 latency, Example 1 (median of {len(ours)})",
            seconds(ty),
            f"{seconds(raw)} docker run",
            times(ty / raw),
            "≤ 0.50×",
            verdict(ty / raw <= 0.5),
            [
                f"latency: POST /tasks?wait=30 vs `{' '.join(command[:3])} … --cpus 2 -m 512m`, "
                "interleaved one of each, alternating which goes first; a warm-up pair not "
                f"counted; p90 {seconds(percentile(ours, 90))} vs "
                f"{seconds(percentile(theirs, 90))}",
                "latency breakdown (medians, server timestamps): "
                + ", ".join(
                    f"{name} {seconds(value)}" for name, value in zip(names, breakdown, strict=True)
                ),
            ],
        )
    ]


# --- 1b. latency per runtime -----------------------------------------------------------------

HELLO_IN = {
    "python": "print('Hello, World!')",
    "python-data": "print('Hello, World!')",
    "node": "console.log('Hello, World!');",
    "bash": "echo 'Hello, World!'",
    "c": '#include <stdio.h>\nint main(void) { puts("Hello, World!"); return 0; }\n',
    "cpp": '#include <iostream>\nint main() { std::cout << "Hello, World!" << std::endl; }\n',
    "java": "public class Main { public static void main(String[] a) {\n"
    '  System.out.println("Hello, World!"); } }\n',
}


def _runtime_docker(lab: Lab, runtime: Any) -> list[str]:
    """`docker run` of the runtime's own image, compiling and running as taskyard does, with
    the Example's limits: what a user without taskyard would type."""
    steps = [shlex.join(runtime.compile)] if runtime.compile else []
    script = " && ".join(
        ["cd /work", 'printf %s "$CODE" > ' + runtime.main_file, *steps, shlex.join(runtime.run)]
    )
    return [
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        "--label",
        f"{BENCH_LABEL}={lab.run_id}",
        "--cpus",
        "2",
        "-m",
        "512m",
        "--tmpfs",
        "/work:exec,mode=1777",
        "-e",
        f"CODE={HELLO_IN[runtime.name]}",
        runtime.image(IMAGE),
        "sh",
        "-c",
        script,
    ]


def figure_runtimes(lab: Lab, sizes: Sizes, until: float) -> list[Row]:
    from models.runtimes import RUNTIMES

    serve = lab.serve()
    rows: list[Row] = []
    with httpx.Client(base_url=serve.url, timeout=120) as client:
        installed = {item["name"] for item in client.get("/runtimes").json()["items"]}
        for runtime in RUNTIMES:
            if runtime.name not in installed:
                rows.append(Row(f"1b latency, {runtime.name}", "not installed"))
                continue
            body = {**EXAMPLE_1, "code": HELLO_IN[runtime.name], "runtime": runtime.name}
            command = _runtime_docker(lab, runtime)
            ours: list[float] = []
            theirs: list[float] = []
            for i in range(sizes.runtime_runs + 1):  # the first pair warms up, not counted
                if remaining(until) < 10:
                    break
                began = time.perf_counter()
                task = created(client.post("/tasks", params={"wait": 60}, json=body))
                took = time.perf_counter() - began
                if task["status"]["stdout"] != HELLO:
                    raise BenchError(f"{runtime.name} ended {task['status']['message']}")
                raw = run_docker(command, HELLO)
                if i:
                    ours.append(took)
                    theirs.append(raw)
            if not ours:
                rows.append(Row(f"1b latency, {runtime.name}", "no run fitted in the budget"))
                continue
            ty, raw = statistics.median(ours), statistics.median(theirs)
            rows.append(
                Row(
                    f"1b latency, {runtime.name} (median of {len(ours)})",
                    seconds(ty),
                    f"{seconds(raw)} docker run",
                    times(ty / raw),
                    notes=[
                        "runtimes: Example 1's hello world in each runtime, POST /tasks?wait vs "
                        "`docker run` of the same image compiling and running it the same way "
                        "(--cpus 2 -m 512m, a tmpfs /work); a warm-up pair not counted"
                    ]
                    if not rows
                    else [],
                )
            )
    return rows


# --- 2. burst --------------------------------------------------------------------------------


def figure_burst(lab: Lab, sizes: Sizes, until: float) -> list[Row]:
    serve = lab.serve()
    count = sizes.burst_tasks
    codes = [f"print({i} * {i})" for i in range(count)]
    limits = ["--cpus", "1", "-m", "128m"]

    began = time.perf_counter()
    pool = ThreadPoolExecutor(CORES)
    try:
        list(pool.map(lambda code: run_docker(lab.docker_run(limits, code)), codes))
    finally:  # on Ctrl-C or a failure, start no more containers
        pool.shutdown(cancel_futures=True)
    raw = time.perf_counter() - began

    with httpx.Client(
        base_url=serve.url, timeout=60, limits=httpx.Limits(max_connections=SUBMIT_THREADS)
    ) as client:
        before = terminal_count(client)
        began = time.perf_counter()
        with ThreadPoolExecutor(SUBMIT_THREADS) as pool:
            ids = list(
                pool.map(
                    lambda code: created(client.post("/tasks", json=task_body(code)))["id"], codes
                )
            )
        submitted = time.perf_counter() - began
        while (done := terminal_count(client) - before) < count and remaining(until) > 0:
            time.sleep(0.1)
        ours = time.perf_counter() - began
        wanted = set(ids)
        tasks = [
            t
            for t in client.get("/tasks", params={"limit": 500}).json()["items"]
            if t["id"] in wanted and t["status"]["phase"] in TERMINAL
        ]
    failed = [t for t in tasks if t["status"]["phase"] != "Succeeded"]
    if failed:
        raise BenchError(
            f"burst: {len(failed)} of {count} tasks did not succeed, e.g. {failed[0]['status']}"
        )
    busy = sum(
        at_epoch(t["status"]["finished_at"]) - at_epoch(t["status"]["started_at"]) for t in tasks
    )
    # Out of time is a measurement too (a lower bound), not a failure: no timed assertions.
    bound = "" if done >= count else "> "
    notes = [
        f"burst: {count} one-liners submitted by {SUBMIT_THREADS} threads (all accepted "
        f"in {seconds(submitted)}), until /metrics counts them terminal, vs the same "
        f"snippets as `docker run --cpus 1 -m 128m`, {CORES} at a time; taskyard's slots "
        f"held a running container {busy / CORES / ours:.0%} of the wall time"
    ]
    if bound:
        notes.append(f"burst: the time budget ran out with {done} of {count} tasks terminal")
    return [
        Row(
            f"2 burst, {count} tasks at cpu 1",
            bound + seconds(ours),
            f"{seconds(raw)} docker run -P{CORES}",
            bound + times(ours / raw),
            "≤ 0.30×",
            verdict(not bound and ours / raw <= 0.3),
            notes,
        )
    ]


# --- 2b. a batch of short programs ----------------------------------------------------------

# Small functions of the kind a grader or a model's unit tests run, each with a handful of
# asserts; `{n}` sets the work (10 to 50 ms of Python on the machine in docs/benchmark.md).
PROGRAM_KINDS = (
    (
        "def squares(n):\n    return sum(i * i for i in range(n))\n",
        "squares({n})",
    ),
    (
        "def primes(n):\n"
        "    sieve = bytearray([1]) * n\n"
        "    sieve[:2] = b'\\x00\\x00'\n"
        "    for i in range(2, int(n ** 0.5) + 1):\n"
        "        if sieve[i]:\n"
        "            for j in range(i * i, n, i):\n"
        "                sieve[j] = 0\n"
        "    return sum(sieve)\n",
        "primes({n})",
    ),
    (
        "def collatz(n):\n"
        "    best = 0\n"
        "    for start in range(1, n // 60):\n"
        "        steps, k = 0, start\n"
        "        while k != 1:\n"
        "            k = k // 2 if k % 2 == 0 else 3 * k + 1\n"
        "            steps += 1\n"
        "        best = max(best, steps)\n"
        "    return best\n",
        "collatz({n})",
    ),
    (
        "def words(n):\n"
        "    text = ' '.join(str(i * 7919 % 1000) for i in range(n // 2))\n"
        "    counts = {}\n"
        "    for word in text.split():\n"
        "        counts[word] = counts.get(word, 0) + 1\n"
        "    return len(counts)\n",
        "words({n})",
    ),
)


def short_programs(count: int) -> list[str]:
    """`count` programs: a function and five asserts each, every seventh one with a wrong
    expectation, so that verdicts differ (the plain run is the judge of which)."""
    programs = []
    for i in range(count):
        source, call = PROGRAM_KINDS[i % len(PROGRAM_KINDS)]
        n = 30_000 + (i * 7_919) % 50_000
        checks = [
            f"result = {call.format(n=n)}",
            "assert isinstance(result, int)",
            "assert result >= 0",
            f"assert result == {call.format(n=n)}",
            f"assert {call.format(n=2)} >= 0",
            f"assert result != {-1 - i}" if i % 7 else "assert result == -1, 'wrong on purpose'",
        ]
        programs.append(source + "\n" + "\n".join(checks) + "\n")
    return programs


def run_plainly(code: str) -> tuple[float, int]:
    """One program as a plain Python subprocess (this interpreter, not a version manager's
    shim), no isolation: its time and exit code."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    return time.perf_counter() - began, done.returncode


def run_contained(lab: Lab, code: str, retried: list[str]) -> int:
    """One program as the issue's raw `docker run`: its exit code. A failure of docker's own
    (125 and up: the engine, not the program) is tried again once, and noted in `retried`."""
    for _ in range(2):
        done = subprocess.run(
            lab.docker_run(["--cpus", "1", "-m", "128m"], code), capture_output=True, timeout=120
        )
        if done.returncode < 125:
            return done.returncode
        retried.append(done.stderr.decode(errors="replace").strip()[-200:])
    raise BenchError(f"docker run failed ({done.returncode}): {retried[-1]}")


def wait_batch(client: httpx.Client, batch_id: str, until: float) -> None:
    """Until every task of the batch has ended: `GET /watch?batch=` ends then (nothing polled)."""
    while remaining(until) > 0:
        with client.stream(
            "GET", "/watch", params={"batch": batch_id}, timeout=max(1.0, remaining(until))
        ) as stream:
            for _ in stream.iter_bytes():
                pass
        state = client.get(f"/batches/{batch_id}").json()
        if state["done"] >= state["count"]:
            return
    raise BenchError(f"batch {batch_id} not done within the figure's time budget")


def batch_tasks(client: httpx.Client, batch_id: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"batch": batch_id, "limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/tasks", params=params).json()
        tasks += page["items"]
        if not (cursor := page.get("next_cursor")):
            return tasks


def slot_profile(tasks: list[dict[str, Any]], wall: float, slots: int, began: float) -> list[str]:
    """Where a batch's wall time went, from the tasks' own timestamps."""
    marks = [
        (
            at_epoch(t["created_at"]),
            at_epoch(t["status"]["scheduled_at"]),
            at_epoch(t["status"]["started_at"]),
            at_epoch(t["status"]["finished_at"]),
        )
        for t in tasks
    ]
    start = [s - b for _, b, s, _ in marks]
    run = [f - s for _, _, s, f in marks]
    # A slot's turn over: from one task's end to the next task's start on any slot.
    ends = sorted(f for *_, f in marks)
    starts = sorted(s for _, _, s, _ in marks)
    handoff = [s - e for e, s in zip(ends, starts[slots:], strict=False)]
    per_task = wall * slots / len(tasks)
    return [
        f"programs profile (medians): scheduled→started {seconds(statistics.median(start))}, "
        f"started→finished {seconds(statistics.median(run))} (p90 "
        f"{seconds(percentile(run, 90))}), an end to the next start "
        f"{seconds(statistics.median(handoff)) if handoff else '—'}; a slot's time per task "
        f"{seconds(per_task)}; first start {seconds(min(starts) - began)} after the POST, "
        f"last end {seconds(max(ends) - began)}"
    ]


def figure_programs(lab: Lab, sizes: Sizes, until: float) -> list[Row]:
    serve = lab.serve()
    count = sizes.program_tasks
    programs = short_programs(count)

    began = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        plain = list(pool.map(run_plainly, programs))
    floor = time.perf_counter() - began
    expected = [code == 0 for _, code in plain]

    retried: list[str] = []
    began = time.perf_counter()
    pool = ThreadPoolExecutor(CORES)
    try:
        raw_codes = list(pool.map(lambda code: run_contained(lab, code, retried), programs))
    finally:  # on Ctrl-C or a failure, start no more containers
        pool.shutdown(cancel_futures=True)
    raw = time.perf_counter() - began

    with httpx.Client(base_url=serve.url, timeout=60) as client:
        slots = int(metric_values(client)['taskyard_allocatable{resource="cpu"}'])
        sent = time.time()
        began = time.perf_counter()
        response = client.post("/batches", json={"tasks": [task_body(code) for code in programs]})
        if response.status_code != 201:
            raise BenchError(f"POST /batches answered {response.status_code}: {response.text}")
        batch = response.json()
        wait_batch(client, batch["id"], until)
        ours = time.perf_counter() - began
        by_id = {t["id"]: t for t in batch_tasks(client, batch["id"])}
    tasks = [by_id[task_id] for task_id in batch["task_ids"]]
    verdicts = [t["status"]["phase"] == "Succeeded" for t in tasks]
    odd = [t["status"] for t in tasks if t["status"]["phase"] not in ("Succeeded", "Failed")]
    if odd:
        raise BenchError(f"programs: {len(odd)} tasks neither succeeded nor failed: {odd[0]}")
    agree = sum(a == b for a, b in zip(verdicts, expected, strict=True))
    raw_agree = sum((c == 0) == b for c, b in zip(raw_codes, expected, strict=True))
    busy = sum(
        at_epoch(t["status"]["finished_at"]) - at_epoch(t["status"]["started_at"]) for t in tasks
    )
    occupancy = busy / (ours * slots)
    ratio = ours / raw
    median_plain = statistics.median(took for took, _ in plain)
    return [
        Row(
            f"2b batch, {count} short programs at cpu 1",
            seconds(ours),
            f"{seconds(raw)} docker run -P{CORES}",
            times(ratio),
            "≤ 0.20×",
            verdict(ratio <= 0.2 and agree == count),
            [
                f"programs: {count} programs (a function and five asserts each, "
                f"{count - sum(expected)} failing one on purpose) as one POST /batches, until "
                f"GET /watch?batch= ends; the floor, plain `python3` 2 at a time: "
                f"{seconds(floor)} (a program's median {seconds(median_plain)}); "
                f"taskyard is {ours / floor:.1f}× the floor; verdicts equal to the floor's: "
                f"{agree} of {count} (docker run: {raw_agree})",
                *slot_profile(tasks, ours, slots, sent),
                *(
                    [
                        f"programs: {len(retried)} docker run(s) failed on docker's side and were "
                        f"run again, e.g. {retried[0]}"
                    ]
                    if retried
                    else []
                ),
            ],
        ),
        Row(
            f"  slot occupancy, {count} short programs",
            f"{occupancy:.0%}",
            target="≥ 80%",
            met=verdict(occupancy >= 0.8),
            notes=[
                f"occupancy: the sum over tasks of finished_at − started_at, over the wall time "
                f"× {slots} slots"
            ],
        ),
    ]


# --- submit-to-start when a slot frees up ----------------------------------------------------


def figure_handoff(lab: Lab, sizes: Sizes, until: float) -> list[Row]:
    serve = lab.serve()
    gaps: list[float] = []
    stages: list[tuple[float, float]] = []
    with httpx.Client(base_url=serve.url, timeout=60) as client:
        slots = int(metric_values(client)['taskyard_allocatable{resource="cpu"}'])
        for _ in range(sizes.handoff_rounds):
            if gaps and remaining(until) < 15:
                break
            # Staggered sleeps, so that the first one to end is the one that frees the slot.
            sleepers = [
                created(
                    client.post(
                        "/tasks",
                        json=task_body(f"import time; time.sleep({1.5 + 0.5 * i})", ram="64MB"),
                    )
                )["id"]
                for i in range(slots)
            ]
            wait_phase(client, sleepers, {"Running"}, until)
            queued = created(client.post("/tasks", json=task_body("print('next')", ram="64MB")))
            task = wait_terminal(client, queued["id"], until)
            ended = min(
                at_epoch(wait_terminal(client, s, until)["status"]["finished_at"]) for s in sleepers
            )
            status = task["status"]
            gaps.append(at_epoch(status["started_at"]) - ended)
            stages.append(
                (
                    at_epoch(status["scheduled_at"]) - ended,
                    at_epoch(status["started_at"]) - at_epoch(status["scheduled_at"]),
                )
            )
    if not gaps:
        raise BenchError("no handoff round fitted in the time budget")
    to_scheduled = statistics.median(s[0] for s in stages)
    to_started = statistics.median(s[1] for s in stages)
    return [
        Row(
            f"  slot handoff: end → next start (median of {len(gaps)})",
            seconds(statistics.median(gaps)),
            notes=[
                f"handoff: all {slots} cores busy with sleep tasks, one more queued; from "
                "the first sleeper's finished_at to the queued task's started_at: "
                f"{seconds(to_scheduled)} until it is scheduled, "
                f"{seconds(to_started)} more until its container has started"
            ],
        )
    ]


# --- 5. watch fan-out ------------------------------------------------------------------------


@dataclass
class Crowd:
    """What the watch clients share: how many are subscribed, and the task to follow."""

    size: int
    joined: int = 0
    target: str | None = None


class _WatchClient(asyncio.Protocol):
    """One /watch client as a bare protocol: each piece of the stream is stamped the moment
    it arrives, and the frames are cut out of the chunked body then; the JSON is parsed only
    after the run. A thousand of these share this process's loop with nothing else to do, so
    what they measure is the server's delivery, not this client's own parsing."""

    def __init__(self, crowd: Crowd) -> None:
        self.crowd = crowd
        self.done: asyncio.Future[list[tuple[float, bytes]]] = (
            asyncio.get_running_loop().create_future()
        )
        self.frames: list[tuple[float, bytes]] = []  # (arrival, an SSE frame)
        self._raw = b""  # not yet cut into chunks
        self._body = b""  # the chunks' data, not yet cut into frames
        self._head_seen = False
        self._subscribed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            b"GET /watch HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n"
        )

    def data_received(self, data: bytes) -> None:
        arrived = time.time()
        self._raw += data
        if not self._head_seen:
            head, found, rest = self._raw.partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
                self._fail(BenchError(f"GET /watch answered {head.splitlines()[0]!r}"))
                return
            self._head_seen, self._raw = True, rest
        while True:  # chunked transfer coding: "<hex size>\r\n<data>\r\n"
            line, found, rest = self._raw.partition(b"\r\n")
            if not found:
                break
            size = int(line.split(b";")[0] or b"0", 16)
            if len(rest) < size + 2:
                break
            self._body += rest[:size]
            self._raw = rest[size + 2 :]
        while b"\n\n" in self._body:
            frame, self._body = self._body.split(b"\n\n", 1)
            if frame.startswith(b":"):
                if not self._subscribed:
                    self._subscribed = True
                    self.crowd.joined += 1
                continue
            self.frames.append((arrived, frame))
            target = self.crowd.target
            if (
                target is not None
                and target.encode() in frame
                and any(f'"to_phase": "{phase}"'.encode() in frame for phase in TERMINAL)
            ):
                self.transport.close()
                if not self.done.done():
                    self.done.set_result(self.frames)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(BenchError(f"a /watch stream ended early: {exc}"))

    def _fail(self, error: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(error)
        self.transport.close()


async def _follow_watch(
    port: int, crowd: Crowd, connecting: asyncio.Semaphore
) -> list[tuple[float, dict[str, Any]]]:
    """One /watch client: every transition it receives, with its arrival time."""
    loop = asyncio.get_running_loop()
    async with connecting:
        transport, client = await loop.create_connection(
            lambda: _WatchClient(crowd), "127.0.0.1", port
        )
    try:
        frames = await client.done
    finally:
        transport.close()
    events = []
    for arrived, frame in frames:
        line = next(x for x in frame.split(b"\n") if x.startswith(b"data:"))
        events.append((arrived, json.loads(line[5:])))
    return events


async def _watch_fanout(
    serve: Service, clients: int, until: float, submit_to: Service | None = None
) -> tuple[list[float], float, float, int, int]:
    """Delays (ms) of every transition at every client, RSS before/peak, transitions, misses.
    The clients watch `serve`; the task is submitted to `submit_to` (another process on the
    same database, which runs it), else to `serve` itself."""
    crowd = Crowd(clients)
    rss_before = statistics.median(serve.rss_mb() for _ in range(3))
    connecting = asyncio.Semaphore(100)
    followers = [
        asyncio.create_task(_follow_watch(serve.port, crowd, connecting)) for _ in range(clients)
    ]
    try:
        while crowd.joined < clients:
            broken = [f for f in followers if f.done() and f.exception()]
            if broken:
                raise BenchError(f"a watch client failed: {broken[0].exception()!r}")
            if remaining(until) <= 0:
                raise BenchError(
                    f"only {crowd.joined} of {clients} watch clients subscribed "
                    "within the time budget"
                )
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        rss_connected = serve.rss_mb()
        async with httpx.AsyncClient(base_url=(submit_to or serve).url, timeout=30) as http:
            response = await http.post("/tasks", json=task_body("print('watched')", ram="64MB"))
            crowd.target = created(response)["id"]
            done, _ = await asyncio.wait(followers, timeout=max(1.0, remaining(until)))
            rss_after = serve.rss_mb()
            history = (await http.get(f"/tasks/{crowd.target}/events")).json()["items"]
    finally:
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    expected = {event["seq"] for event in history}
    delays, received = [], 0
    for follower in done:
        if follower.cancelled() or follower.exception():
            continue
        for arrived, event in follower.result():
            if event["seq"] in expected:
                received += 1
                delays.append((arrived - at_epoch(event["at"])) * 1000)
    missing = clients * len(expected) - received
    return delays, rss_before, max(rss_connected, rss_after), len(expected), missing


def figure_watch(lab: Lab, sizes: Sizes, until: float) -> list[Row]:
    serve = lab.serve()
    clients = sizes.watch_clients
    delays, before, peak, transitions, missing = asyncio.run(_watch_fanout(serve, clients, until))
    if missing:
        raise BenchError(f"watch: {missing} of {clients * transitions} deliveries missing")
    p50, p99 = percentile(delays, 50), percentile(delays, 99)
    growth = peak - before
    return [
        Row(
            f"5 watch, {clients} clients: delivery p99",
            f"{p99:.0f} ms",
            target="< 200 ms",
            met=verdict(p99 < 200),
            notes=[
                f"watch: {clients} raw-socket SSE clients on one asyncio loop in this "
                f"process; {transitions} transitions of one task × {clients} clients; delay "
                f"= arrival − the event's `at`; p50 {p50:.0f} ms, p99 {p99:.0f} ms, max "
                f"{max(delays):.0f} ms (stamped as each piece arrives on this process's "
                f"loop, parsed after the run)"
            ],
        ),
        Row(
            f"5 watch, {clients} clients: RSS growth",
            f"{growth:.0f} MB",
            f"{before:.0f} MB before",
            target="< 100 MB",
            met=verdict(growth < 100),
        ),
    ]


# --- 3. submit rate --------------------------------------------------------------------------


@dataclass
class Rate:
    per_second: float
    answered: int
    errors: str


def _wrk(url: str, script: Path, duration: int) -> Rate:
    threads = max(1, min(4, CORES))
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{RATE_CONNECTIONS}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    if done.returncode != 0:
        raise BenchError(f"wrk failed: {done.stderr[-500:]}")
    out = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if rps is None or count is None:
        raise BenchError(f"cannot read wrk's output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    errors = ", ".join(
        filter(
            None,
            [
                f"{bad.group(1)} non-2xx" if bad else "",
                f"socket errors {socket_errors.group(1)}" if socket_errors else "",
            ],
        )
    )
    answered = int(count.group(1)) - (int(bad.group(1)) if bad else 0)
    return Rate(float(rps.group(1)), answered, errors)


async def _asyncio_load(url: str, body: bytes, duration: int) -> Rate:
    ok = bad = 0
    async with httpx.AsyncClient(
        timeout=30, limits=httpx.Limits(max_connections=RATE_CONNECTIONS)
    ) as client:
        began = time.perf_counter()
        stop = began + duration

        async def worker() -> None:
            nonlocal ok, bad
            while time.perf_counter() < stop:
                response = await client.post(
                    url, content=body, headers={"content-type": "application/json"}
                )
                if response.status_code < 300:
                    ok += 1
                else:
                    bad += 1

        await asyncio.gather(*(worker() for _ in range(RATE_CONNECTIONS)))
        took = time.perf_counter() - began
    return Rate(ok / took, ok, f"{bad} non-2xx" if bad else "")


def _submit_rates(
    lab: Lab, targets: dict[str, str], sizes: Sizes, until: float
) -> dict[str, list[Rate]]:
    """POST example 1 to each target URL in alternating rounds; each target's rates."""
    body = json.dumps(task_body("print('hi')", ram="64MB", storage="16MB"))
    script = lab.root / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [[{body}]]\n"
    )

    def load(url: str, duration: int) -> Rate:
        if shutil.which("wrk") is not None:
            return _wrk(url, script, duration)
        return asyncio.run(_asyncio_load(url, body.encode(), duration))

    for url in targets.values():
        load(url, 1)  # warm-up
    rates: dict[str, list[Rate]] = {name: [] for name in targets}
    for i in range(sizes.rate_rounds):
        if i and remaining(until) < len(targets) * sizes.rate_seconds + 10:
            break
        names = list(targets) if i % 2 == 0 else list(reversed(targets))
        for name in names:
            rates[name].append(load(targets[name], sizes.rate_seconds))
    errors = [f"{name}: {r.errors}" for name, rs in rates.items() for r in rs if r.errors]
    if errors:
        raise BenchError("submit rate: the load generator saw errors: " + "; ".join(errors))
    return rates


def _task_rows(database_url: str) -> int:
    """How many tasks the database holds (SQLite or PostgreSQL)."""
    from sqlalchemy import create_engine, text

    from models.postgres import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM tasks")).scalar_one())
    finally:
        engine.dispose()


def _durable_rows(rows: int, rates: list[Rate]) -> int:
    """`rows` less what the timed rounds answered: the warm-up's rows (and those in flight at
    the end). Raises where fewer rows exist than 201s were answered."""
    answered = sum(r.answered for r in rates)
    if rows < answered:
        raise BenchError(
            f"submit rate: {answered} POSTs answered 2xx but only {rows} rows "
            "exist: a 201 without a durable row"
        )
    return rows - answered


def figure_rate(lab: Lab, sizes: Sizes, until: float) -> list[Row]:
    api = lab.api_only()  # no controller: thousands of submitted tasks must not start
    noop = lab.noop()
    use_wrk = shutil.which("wrk") is not None
    targets = {"taskyard": api.url + "/tasks", "noop": noop.url + "/noop"}
    rates = _submit_rates(lab, targets, sizes, until)

    assert api.data_dir is not None
    rows = _task_rows(f"sqlite:///{api.data_dir / 'taskyard.db'}")
    answered = sum(r.answered for r in rates["taskyard"])
    _durable_rows(rows, rates["taskyard"])
    ours = statistics.median(r.per_second for r in rates["taskyard"])
    theirs = statistics.median(r.per_second for r in rates["noop"])
    generator = (
        f"wrk, {max(1, min(4, CORES))} threads"
        if use_wrk
        else "an asyncio httpx client (wrk is not installed: `apt-get install wrk`); it "
        "may cap below what the servers can do"
    )
    return [
        Row(
            f"3 submit rate, {RATE_CONNECTIONS} connections",
            f"{ours:.0f}/s",
            f"{theirs:.0f}/s no-op route",
            f"{ours / theirs:.0%}",
            "≥ 35%",
            verdict(ours / theirs >= 0.35),
            [
                f"rate: {generator}, {RATE_CONNECTIONS} connections, {len(rates['noop'])} "
                f"alternating rounds of {sizes.rate_seconds} s each (medians), on the same "
                f"{CORES} cores as both servers; taskyard: `taskyard api` alone (no "
                f"controller); every 201 has its row: {rows} rows ≥ {answered} answered"
            ],
        )
    ]


# --- the store: PostgreSQL beside SQLite -------------------------------------------------------


def figure_postgres(lab: Lab, sizes: Sizes, until: float) -> list[Row]:
    """The submit rate and watch delivery with the tasks in PostgreSQL, each beside the same
    measured with SQLite in this run."""
    sqlite_url = f"sqlite:///{lab.root / 'store-sqlite.db'}"
    urls = {"sqlite": sqlite_url, "postgres": lab.postgres_url()}
    apis = {store: lab.api_only(url) for store, url in urls.items()}
    rates = _submit_rates(lab, {s: api.url + "/tasks" for s, api in apis.items()}, sizes, until)
    for store, url in urls.items():
        _durable_rows(_task_rows(url), rates[store])
        apis[store].stop()  # their tasks stay Pending: no controller runs them
    rate = {store: statistics.median(r.per_second for r in rates[store]) for store in urls}
    rows = [
        Row(
            f"store: submit rate, {RATE_CONNECTIONS} connections",
            f"{rate['postgres']:.0f}/s on PostgreSQL",
            f"{rate['sqlite']:.0f}/s on SQLite",
            f"{rate['postgres'] / rate['sqlite']:.0%}",
            notes=[
                f"store: `taskyard api` alone on each store, {len(rates['sqlite'])} alternating "
                f"rounds of {sizes.rate_seconds} s (medians), every 201 with its row; "
                "PostgreSQL 15 from Debian on this host, over a unix socket, fsync and "
                "synchronous commit on (SQLite: WAL, synchronous=FULL)"
            ],
        )
    ]

    # Watch delivery to another API process: the clients watch a `taskyard api`; the task
    # runs on a `taskyard serve` over the same database, so each transition reaches the
    # watched process through the store (SQLite's data_version, Postgres' NOTIFY).
    clients = sizes.watch_clients
    figure = f"store: watch on another API process, {clients} clients: p99"
    if remaining(until) < 20:
        return [*rows, Row(figure, "skipped: the figure's budget was spent")]
    urls["sqlite"] = f"sqlite:///{lab.root / 'store-watch.db'}"
    urls["postgres"] = lab.postgres_url()
    p99: dict[str, float] = {}
    p50: dict[str, float] = {}
    for store, url in urls.items():
        serve = lab._taskyard("serve", _serve_ready, url)
        watched = lab._taskyard("api", _answers, url)
        try:
            delays, _, _, transitions, missing = asyncio.run(
                _watch_fanout(watched, clients, until, submit_to=serve)
            )
        finally:
            watched.stop()
            serve.stop()
        if missing:
            raise BenchError(
                f"store, {store}: {missing} of {clients * transitions} deliveries missing"
            )
        p50[store], p99[store] = percentile(delays, 50), percentile(delays, 99)
    rows.append(
        Row(
            figure,
            f"{p99['postgres']:.0f} ms on PostgreSQL",
            f"{p99['sqlite']:.0f} ms on SQLite",
            notes=[
                f"store: a task run by `taskyard serve`, {clients} clients watching a separate "
                f"`taskyard api` on the same database; p50 {p50['postgres']:.0f} ms on "
                f"PostgreSQL (LISTEN/NOTIFY), {p50['sqlite']:.0f} ms on SQLite "
                "(data_version polled every 10 ms)"
            ],
        )
    )
    return rows


# --- 4. reconcile cost, and the scheduler (in-process, fake engine) ---------------------------


# --- batch submission --------------------------------------------------------------------------


def figure_batch(lab: Lab, sizes: Sizes, until: float) -> list[Row]:
    """One POST /batches of `batch_tasks` short programs, from sending it to its 201 (stored
    with a durable commit: WAL, synchronous=FULL), against a fresh `taskyard api` with no
    controller, so that nothing else runs beside it; vs the same tasks as single POST /tasks
    from `SUBMIT_THREADS` threads."""
    api = lab.api_only()
    count = sizes.batch_tasks
    tasks = [task_body(f"assert {i} * {i} == {i * i}", ram="64MB") for i in range(count)]
    took: list[float] = []
    with httpx.Client(
        base_url=api.url, timeout=60, limits=httpx.Limits(max_connections=SUBMIT_THREADS)
    ) as client:
        client.post("/batches", json={"tasks": tasks[:1]})  # the first request's one-off costs
        for _ in range(sizes.batch_runs):
            if took and remaining(until) < 5:
                break
            began = time.perf_counter()
            response = client.post("/batches", json={"tasks": tasks})
            elapsed = time.perf_counter() - began
            if response.status_code != 201 or response.json()["count"] != count:
                raise BenchError(
                    f"POST /batches answered {response.status_code}: {response.text[:300]}"
                )
            took.append(elapsed)
        began = time.perf_counter()
        with ThreadPoolExecutor(SUBMIT_THREADS) as pool:
            list(pool.map(lambda body: created(client.post("/tasks", json=body)), tasks))
        singles = time.perf_counter() - began
    median = statistics.median(took)
    return [
        Row(
            f"batch submit, {count} tasks in one request (median of {len(took)})",
            seconds(median),
            f"{seconds(singles)} {count} × POST /tasks",
            times(median / singles),
            "≤ 0.50 s",
            verdict(median <= 0.5),
            [
                f"batch: POST /batches of {count} short programs to a `taskyard api` without a "
                "controller, from sending to its 201, each stored with a durable commit (WAL, "
                f"synchronous=FULL); runs {', '.join(seconds(t) for t in took)}; the baseline "
                f"sends the same tasks one by one from {SUBMIT_THREADS} threads"
            ],
        )
    ]


def _task_row_template(phase: str) -> dict[str, Any]:
    """A `tasks` row as the service writes it, with every column the model has today."""
    import sqlalchemy

    from models.tables import Task

    now = datetime.now(UTC)
    ended = phase in TERMINAL
    task = Task(
        id="template",
        task_type="execute_code",
        code="print(1)",
        cpu=1,
        cpu_text="1",
        gpu=0,
        gpu_text="0",
        ram="64MB",
        ram_bytes=64 * MIB,
        storage="16MB",
        storage_bytes=16 * MIB,
        timeout_seconds=30,
        phase=phase,
        reason="Completed" if ended else "Created",
        message="exited with code 0" if ended else "task submitted",
        result="1\n" if ended else None,
        exit_code=0 if ended else None,
        stdout="1\n" if ended else None,
        stderr="" if ended else None,
        assigned_cpus=[0] if ended else [],
        scheduled_at=now if ended else None,
        started_at=now if ended else None,
        finished_at=now if ended else None,
        attempt=1,
        created_at=now - timedelta(hours=1),
    )
    columns = sqlalchemy.inspect(Task).local_table.columns
    return {column.name: getattr(task, column.name) for column in columns if column.name != "pk"}


def _fill(database: Any, count: int, phase: str) -> None:
    """Bulk-insert `count` tasks in `phase` (with the transitions that led there)."""
    from sqlalchemy import insert
    from sqlmodel import SQLModel

    from models.tables import Task, Transition

    tables = SQLModel.metadata.tables
    template = _task_row_template(phase)
    path = ["Pending", "Scheduled", "Running", phase] if phase in TERMINAL else ["Pending"]
    batch = 10_000
    for start in range(0, count, batch):
        tasks, transitions = [], []
        for i in range(start, min(count, start + batch)):
            task_id = f"bench{i:010d}"
            tasks.append({**template, "id": task_id})
            for version, (before, after) in enumerate(zip([None, *path], path, strict=False)):
                transitions.append(
                    {
                        "task_id": task_id,
                        "from_phase": before,
                        "to_phase": after,
                        "reason": "Created",
                        "message": "",
                        "at": template["created_at"],
                        "resource_version": version + 1,
                    }
                )
        with database.writer.begin() as connection:
            connection.execute(insert(tables[str(Task.__tablename__)]), tasks)
            connection.execute(insert(tables[str(Transition.__tablename__)]), transitions)


@contextlib.contextmanager
def reconciler_over(folder: Path, count: int, phase: str) -> Iterator[Any]:
    """A `Reconciler` on the fake engine over a fresh database holding `count` tasks."""
    from controller.fake_runtime import FakeRuntime
    from controller.loop import Reconciler
    from models.database import open_database
    from models.settings import Settings

    folder.mkdir(parents=True)
    settings = Settings(data_dir=folder, database_url=None)
    database = open_database(settings.resolved_database_url)
    _fill(database, count, phase)
    reconciler = Reconciler(
        settings,
        database,
        FakeRuntime(),
        owner="bench",
        gpu_probe=lambda: ([], "no GPUs in the benchmark"),
    )
    try:
        yield reconciler
    finally:
        close = getattr(reconciler, "close", None)
        if close is not None:
            close()
        database.dispose()


def _timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def figure_reconcile(lab: Lab, sizes: Sizes, until: float) -> list[Row]:
    many = sizes.reconcile_terminal
    began = time.perf_counter()
    with (
        reconciler_over(lab.root / "reconcile-100", 100, "Succeeded") as few_pass,
        reconciler_over(lab.root / f"reconcile-{many}", many, "Succeeded") as many_pass,
    ):
        built = time.perf_counter() - began
        for _ in range(2):  # warm-up: capacity discovery, first heartbeat, history compaction
            few_pass.reconcile_once()
            many_pass.reconcile_once()
        few: list[float] = []
        lots: list[float] = []
        for i in range(sizes.reconcile_passes):
            if few and remaining(until) < 2:
                break
            for reconciler, sample in ((few_pass, few), (many_pass, lots))[:: 1 if i % 2 else -1]:
                sample.append(_timed(reconciler.reconcile_once))
    small, big = statistics.median(few), statistics.median(lots)
    return [
        Row(
            f"4 reconcile pass, {many:,} vs 100 terminal",
            seconds(big),
            f"{seconds(small)} with 100",
            times(big / small),
            "≤ 1.50×",
            verdict(big / small <= 1.5),
            [
                f"reconcile: Reconciler.reconcile_once() in-process on the fake engine, medians "
                f"of {len(few)} alternating passes after 2 warm-up passes; databases built in "
                f"{built:.1f} s (each task with its 4 transitions)"
            ],
        )
    ]


def figure_scheduler(lab: Lab, sizes: Sizes, until: float) -> list[Row]:
    from controller.scheduling import Allocatable, Holding, Request, place

    count = sizes.scheduler_pending
    cpu_ids = tuple(sorted(os.sched_getaffinity(0)))
    allocatable = Allocatable(
        cpu_ids=cpu_ids, gpu_ids=(), ram=16 * 1024 * MIB, storage=100 * 1024 * MIB
    )
    # Every core busy: the realistic case for a long queue, and the one that explains itself.
    holdings = [
        Holding(f"running{cpu}", (cpu,), (), 64 * MIB, 16 * MIB, 10.0 + cpu) for cpu in cpu_ids
    ]
    requests = [Request(f"pending{i}", 1, 0, 64 * MIB, 16 * MIB, 30.0) for i in range(count)]
    placing: list[float] = []
    keep_for_passes = remaining(until) / 2
    while len(placing) < 20 and (len(placing) < 3 or remaining(until) > keep_for_passes):
        placing.append(_timed(lambda: place(requests, allocatable, holdings)))
    rows = [
        Row(
            f"  scheduler: place() over {count:,} pending",
            seconds(statistics.median(placing)),
            notes=[
                f"scheduler: controller.scheduling.place() with all {len(cpu_ids)} cores "
                f"held, median of {len(placing)} calls"
            ],
        )
    ]

    queued = sizes.pending_pass_tasks
    with reconciler_over(lab.root / "pending", queued, "Pending") as reconciler:
        first = _timed(reconciler.reconcile_once)
        steady: list[float] = []
        passes = max(2, min(5, sizes.reconcile_passes // 2))
        while len(steady) < passes and (not steady or remaining(until) > 1.5 * max(steady)):
            steady.append(_timed(reconciler.reconcile_once))
    rows.append(
        Row(
            f"  reconcile pass, {queued:,} pending",
            seconds(statistics.median(steady)),
            notes=[
                f"pending pass: Reconciler.reconcile_once() on the fake engine with "
                f"{queued:,} pending tasks and {len(cpu_ids)} cores: the first pass "
                f"(places {len(cpu_ids)}, notes why the rest wait) took "
                f"{seconds(first)}; later passes, median of {len(steady)}"
            ],
        )
    )
    return rows


# --- the run ---------------------------------------------------------------------------------


# In the order they run: footprint first, on a fresh idle server; burst last, since a slow
# service makes it the one most likely to spend its whole budget.
FIGURES: dict[str, Callable[[Lab, Sizes, float], list[Row]]] = {
    "footprint": figure_footprint,
    "latency": figure_latency,
    "handoff": figure_handoff,
    "watch": figure_watch,
    "rate": figure_rate,
    "batch": figure_batch,
    "reconcile": figure_reconcile,
    "scheduler": figure_scheduler,
    "burst": figure_burst,
    "postgres": figure_postgres,
    "programs": figure_programs,
    # Last: in a quick run it takes what time is left.
    "runtimes": figure_runtimes,
}
# In the order the table shows them: the numbered targets, then the untargeted extras.
TABLE_ORDER = (
    "latency",
    "burst",
    "programs",
    "rate",
    "batch",
    "runtimes",
    "reconcile",
    "watch",
    "footprint",
    "handoff",
    "scheduler",
    "postgres",
)


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        docker = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        docker = ""
    ram = psutil.virtual_memory().total / (1024 * MIB)
    load = os.getloadavg()[0]
    return (
        f"machine: {cpu}, {CORES} cores, {ram:.1f} GiB RAM, Docker "
        f"{docker or 'not answering'}, kernel {platform.release()}, Python "
        f"{platform.python_version()}; load average {load:.2f} at start"
    )


def code_version() -> str:
    """Which taskyard was measured: the commit, and whether the tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "code: unknown (no git)"
    return f"code: {head or 'unknown'}{' with uncommitted changes' if dirty else ''}"


def check_prerequisites() -> None:
    try:
        subprocess.run(
            ["docker", "image", "inspect", IMAGE], capture_output=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        raise BenchError(
            f"the Docker engine is not answering or image {IMAGE} is missing: run "
            "deploy/setup-host.sh (or `taskyard image build`)"
        ) from None


def print_table(rows: list[Row]) -> None:
    header = ("figure", "taskyard", "baseline", "ratio", "target", "met?")
    cells = [header] + [(r.figure, r.taskyard, r.baseline, r.ratio, r.target, r.met) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    for n, line in enumerate(cells):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
        if n == 0:
            print("  ".join("-" * width for width in widths))
    notes = [note for row in rows for note in row.notes]
    if notes:
        print()
        for note in notes:
            print(f"- {note}")


def raise_open_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def terminated(*_: object) -> None:
    print("terminated; stopping what the benchmark started", file=sys.stderr)
    sys.exit(143)  # unwinds through main's cleanup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (< 60 s)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(FIGURES),
        metavar="NAME",
        help=f"run only these figures: {', '.join(FIGURES)}",
    )
    parser.add_argument("--deadline", type=float, help="global time limit in seconds")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    deadline = time.monotonic() + (args.deadline or sizes.deadline_seconds)
    chosen = [name for name in FIGURES if not args.only or name in args.only]

    sys.path.insert(0, str(REPO))  # the in-process figures import models/ and controller/
    import logging

    logging.getLogger("taskyard").setLevel(logging.ERROR)
    # The watch clients (and the server, which inherits it) need a socket each.
    raise_open_file_limit(sizes.watch_clients * 2 + 1024)
    signal.signal(signal.SIGTERM, terminated)

    started = datetime.now(UTC)
    print(
        f"taskyard benchmark, {'quick' if args.quick else 'full'} run, {started:%Y-%m-%d %H:%M} UTC"
    )
    print(machine())
    print(code_version(), flush=True)
    rows: list[Row] = []
    lab = Lab()
    interrupted = False
    try:
        check_prerequisites()
        for name in chosen:
            budget = sizes.budgets[name]
            until = min(deadline, time.monotonic() + budget)
            if remaining(until) < min(5.0, budget / 2):
                rows.append(Row(name, "skipped: the run's deadline was reached", source=name))
                continue
            print(f"... {name} (budget {budget:.0f} s)", file=sys.stderr, flush=True)
            began = time.monotonic()
            try:
                measured = FIGURES[name](lab, sizes, until)
            except (BenchError, httpx.HTTPError, subprocess.SubprocessError, OSError) as exc:
                measured = [Row(name, "BROKEN (see below)", notes=[f"{name}: {exc}"], broken=True)]
            for row in measured:
                row.source = name
            rows += measured
            print(f"    {name} took {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
    except BenchError as exc:
        rows.append(Row("setup", "BROKEN (see below)", notes=[str(exc)], broken=True))
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        interrupted = True
    finally:
        leftovers = lab.close()
    if interrupted:
        return 130
    sys.stderr.flush()
    print()
    print_table(
        sorted(
            rows,
            key=lambda row: (
                TABLE_ORDER.index(row.source) if row.source in TABLE_ORDER else len(TABLE_ORDER)
            ),
        )
    )
    took = (datetime.now(UTC) - started).total_seconds()
    print(f"\nwall time {took:.0f} s; removed {leftovers} leftover container(s) at the end")
    broken = [row for row in rows if row.broken]
    if broken:
        print(
            f"error: {len(broken)} figure(s) could not be measured: "
            + ", ".join(row.figure for row in broken),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
