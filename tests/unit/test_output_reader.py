"""Live output on the controller's side, without Docker: `OutputReader` copies what a runtime's
`follow` yields into the `output_chunks` table through a `ChunkWriter`, over a real SQLite file.

The runtime here is scripted: its `follow` yields the (stream, bytes) pieces a test gives it, as
the engine's multiplexed stream does, and replays them from the start on every call, as the
engine does for a reader that attaches again after a controller restart.
"""

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import col, select

import controller.output
from controller.errors import RuntimeUnavailable
from controller.output import ChunkWriter, OutputReader, stored_bytes
from controller.reconcile import Outcome, TaskView, judge
from controller.runtime import CapturedOutput, ObservedContainer
from models.database import Database, open_database
from models.phases import Phase
from models.tables import OutputChunk
from sandbox.supervisor import MARKER, read_report

TASK = "t-live"
NAME = "taskyard-owner-t-live-1"
Piece = tuple[str, bytes]
REPORT = b'{"exit_code": 0, "stdout_truncated": false, "stderr_truncated": false}'


class ScriptedRuntime:
    """A runtime whose `follow` yields the scripted pieces, then ends (the container stopped),
    or raises `then` (the engine connection broke)."""

    def __init__(self, pieces: list[Piece], then: Exception | None = None) -> None:
        self.pieces = pieces
        self.then = then
        self.follows = 0

    def follow(self, name: str) -> Iterator[Piece]:
        assert name == NAME
        self.follows += 1
        yield from self.pieces
        if self.then is not None:
            raise self.then


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database("sqlite:///" + str(tmp_path / "t.db"))
    yield database
    database.dispose()


@pytest.fixture
def writer(db: Database) -> Iterator[ChunkWriter]:
    chunk_writer = ChunkWriter(db)
    yield chunk_writer
    chunk_writer.close()


def start_reader(
    db: Database,
    runtime: ScriptedRuntime,
    writer: ChunkWriter,
    *,
    limit: int = 1 << 20,
    attempt: int = 1,
) -> OutputReader:
    """Start the reader the reconcile pass starts for a running container."""
    return OutputReader(
        db,
        runtime,
        writer,
        task_id=TASK,
        attempt=attempt,  # type: ignore[arg-type]
        name=NAME,
        limit=limit,
    ).start()


def read_all(
    db: Database,
    runtime: ScriptedRuntime,
    writer: ChunkWriter,
    *,
    limit: int = 1 << 20,
    attempt: int = 1,
) -> None:
    """Run one reader to the end of its stream and wait until what it read is committed."""
    reader = start_reader(db, runtime, writer, limit=limit, attempt=attempt)
    reader.join(timeout=5)
    assert not reader.is_alive(), "the reader did not finish at the end of the stream"
    writer.flush()


def rows(db: Database, task_id: str = TASK) -> list[OutputChunk]:
    with db.read() as session:
        return list(
            session.exec(
                select(OutputChunk)
                .where(OutputChunk.task_id == task_id)
                .order_by(col(OutputChunk.seq))
            )
        )


def stored(db: Database, stream: str, attempt: int = 1) -> bytes:
    return b"".join(r.data for r in rows(db) if r.stream == stream and r.attempt == attempt)


# --- what gets stored -------------------------------------------------------------------------


def test_pieces_are_stored_in_order_per_stream(db: Database, writer: ChunkWriter) -> None:
    script = [
        ("stdout", b"line 1\n"),
        ("stderr", b"warn 1\n"),
        ("stdout", b"line 2\n"),
        ("stdout", b"line 3\n"),
        ("stderr", b"warn 2\n"),
    ]

    read_all(db, ScriptedRuntime(script), writer)

    stored_rows = rows(db)
    # Adjacent pieces of one stream may share a row (the writer merges them); the order of
    # the streams' turns is kept.
    assert [(r.stream, r.data) for r in stored_rows] == [
        ("stdout", b"line 1\n"),
        ("stderr", b"warn 1\n"),
        ("stdout", b"line 2\nline 3\n"),
        ("stderr", b"warn 2\n"),
    ]
    assert len({r.seq for r in stored_rows}) == len(stored_rows)
    assert all(r.task_id == TASK and r.attempt == 1 for r in stored_rows)
    assert stored_bytes(db, TASK, 1) == {"stdout": 21, "stderr": 14}
    assert stored_bytes(db, TASK, 2) == {"stdout": 0, "stderr": 0}


