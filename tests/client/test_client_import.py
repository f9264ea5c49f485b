"""The client is usable with httpx alone: `from taskyard import Client` loads nothing of the
server, works where the server's dependencies are not installed at all, and ships its types."""

import json
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

SERVER_SIDE = [
    "docker",
    "fastapi",
    "starlette",
    "sqlmodel",
    "sqlalchemy",
    "alembic",
    "pydantic",
    "uvicorn",
    "psutil",
    "pynvml",
    "apscheduler",
    "models",
    "api",
    "controller",
]

# Makes every server-side package unimportable, as in an environment with only httpx.
BLOCKER = textwrap.dedent(f"""
    import importlib.abc, sys
    BLOCKED = {SERVER_SIDE!r}
    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None
    sys.meta_path.insert(0, Absent())
""")


def python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_the_client_loads_nothing_of_the_server() -> None:
    loaded = json.loads(
        python(
            "import json, sys\n"
            "from taskyard import AsyncClient, Client\n"
            "print(json.dumps(sorted(sys.modules)))"
        )
    )

    assert [name for name in loaded if name.split(".")[0] in SERVER_SIDE] == []
    assert "httpx" in loaded


def test_the_client_works_without_the_servers_dependencies_installed() -> None:
    out = python(
        BLOCKER
        + textwrap.dedent("""
        import asyncio, httpx
        from taskyard import AsyncClient, Client, TaskNotFound

        def server(request):
            if request.method == "POST":
                return httpx.Response(201, json={"id": "t1", "status": {"phase": "Pending"}})
            if request.url.path == "/tasks/t1":
                return httpx.Response(200, json={"id": "t1", "status": {
                    "phase": "Succeeded", "stdout": "hi"}})
            return httpx.Response(404, json={"detail": "task t2 not found"})

        with Client(transport=httpx.MockTransport(server)) as client:
            print(client.run("print('hi')").status.stdout)
            try:
                client.get("t2")
            except TaskNotFound as error:
                print(error.task_id)

        async def main():
            async with AsyncClient(transport=httpx.MockTransport(server)) as client:
                print((await client.run("print('hi')"))["status"]["stdout"])
        asyncio.run(main())
    """)
    )
    assert out == "hi\nt2\nhi\n"


def test_the_blocker_really_blocks() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER + "import fastapi"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "No module named 'fastapi'" in done.stderr


def test_the_package_ships_its_types() -> None:
    assert resources.files("taskyard").joinpath("py.typed").is_file()
