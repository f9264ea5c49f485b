"""Time as taskyard handles it: aware UTC datetimes everywhere, ISO 8601 with a `Z` on the wire."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """The same instant as an aware UTC datetime; naive input is taken as UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def isoformat_z(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with a trailing Z, or None for an unset time."""
    if moment is None:
        return None
    return as_utc(moment).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
