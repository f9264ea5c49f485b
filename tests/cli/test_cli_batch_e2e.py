"""The real `taskyard batch submit` (a subprocess) against a real server on the real Docker
engine: a JSON Lines file of short programs with asserts, waited for, its verdicts written in
input order."""

import json
from pathlib import Path

from cli_support import taskyard
from harness import Server

PROGRAMS = [
    "def add(a, b):\n    return a + b\nassert add(2, 2) == 4\nprint('ok')",
    "def add(a, b):\n    return a - b\nassert add(2, 2) == 4, 'add is wrong'",
    "print(sum(range(10)))",
]


def test_a_batch_of_programs_runs_and_its_verdicts_come_back_in_order(
    cli_server: Server, tmp_path: Path
) -> None:
    jsonl = tmp_path / "programs.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"code": code, "resources": {"ram": "64MB"}}) + "\n" for code in PROGRAMS
        )
    )
    out = tmp_path / "results.jsonl"

    done = taskyard("batch", "submit", str(jsonl), "--out", str(out), server=cli_server)

    assert done.returncode == 1, done.stderr  # the second program's assert fails
    assert "3/3 done (Failed 1, Succeeded 2)" in done.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["phase"] for r in results] == ["Succeeded", "Failed", "Succeeded"]
    assert [r["stdout"] for r in results] == ["ok\n", "", "45\n"]
    assert results[1]["reason"] == "NonZeroExit" and results[1]["exit_code"] == 1
    assert "AssertionError: add is wrong" in results[1]["stderr"]
    batch_id = json.loads(
        taskyard("get", results[0]["id"], "-o", "json", server=cli_server).stdout
    )["batch_id"]
    shown = taskyard("batch", "get", batch_id, server=cli_server)
    assert shown.returncode == 0 and "Done:             3/3" in shown.stdout
