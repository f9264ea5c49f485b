"""Parsing and formatting of the seed's resource quantities ("2", "512MB", "1gb").

Used by the request validators in `models.schemas` and by the settings that hold reserves.
"""

import re

MIB = 1024 * 1024
GIB = 1024 * MIB

_COUNT = re.compile(r"[0-9]+")
_SIZE = re.compile(r"([0-9]+)(MB|GB)", re.IGNORECASE)
_UNIT_BYTES = {"MB": MIB, "GB": GIB}


class QuantityError(ValueError):
    """A quantity string that does not follow the seed's format."""


def parse_count(text: str) -> int:
    """Parse a CPU or GPU count: ASCII decimal digits only ("0", "2")."""
    if not _COUNT.fullmatch(text):
        raise QuantityError(f"{text!r} should be a non-negative integer string such as '2'")
    return int(text)


def parse_size(text: str) -> int:
    """Parse a RAM or storage size ("512MB", "1gb") into bytes; 1MB is 1024*1024 bytes."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise QuantityError(
            f"{text!r} is not a valid size: use digits followed by MB or GB, such as '512MB'"
        )
    return int(match.group(1)) * _UNIT_BYTES[match.group(2).upper()]


def format_size(n_bytes: int) -> str:
    """A short human form of a byte amount, in the seed's units where it divides evenly."""
    if n_bytes % GIB == 0 and n_bytes >= GIB:
        return f"{n_bytes // GIB}GB"
    if n_bytes % MIB == 0:
        return f"{n_bytes // MIB}MB"
    return f"{n_bytes / MIB:.1f}MB"


def format_size_floor(n_bytes: int) -> str:
    """The largest size a request may ask for within `n_bytes`, as a person types it: whole GB
    where it divides evenly, else whole MB, rounded down ("23849MB", never "23849.2MB")."""
    if n_bytes % GIB == 0 and n_bytes >= GIB:
        return f"{n_bytes // GIB}GB"
    return f"{max(n_bytes, 0) // MIB}MB"


def counted(n: int, noun: str) -> str:
    """`n` and the noun, plural unless one: "1 GPU", "2 GPUs", "0 CPUs"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