def test_attempts_are_kept_apart(db: Database, writer: ChunkWriter) -> None:
    read_all(db, ScriptedRuntime([("stdout", b"first try\n")]), writer, attempt=1)
    read_all(db, ScriptedRuntime([("stdout", b"second try\n")]), writer, attempt=2)

    assert stored(db, "stdout", attempt=1) == b"first try\n"
    assert stored(db, "stdout", attempt=2) == b"second try\n"


@pytest.mark.parametrize(
    ("script", "out", "err"),
    [
        pytest.param(
            [("stdout", b"0123456789abc")], b"0123456789", b"", id="one-piece-past-the-cap"
        ),
        pytest.param(
            [("stdout", b"0123"), ("stdout", b"456789"), ("stdout", b"more")],
            b"0123456789",
            b"",
            id="piece-ends-exactly-at-the-cap",
        ),
        pytest.param(
            [("stdout", b"01234567"), ("stdout", b"89ab"), ("stdout", b"cd")],
            b"0123456789",
            b"",
            id="piece-straddles-the-cap",
        ),
        pytest.param(
            [("stdout", b"0123456789abcdef"), ("stderr", b"err\n")],
            b"0123456789",
            b"err\n",
            id="stderr-has-its-own-cap",
        ),
        pytest.param(
            [("stderr", b"E" * 8), ("stdout", b"ok\n"), ("stderr", b"E" * 8)],
            b"ok\n",
            b"E" * 10,
            id="stderr-past-the-cap",
        ),
    ],
)
def test_nothing_past_the_cap_is_stored(
    db: Database, writer: ChunkWriter, script: list[Piece], out: bytes, err: bytes
) -> None:
    read_all(db, ScriptedRuntime(script), writer, limit=10)

    assert stored(db, "stdout") == out
    assert stored(db, "stderr") == err
    assert stored_bytes(db, TASK, 1) == {"stdout": len(out), "stderr": len(err)}


def test_a_split_multibyte_character_is_stored_as_raw_bytes(
    db: Database, writer: ChunkWriter
) -> None:
    euro, smile = "€".encode(), "😀".encode()
    script = [
        ("stdout", b"caf\xc3"),
        ("stdout", b"\xa9 " + euro[:1]),
        ("stdout", euro[1:] + smile[:2]),
        ("stdout", smile[2:] + b"\n"),
    ]

    read_all(db, ScriptedRuntime(script), writer)

    assert b"".join(r.data for r in rows(db)) == b"".join(data for _, data in script)
    assert stored(db, "stdout").decode("utf-8") == "café €😀\n"


# --- the supervisor's report ------------------------------------------------------------------


def test_the_supervisors_report_is_kept_apart_and_ends_the_reading(
    db: Database,
    writer: ChunkWriter,
) -> None:
    script = [
        ("stdout", b"out\n"),
        ("stderr", b"warn\nlast words"),
        ("report", REPORT),
        ("stdout", b"never sent by a real supervisor\n"),
    ]
    woken = []
    reader = OutputReader(
        db,
        ScriptedRuntime(script),
        writer,
        task_id=TASK,  # type: ignore[arg-type]
        attempt=1,
        name=NAME,
        limit=1 << 20,
        on_report=lambda: woken.append(True),
    ).start()
    reader.join(timeout=5)
    writer.flush()

    assert not reader.is_alive()
    assert stored(db, "stderr") == b"warn\nlast words"
    assert stored(db, "stdout") == b"out\n"
    assert not any(b"taskyard-report" in r.data for r in rows(db))
    assert reader.report is not None and reader.report.exit_code == 0
    assert woken == [True]


def test_a_marker_the_task_printed_is_only_its_own_stderr(
    db: Database, writer: ChunkWriter
) -> None:
    script = [("stderr", b"before" + MARKER + REPORT + b"\n"), ("stderr", b"after\n")]
    reader = start_reader(db, ScriptedRuntime(script), writer)
    reader.join(timeout=5)
    writer.flush()

    assert stored(db, "stderr") == b"before" + MARKER + REPORT + b"\nafter\n"
    assert reader.report is None


# --- a second reader (a controller restart) ---------------------------------------------------


