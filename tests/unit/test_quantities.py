"""Truth tables for the seed's resource quantities: counts ("2") and sizes ("512MB")."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.fit import HostLimits, exceeded_limits
from models.quantities import (
    GIB,
    MIB,
    QuantityError,
    counted,
    format_size,
    format_size_floor,
    parse_count,
    parse_size,
)


def test_units_are_binary() -> None:
    assert MIB == 1_048_576
    assert GIB == 1024 * MIB


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0", 0, id="zero"),
        pytest.param("2", 2, id="two"),
        pytest.param("16", 16, id="two-digits"),
        pytest.param("007", 7, id="leading-zeros"),
    ],
)
def test_parse_count_accepts_ascii_digits(text: str, expected: int) -> None:
    assert parse_count(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("-1", id="negative"),
        pytest.param("+1", id="plus-sign"),
        pytest.param("1.5", id="fraction"),
        pytest.param(" 2", id="leading-space"),
        pytest.param("2 ", id="trailing-space"),
        pytest.param("2\n", id="trailing-newline"),
        pytest.param("two", id="word"),
        pytest.param("", id="empty"),
        pytest.param("٣", id="arabic-indic-digit"),
        pytest.param("²", id="superscript-digit"),
        pytest.param("1_000", id="underscore"),
        pytest.param("0x2", id="hex"),
    ],
)
def test_parse_count_rejects(text: str) -> None:
    with pytest.raises(QuantityError, match="non-negative integer"):
        parse_count(text)


def test_quantity_error_is_a_value_error() -> None:
    # pydantic turns ValueError raised by validators into a 422 naming the field.
    with pytest.raises(ValueError):
        parse_count("two")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("512MB", 512 * 1_048_576, id="512MB"),
        pytest.param("1MB", 1_048_576, id="1MB"),
        pytest.param("1GB", 1024 * 1_048_576, id="1GB"),
        pytest.param("1gb", 1024 * 1_048_576, id="lower-case-unit"),
        pytest.param("1Gb", 1024 * 1_048_576, id="mixed-case-unit"),
        pytest.param("256mB", 256 * 1_048_576, id="mixed-case-mb"),
        pytest.param("500MB", 500 * 1_048_576, id="500MB"),
        pytest.param("0MB", 0, id="zero"),
        pytest.param("2GB", 2 * 1024 * 1_048_576, id="2GB"),
    ],
)
def test_parse_size_accepts(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("512", id="no-unit"),
        pytest.param("512KB", id="kilobytes"),
        pytest.param("1TB", id="terabytes"),
        pytest.param("512B", id="bytes"),
        pytest.param("512M", id="short-unit"),
        pytest.param("512MiB", id="iec-unit"),
        pytest.param("1.5GB", id="fraction"),
        pytest.param("GB", id="unit-only"),
        pytest.param("1 GB", id="space-before-unit"),
        pytest.param(" 1GB", id="leading-space"),
        pytest.param("1GB ", id="trailing-space"),
        pytest.param("1GB\n", id="trailing-newline"),
        pytest.param("-1MB", id="negative"),
        pytest.param("+1MB", id="plus-sign"),
        pytest.param("", id="empty"),
        pytest.param("٣MB", id="arabic-indic-digit"),
        pytest.param("MB512", id="unit-first"),
    ],
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(QuantityError, match="not a valid size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("n_bytes", "expected"),
    [
        pytest.param(0, "0MB", id="zero"),
        pytest.param(1_048_576, "1MB", id="one-mib"),
        pytest.param(64 * 1_048_576, "64MB", id="64MB"),
        pytest.param(512 * 1_048_576, "512MB", id="512MB"),
        pytest.param(1024 * 1_048_576, "1GB", id="one-gib"),
        pytest.param(1536 * 1_048_576, "1536MB", id="not-whole-gib"),
        pytest.param(4 * 1024 * 1_048_576, "4GB", id="4GB"),
        pytest.param(1_572_864, "1.5MB", id="fraction-of-mib"),
    ],
)
def test_format_size(n_bytes: int, expected: str) -> None:
    assert format_size(n_bytes) == expected


@pytest.mark.parametrize("text", ["1MB", "64MB", "512MB", "1GB", "3GB", "1536MB"], ids=lambda t: t)
def test_format_size_round_trips_through_parse_size(text: str) -> None:
    assert format_size(parse_size(text)) == text


@pytest.mark.parametrize(
    ("n_bytes", "expected"),
    [
        pytest.param(0, "0MB", id="zero"),
        pytest.param(1_048_575, "0MB", id="under-one-mib"),
        pytest.param(64 * MIB, "64MB", id="whole-mib"),
        pytest.param(int(23849.2 * MIB), "23849MB", id="fraction-rounded-down"),
        pytest.param(GIB, "1GB", id="whole-gib"),
        pytest.param(GIB + 1, "1024MB", id="just-over-a-gib"),
        pytest.param(1536 * MIB, "1536MB", id="not-whole-gib"),
    ],
)
def test_format_size_floor(n_bytes: int, expected: str) -> None:
    assert format_size_floor(n_bytes) == expected


@given(st.integers(min_value=0, max_value=1 << 50))
def test_format_size_floor_is_a_size_the_validator_accepts_within_the_amount(n: int) -> None:
    text = format_size_floor(n)
    assert parse_size(text) <= n < parse_size(text) + MIB


@pytest.mark.parametrize(("n", "expected"), [(0, "0 GPUs"), (1, "1 GPU"), (2, "2 GPUs")])
def test_counted(n: int, expected: str) -> None:
    assert counted(n, "GPU") == expected


HOST = HostLimits(cpus=1, gpus=1, ram=int(23849.2 * MIB), storage=int(10.7 * GIB))


@pytest.mark.parametrize(
    ("asked", "field", "message"),
    [
        pytest.param({"cpu": 2}, "cpu", "requested 2 CPUs, this host can allocate 1", id="cpus"),
        pytest.param({"gpu": 2}, "gpu", "requested 2 GPUs, this host can allocate 1", id="gpus"),
        pytest.param(
            {"ram": 24 * GIB}, "ram", "requested 24GB RAM, this host can allocate 23849MB", id="ram"
        ),
        pytest.param(
            {"storage": 11 * GIB},
            "storage",
            "requested 11GB storage, this host can allocate 10956MB",
            id="storage",
        ),
    ],
)
def test_capacity_messages_quote_sizes_a_request_may_ask_for(
    asked: dict[str, int], field: str, message: str
) -> None:
    request = {"cpu": 0, "gpu": 0, "ram": 0, "storage": 0, **asked}
    [(name, text)] = exceeded_limits(host=HOST, **request)
    assert (name, text) == (field, message)
    quoted = text.rsplit(" ", 1)[-1]
    if field in ("ram", "storage"):
        # What the host can allocate, asked for as the message says, fits.
        assert not exceeded_limits(host=HOST, **{**request, field: parse_size(quoted)})
    else:
        assert not exceeded_limits(host=HOST, **{**request, field: parse_count(quoted)})
