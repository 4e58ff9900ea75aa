"""The `from`, `to` and `tz` query parameters that statistics and export share.

An instant with an offset (or `Z`) is that instant; a bare date or a datetime without an offset is a
wall time in `tz`. Every instant is handled as timezone-aware UTC, truncated to milliseconds (what
the database stores and the wire carries).
"""
from datetime import datetime, timezone
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from .errors import ApiError

UTC = timezone.utc
# Far enough from datetime's limits that a bucket or a default span around them never overflows.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


@cache
def _zone_names():
    # Read once: checking a name against this set never opens a file named by a client.
    return frozenset(available_timezones()) | {"UTC"}


def timezone_arg(args):
    """The `tz` parameter as a ZoneInfo (its `key` is the name); UTC when absent; 400 unknown_timezone otherwise."""
    name = args.get("tz", "UTC")
    if name not in _zone_names():
        raise ApiError(
            400, "unknown_timezone", f"Unknown time zone {name[:64]!r}: use an IANA name such as Europe/Paris", field="tz"
        )
    return ZoneInfo(name)


def instant_arg(args, name, zone):
    """The ISO 8601 parameter `name` as an aware UTC datetime (None when absent); wall times are in `zone`."""
    raw = args.get(name)
    if raw is None:
        return None
    try:
        if len(raw) > 64:
            raise ValueError(raw)
        value = _parse(raw)
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        value = value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ApiError(
            400,
            "invalid_parameter",
            f"Query parameter '{name}' must be an ISO 8601 date or time, e.g. 2026-03-29, "
            "2026-03-29T10:00 (in tz) or 2026-03-29T08:00:00Z",
            field=name,
        ) from None
    if not EARLIEST <= value < LATEST:
        raise ApiError(
            400, "invalid_parameter", f"Query parameter '{name}' must lie between the years 1900 and 9000", field=name
        )
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _parse(raw):
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        # A `+` left unencoded in a query string arrives as a space: "10:00 02:00" meant "10:00+02:00".
        head, space, tail = raw.rpartition(" ")
        if not space:
            raise
        return datetime.fromisoformat(f"{head}+{tail}")


def time_range(args):
    """`from`, `to` (each None when absent) and the zone: what export needs; 400 invalid_range if from >= to."""
    zone = timezone_arg(args)
    start, end = instant_arg(args, "from", zone), instant_arg(args, "to", zone)
    check_order(start, end)
    return start, end, zone


def check_order(start, end):
    """Refuse a range that ends before it starts (400 invalid_range)."""
    if start is not None and end is not None and start >= end:
        raise ApiError(400, "invalid_range", "'from' must be before 'to'", field="from")