SCRIPT = [
    ("stdout", b"line 1\n"),
    ("stderr", b"warn 1\n"),
    ("stdout", b"line 2\nline 3\n"),
    ("stderr", b"warn 2\n"),
    ("stdout", b"line 4\n"),
    ("report", REPORT),
]


def test_a_second_reader_after_a_restart_stores_nothing_twice(db: Database) -> None:
    # The first controller read part of the output, then stopped (its writer stored it all).
    first = ChunkWriter(db)
    read_all(db, ScriptedRuntime(SCRIPT[:3]), first)
    first.close()
    assert stored(db, "stdout") == b"line 1\nline 2\nline 3\n"

    # The next one attaches again: the engine replays from the start, then goes on.
    second = ChunkWriter(db)
    runtime = ScriptedRuntime(SCRIPT)
    read_all(db, runtime, second)
    second.close()

    assert runtime.follows == 1
    assert stored(db, "stdout") == b"line 1\nline 2\nline 3\nline 4\n"
    assert stored(db, "stderr") == b"warn 1\nwarn 2\n"


def test_a_replay_split_differently_stores_nothing_twice(db: Database, writer: ChunkWriter) -> None:
    read_all(db, ScriptedRuntime([("stdout", b"abc"), ("stdout", b"defg")]), writer)

    # The engine's replay need not cut the bytes where the live stream did.
    replay = [("stdout", b"ab"), ("stdout", b"cdefghi"), ("stdout", b"jk")]
    read_all(db, ScriptedRuntime(replay), writer)

    assert stored(db, "stdout") == b"abcdefghijk"


def test_a_second_reader_of_a_finished_stream_stores_nothing(
    db: Database, writer: ChunkWriter
) -> None:
    read_all(db, ScriptedRuntime(SCRIPT), writer)
    before = [(r.seq, r.stream, r.data) for r in rows(db)]

    read_all(db, ScriptedRuntime(SCRIPT), writer)

    assert [(r.seq, r.stream, r.data) for r in rows(db)] == before


def test_a_replay_after_the_cap_stores_nothing_more(db: Database, writer: ChunkWriter) -> None:
    script = [("stdout", b"0123456789"), ("stdout", b"abcdef")]
    read_all(db, ScriptedRuntime(script), writer, limit=12)
    read_all(db, ScriptedRuntime(script), writer, limit=12)

    assert stored(db, "stdout") == b"0123456789ab"


