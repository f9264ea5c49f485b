"""`FrameDecoder`: the controller's reading of the supervisor's keyed output lines, as a truth
table over what the engine's log can hold (lines cut anywhere, lines that are not ours).
"""

import base64
import json

import pytest

from sandbox import frames
from sandbox.frames import MAX_LINE, FrameDecoder, decode_output, decode_run, frame_key
from sandbox.supervisor import MARKER, SOURCE, Report, Usage, read_report

KEY = frame_key("instance-secret", "taskyard-x-t-1-1")
OTHER_KEY = frame_key("instance-secret", "taskyard-x-t-2-1")
REPORT = b'{"exit_code": 0}'


def line(tag: bytes, body: bytes, key: bytes = KEY) -> bytes:
    return key + tag + (base64.b64encode(body) if tag in (b"o", b"e") else body) + b"\n"


HELLO = line(b"h", b"")


OURS = Report(exit_code=0)


@pytest.mark.parametrize(
    ("framed", "stdout", "stderr", "report"),
    [
        pytest.param(
            HELLO + line(b"o", b"out\n") + line(b"e", b"err\n") + line(b"r", REPORT),
            b"out\n",
            b"err\n",
            OURS,
            id="a-whole-run",
        ),
        pytest.param(
            HELLO + line(b"o", bytes(range(256))),
            bytes(range(256)),
            b"",
            None,
            id="every-byte-value",
        ),
        pytest.param(
            HELLO + line(b"o", b"kept\n") + b"INJECTED raw text\n",
            b"kept\n",
            b"",
            None,
            id="a-line-without-the-key-is-dropped",
        ),
        pytest.param(
            HELLO + line(b"o", b"forged\n", key=OTHER_KEY),
            b"",
            b"",
            None,
            id="a-line-with-another-key-is-dropped",
        ),
        pytest.param(
            HELLO + MARKER + b'{"error": "forged"}\n',
            b"",
            b"",
            None,
            id="a-bare-report-after-the-hello-is-dropped",
        ),
        pytest.param(
            MARKER + b'{"error": "no code"}\n',
            b"",
            b"",
            Report(error="no code"),
            id="a-bare-report-before-any-key-is-the-supervisors",
        ),
        pytest.param(HELLO + KEY + b"o" + b"not base64!\n", b"", b"", None, id="a-broken-body"),
        pytest.param(
            HELLO + KEY + b"o" + base64.b64encode(b"cut short by a kill")[:10],
            base64.b64decode(base64.b64encode(b"cut short by a kill")[:8]),
            b"",
            None,
            id="the-last-line-cut-in-the-middle",
        ),
        pytest.param(
            HELLO + KEY + b"r" + b'{"exit_co', b"", b"", None, id="a-report-cut-in-the-middle"
        ),
        pytest.param(
            HELLO + b"x" * (MAX_LINE + 10) + b"\n" + line(b"o", b"after\n"),
            b"after\n",
            b"",
            None,
            id="an-overlong-foreign-line-then-ours",
        ),
        pytest.param(
            HELLO + b"INJECTED, no newline" + line(b"o", b"ours\n") + line(b"r", REPORT),
            b"ours\n",
            b"",
            OURS,
            id="a-foreign-start-on-our-line",
        ),
        pytest.param(
            HELLO + b"y" * (3 * MAX_LINE) + line(b"o", b"ours\n"),
            b"ours\n",
            b"",
            None,
            id="an-overlong-foreign-start-on-our-line",
        ),
        pytest.param(
            b"junk" + MARKER + b'{"error": "forged"}\n',
            b"",
            b"",
            None,
            id="a-bare-report-that-does-not-start-its-line",
        ),
    ],
)
def test_decode_output(framed: bytes, stdout: bytes, stderr: bytes, report: Report | None) -> None:
    assert decode_output(KEY, framed) == (stdout, stderr, report)


def test_lines_cut_into_pieces_anywhere_decode_the_same() -> None:
    framed = (
        HELLO + line(b"o", bytes(range(256)) * 3) + line(b"e", "é😀".encode()) + line(b"r", REPORT)
    )
    whole = decode_output(KEY, framed)
    for size in (1, 2, 3, 7, 64, 1000):
        decoder = FrameDecoder(KEY)
        pieces = []
        for at in range(0, len(framed), size):
            pieces += decoder.feed(framed[at : at + size])
        pieces += decoder.close()
        out = b"".join(data for stream, data in pieces if stream == "stdout")
        err = b"".join(data for stream, data in pieces if stream == "stderr")
        reports = [data for stream, data in pieces if stream == "report"]
        assert (out, err, reports) == (whole[0], whole[1], [REPORT]), size


def test_an_endless_foreign_line_does_not_grow_the_decoders_memory() -> None:
    decoder = FrameDecoder(KEY)
    decoder.feed(HELLO)
    for _ in range(64):
        assert decoder.feed(b"y" * 65536) == []
        assert len(decoder._line) <= MAX_LINE
    assert decoder.dropped >= 64 * 65536 - MAX_LINE
    assert decoder.feed(line(b"o", b"ok")) == [("stdout", b"ok")]


