"""The real `taskyard runtimes` and `taskyard submit` with a runtime, files in and files out,
against a real server on the real Docker engine."""

from pathlib import Path

from cli_support import taskyard
from harness import Server


def test_runtimes_lists_what_the_server_can_run(cli_server: Server) -> None:
    done = taskyard("runtimes", server=cli_server)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "LANGUAGE", "VERSION"]
    names = [row.split()[0] for row in rows]
    assert {"python", "python-data", "node", "c", "cpp", "bash", "java"} <= set(names)


def test_submit_with_a_runtime_files_args_and_collect_saves_what_came_back(
    cli_server: Server, tmp_path: Path
) -> None:
    given = tmp_path / "numbers.txt"
    given.write_text("3\n4\n")
    out = tmp_path / "out"
    code = (
        "total=0; while read -r n; do total=$((total + n)); done < in.txt\n"
        'echo "$1 $total" > sum.txt\necho done'
    )
    done = taskyard(
        "submit",
        "--runtime",
        "sh",
        "-c",
        code,
        "-f",
        f"in.txt={given}",
        "--arg",
        "sum",
        "--collect",
        "*.txt",
        "--out",
        str(out),
        "--wait",
        server=cli_server,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    assert (out / "sum.txt").read_text() == "sum 7\n"
    assert (out / "in.txt").read_text() == "3\n4\n"  # the file given is collected back too
    assert f"saved {out / 'sum.txt'}" in done.stderr


def test_a_compile_error_exits_1_and_shows_the_compilers_message(cli_server: Server) -> None:
    done = taskyard(
        "submit",
        "--runtime",
        "c++",
        "-c",
        "int main() { return nope; }",
        "--wait",
        server=cli_server,
    )
    assert done.returncode == 1
    assert "CompileError" in done.stderr and "nope" in done.stderr


def test_out_without_wait_is_a_usage_error(cli_server: Server, tmp_path: Path) -> None:
    done = taskyard("submit", "-c", "print(1)", "--out", str(tmp_path), server=cli_server)
    assert done.returncode == 2
    assert "--out saves the files of a finished task: add --wait" in done.stderr
