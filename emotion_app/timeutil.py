"""UTC time and the wire format of timestamps."""
from datetime import datetime, timezone


def utcnow():
    """Return the current time, timezone-aware UTC, truncated to milliseconds (what the wire carries)."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def isoformat(moment):
    """Format a datetime as the contract does: UTC, milliseconds and a `Z`, e.g. 2023-05-09T14:30:00.000Z."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