def test_the_report_is_a_piece_of_its_own_and_a_forged_marker_is_only_stderr() -> None:
    forged = MARKER + b'{"exit_code": 0}\n'
    decoder = FrameDecoder(KEY)
    pieces = decoder.feed(HELLO + line(b"e", forged) + line(b"r", REPORT))
    assert pieces == [("stderr", forged), ("report", REPORT)]


def test_keys_differ_per_container_and_per_instance() -> None:
    assert frame_key("a", "c1") != frame_key("a", "c2")
    assert frame_key("a", "c1") != frame_key("b", "c1")
    assert len(frame_key("a", "c1")) == 32 and frame_key("a", "c1").isalnum()


def test_the_supervisor_writes_with_the_numbers_the_controller_reads_with() -> None:
    # SOURCE runs alone in the container, so it repeats them.
    line = (
        f"KEY_CHARS, FLUSH, SLOW_FLUSH, FAST_LINES, FRAME = {frames.KEY_CHARS}, "
        f"{frames.FLUSH_SECONDS}, {frames.SLOW_FLUSH_SECONDS}, {frames.FAST_LINES}, "
        f"{frames.FRAME_BYTES // 1024} * 1024"
    )
    assert line in SOURCE
    assert 'MARKER = b"\\x00\\x1etaskyard-report:"' in SOURCE
    assert MARKER == b"\x00\x1etaskyard-report:"


def _file_lines(name: object, size: object, data: bytes) -> bytes:
    head = json.dumps({"name": name, "size": size}).encode()
    lines = KEY + b"f" + base64.b64encode(head) + b"\n"
    return lines + KEY + b"d" + base64.b64encode(data) + b"\n"


@pytest.mark.parametrize(
    ("framed", "names", "truncated"),
    [
        (_file_lines("a.txt", 2, b"hi"), ["a.txt"], False),
        (_file_lines("a.txt", 2, b"hi") + _file_lines("b.txt", 0, b""), ["a.txt", "b.txt"], False),
        (_file_lines("a.txt", 5, b"hi"), [], True),
        (_file_lines("a.txt", 1, b"hi"), [], True),
        (_file_lines("../etc/passwd", 2, b"hi"), [], True),
        (_file_lines("/abs", 2, b"hi"), [], True),
        (_file_lines("a\nb", 2, b"hi"), [], True),
        (_file_lines(7, 2, b"hi"), [], True),
        (_file_lines("a.txt", True, b"x"), [], True),
        (_file_lines("a.txt", -1, b""), [], True),
        (_file_lines("big", 101, b"x" * 101), [], True),
        (_file_lines("a", 60, b"x" * 60) + _file_lines("b", 60, b"y" * 60), ["a"], True),
        (b"".join(_file_lines(str(n), 1, b"x") for n in range(4)), ["0", "1", "2"], True),
        (KEY + b"d" + base64.b64encode(b"stray") + b"\n", [], False),
        (KEY + b"f" + base64.b64encode(b"not json") + b"\n", [], True),
    ],
    ids=[
        "one-file",
        "two-files-one-empty",
        "fewer-bytes-than-said",
        "more-bytes-than-said",
        "dot-dot",
        "absolute",
        "control-character",
        "name-not-text",
        "size-a-bool",
        "size-negative",
        "over-the-byte-bound",
        "second-over-what-is-left",
        "over-the-count-bound",
        "data-without-header",
        "header-not-json",
    ],
)
def test_collected_files_are_read_within_bounds_whatever_the_lines_say(
    framed: bytes, names: list[str], truncated: bool
) -> None:
    _, _, _, files = decode_run(KEY, framed, max_files=3, max_bytes=100)
    assert [file.name for file in files.files] == names
    assert files.truncated is truncated


@pytest.mark.parametrize(
    "usage",
    [
        {"wall_seconds": float("nan"), "cpu_seconds": 1, "peak_memory_bytes": 1},
        {"wall_seconds": -1, "cpu_seconds": 1, "peak_memory_bytes": 1},
        {"wall_seconds": 1, "cpu_seconds": True, "peak_memory_bytes": 1},
        {"wall_seconds": 1, "cpu_seconds": "1", "peak_memory_bytes": 1},
        {"wall_seconds": 1, "cpu_seconds": 1, "peak_memory_bytes": 1.5},
        {"wall_seconds": 1e300, "cpu_seconds": 1, "peak_memory_bytes": 1},
        {"wall_seconds": 1, "cpu_seconds": 1},
        [1, 2, 3],
    ],
    ids=["nan", "negative", "bool", "string", "float-bytes", "huge", "missing", "not-object"],
)
def test_a_usage_out_of_shape_is_left_out(usage: object) -> None:
    line = json.dumps({"exit_code": 0, "usage": usage}).encode()
    assert read_report(line) == Report(exit_code=0)


def test_a_usage_in_shape_is_read() -> None:
    line = json.dumps(
        {"exit_code": 0, "usage": {"wall_seconds": 1, "cpu_seconds": 0.5, "peak_memory_bytes": 9}}
    ).encode()
    assert read_report(line).usage == Usage(wall_seconds=1.0, cpu_seconds=0.5, peak_memory_bytes=9)
