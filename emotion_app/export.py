"""Export: a user's events, oldest first, as a CSV or JSON download streamed page by page.

The history is never held whole: pages of PAGE_SIZE events are read by id (keyset), each on a
connection of its own that goes back to the pool before the page is sent. SQLite has one pooled
connection per worker, and a client may take minutes to download.
"""
import csv
import io
import json
import re

from flask import Response
from sqlalchemy import bindparam, select

from .extensions import read_connection
from .models import EmotionEvent, User, event_payload
from .timeutil import isoformat, utcnow

PAGE_SIZE = 500
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
CSV_HEADER = ("id", "seq", "timestamp", "emotion", "device", "client_timestamp", "client_msg_id")
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")

_events = EmotionEvent.__table__
USERNAME = select(User.__table__.c.username).where(User.__table__.c.id == bindparam("uid"))


def download(app, user_id, fmt, start, end, zone):
    """The streamed response: the user's events in [start, end) (either may be None) as `fmt` (csv or json).

    The username (for the file name, dated today in `zone`) and the first page are read here, so a
    database outage is a 503 rather than a download cut short; later pages are read as it streams.
    """
    with read_connection() as conn:
        username = conn.execute(USERNAME, {"uid": user_id}).scalar()
        first = read_page(conn, user_id, 0, start, end)
    rows = _rows(app, user_id, start, end, first)
    body = _csv(rows) if fmt == "csv" else _json(rows)
    response = Response(body, content_type=CONTENT_TYPES[fmt])
    name = username if username and _SAFE_NAME.fullmatch(username) else str(user_id)
    day = utcnow().astimezone(zone).strftime("%Y%m%d")
    response.headers["Content-Disposition"] = f'attachment; filename="emotions-{name}-{day}.{fmt}"'
    return response


def read_page(conn, user_id, after_id, start=None, end=None):
    """Up to PAGE_SIZE of the user's events with id above `after_id`, in [start, end), by id."""
    query = select(_events).where(_events.c.user_id == user_id, _events.c.id > after_id)
    if start is not None:
        query = query.where(_events.c.created_at >= start)
    if end is not None:
        query = query.where(_events.c.created_at < end)
    return conn.execute(query.order_by(_events.c.id).limit(PAGE_SIZE)).all()


def _rows(app, user_id, start, end, page):
    # Runs after the request has ended: each page gets an app context and a pooled connection of its
    # own, both given back before the page's rows are handed on (and the client reads them).
    while page:
        yield page
        if len(page) < PAGE_SIZE:
            return
        with app.app_context(), read_connection() as conn:
            page = read_page(conn, user_id, page[-1].id, start, end)


def _csv(pages):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    for page in pages:
        for row in page:
            writer.writerow(
                (row.id, row.seq, isoformat(row.created_at), _cell(row.emotion), _cell(row.device),
                 _cell(row.client_timestamp), _cell(row.client_msg_id))
            )
        yield _drain(buffer)
    if buffer.tell():
        yield _drain(buffer)  # the header alone: there are no events


def _drain(buffer):
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data


def _cell(value):
    """A client-chosen text as a CSV cell: empty for null, and never something a spreadsheet would run."""
    if value is None:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _json(pages):
    yield b"["
    separator = "\n"
    for page in pages:
        parts = []
        for row in page:
            parts.append(separator + json.dumps(event_payload(row), separators=(",", ":")))
            separator = ",\n"
        yield "".join(parts).encode()
    yield b"\n]\n"
