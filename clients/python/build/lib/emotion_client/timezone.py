"""The machine's time zone as an IANA name, for statistics by local day."""
from __future__ import annotations

import os
from pathlib import Path


def local_timezone() -> str | None:
    """`$TZ` if it names a zone, else /etc/timezone or the zone /etc/localtime links to; None if unknown."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and "/" in tz and not tz.startswith("/"):
        return tz
    try:
        name = Path("/etc/timezone").read_text().strip()
        if name:
            return name
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return None
    marker = "zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else None