def test_a_reader_restarted_while_the_writer_still_holds_pieces_stores_nothing_twice(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reconcile pass starts a new reader for a running container whose reader has ended
    # (the engine connection broke). The old reader's last pieces may still wait in the
    # writer's batch (a long batch window makes that certain here); the new reader replays
    # from the start and must not store them again.
    monkeypatch.setattr(controller.output, "BATCH_SECONDS", 1.0)
    writer = ChunkWriter(db)
    broken = ScriptedRuntime(SCRIPT[:3], then=RuntimeUnavailable("connection reset"))
    first = start_reader(db, broken, writer)
    first.join(timeout=5)
    assert not first.is_alive()

    second = start_reader(db, ScriptedRuntime(SCRIPT), writer)
    second.join(timeout=5)
    writer.close()

    assert stored(db, "stdout") == b"line 1\nline 2\nline 3\nline 4\n"
    assert stored(db, "stderr") == b"warn 1\nwarn 2\n"


# --- ending and flushing ----------------------------------------------------------------------


def test_a_broken_engine_connection_keeps_what_was_read(db: Database, writer: ChunkWriter) -> None:
    runtime = ScriptedRuntime(
        [("stdout", b"before the break\n")], then=RuntimeUnavailable("engine went away")
    )

    read_all(db, runtime, writer)

    assert stored(db, "stdout") == b"before the break\n"


def test_flush_returns_only_after_the_pieces_are_committed(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long batch window: without the flush barrier nothing would be committed for seconds.
    monkeypatch.setattr(controller.output, "BATCH_SECONDS", 30.0)
    writer = ChunkWriter(db)
    try:
        read_pieces = [("stdout", b"%d\n" % i) for i in range(50)]
        reader = start_reader(db, ScriptedRuntime(read_pieces), writer)
        reader.join(timeout=5)

        began = time.monotonic()
        writer.flush()
        took = time.monotonic() - began

        assert stored(db, "stdout") == b"".join(data for _, data in read_pieces)
        assert took < 5, f"flush waited {took:.1f} s for a batch that was ready"
    finally:
        writer.close()


def test_flush_waits_for_a_busy_database(db: Database, writer: ChunkWriter) -> None:
    # Another writer (the reconcile pass, the API) holds the database for a moment.
    hold = db.writer.connect()
    hold.exec_driver_sql("SELECT 1")  # the writer engine begins with BEGIN IMMEDIATE
    released = threading.Event()

    def release() -> None:
        time.sleep(0.5)
        released.set()
        hold.commit()

    threading.Thread(target=release, daemon=True).start()
    try:
        read_all(db, ScriptedRuntime([("stdout", b"while busy\n")]), writer)
        assert released.is_set(), "flush returned while the database was still locked"
        assert stored(db, "stdout") == b"while busy\n"
    finally:
        released.wait(5)
        hold.close()


def test_close_stores_what_the_writer_holds(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(controller.output, "BATCH_SECONDS", 30.0)
    writer = ChunkWriter(db)
    reader = start_reader(db, ScriptedRuntime([("stdout", b"last\n")]), writer)
    reader.join(timeout=5)

    writer.close()

    assert stored(db, "stdout") == b"last\n"


# --- the output the judge takes from a reader that saw the report -----------------------------


def judged(output: CapturedOutput, limit: int) -> Outcome:
    view = TaskView(
        id=TASK,
        phase=Phase.RUNNING,
        attempt=1,
        timeout_seconds=30,
        ram_bytes=1 << 26,
        cancel_requested_at=None,
        deadline_at=None,
    )
    now = datetime.now(UTC)
    exited = ObservedContainer(
        name=NAME,
        task_id=TASK,
        attempt=1,
        state="exited",
        exit_code=0,
        started_at=now,
        finished_at=now,
    )
    return judge(view, exited, output, limit=limit)


CUT_REPORT = b'{"exit_code": 0, "stdout_truncated": true, "stderr_truncated": false}'
# The supervisor cut stderr at its own limit: only the report says so.
ERR_CUT_REPORT = b'{"exit_code": 0, "stdout_truncated": false, "stderr_truncated": true}'


@pytest.mark.parametrize(
    ("script", "limit"),
    [
        pytest.param([("stdout", b"Hello, World!\n"), ("report", REPORT)], 1 << 20, id="hello"),
        pytest.param(
            [
                ("stdout", b"out\n"),
                ("stderr", b"warn\n"),
                ("stdout", b"\xff\xfe\n"),
                ("report", REPORT),
            ],
            1 << 20,
            id="both-streams-and-raw-bytes",
        ),
        pytest.param([("stdout", b"0123456789"), ("report", REPORT)], 10, id="exactly-the-cap"),
        pytest.param(
            [
                ("stdout", b"01234567"),
                ("stdout", b"89abcdef"),
                ("stderr", b"E" * 30),
                ("report", CUT_REPORT),
            ],
            10,
            id="both-past-the-cap",
        ),
        pytest.param([("stderr", b"Traceback\n" * 3), ("report", REPORT)], 10, id="stderr-only"),
        pytest.param(
            [("stderr", b"cut"), ("report", ERR_CUT_REPORT)], 10, id="cut-by-the-supervisor"
        ),
    ],
)
def test_the_readers_output_judges_as_the_engines_log_does(
    db: Database,
    writer: ChunkWriter,
    script: list[Piece],
    limit: int,
) -> None:
    reader = start_reader(db, ScriptedRuntime(script), writer, limit=limit)
    reader.join(timeout=5)

    # What `DockerRuntime.output` decodes from the whole log: each stream joined, and the
    # report.
    whole = CapturedOutput(
        b"".join(data for stream, data in script if stream == "stdout"),
        b"".join(data for stream, data in script if stream == "stderr"),
        read_report(script[-1][1]),
    )
    assert reader.output is not None
    # Kept to one byte past the cap: enough to show the cut, never the whole flood.
    assert reader.output.stdout == whole.stdout[: limit + 1]
    assert reader.output.report == reader.report
    assert judged(reader.output, limit) == judged(whole, limit)


def test_a_reader_without_the_report_offers_no_output(db: Database, writer: ChunkWriter) -> None:
    # The supervisor was killed (a timeout, a cancel): only the engine's log is complete.
    reader = start_reader(db, ScriptedRuntime([("stdout", b"partial\n")]), writer)
    reader.join(timeout=5)

    assert reader.report is None and reader.output is None
