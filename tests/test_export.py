"""/api/emotions/export: the user's events as a streamed CSV or JSON download; on SQLite and PostgreSQL,
and over a real server with a slow client."""
import csv
import http.client
import io
import json
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from emotion_app import create_app, export
from emotion_app.extensions import db
from emotion_app.models import EmotionEvent, event_payload
from tests.conftest import TEST_SECRETS, Auth, fresh_sqlite
from tests.seed import seed_events

TRICKY = [
    {"created_at": "2026-11-26T08:00", "emotion": "happy", "device": "Pixel, 8",
     "client_timestamp": "2026-11-26T09:00:00.123456", "client_msg_id": "m-1"},
    {"created_at": "2026-11-26T09:00", "emotion": "sad", "device": 'He said "hi"', "client_msg_id": "=cmd|' /C calc'!A0"},
    {"created_at": "2026-11-26T10:00", "emotion": "angry", "device": "two\nlines\r\nhere"},
    {"created_at": "2026-11-26T11:00", "emotion": "neutral", "device": "=SUM(A1:A9)", "client_timestamp": "-1"},
    {"created_at": "2026-11-26T12:00", "emotion": "happy", "device": "+33 6 12", "client_msg_id": "@mention"},
    {"created_at": "2026-11-26T13:00", "emotion": "fearful", "device": "Téléphone ☃"},
    {"created_at": "2026-11-26T14:00", "emotion": "surprised"},
]


@pytest.fixture
def user(auth):
    tokens = auth.login()
    return {"headers": Auth.bearer(tokens["access_token"]), "id": tokens["user"]["id"],
            "username": tokens["user"]["username"]}


def download(client, user, query="", status=200):
    response = client.get(f"/api/emotions/export{query}", headers=user["headers"])
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    return response


def stored(app, user_id):
    with app.app_context():
        rows = db.session.execute(
            select(EmotionEvent.__table__).where(EmotionEvent.user_id == int(user_id)).order_by(EmotionEvent.id)
        ).all()
        db.session.commit()
    return rows


def parse_csv(text):
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["id", "seq", "timestamp", "emotion", "device", "client_timestamp", "client_msg_id"]
    return rows[1:]


def unescape(cell):
    """What a cell held before the export defused a formula."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] in ("=", "+", "-", "@") else cell


def test_csv_round_trip(app, client, user):
    seed_events(app, user["id"], TRICKY)
    response = download(client, user)
    assert response.is_streamed
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    now = datetime.now(timezone.utc)
    days = {now.strftime("%Y%m%d"), (now - timedelta(seconds=5)).strftime("%Y%m%d")}
    assert response.headers["Content-Disposition"] in {
        f'attachment; filename="emotions-{user["username"]}-{day}.csv"' for day in days}
    rows = parse_csv(response.get_data(as_text=True))
    expected = stored(app, user["id"])
    assert len(rows) == len(expected) == len(TRICKY)
    for cells, row in zip(rows, expected):
        assert cells[:4] == [str(row.id), str(row.seq), event_payload(row)["timestamp"], row.emotion]
        assert [unescape(c) or None for c in cells[4:]] == [row.device, row.client_timestamp, row.client_msg_id]
    # Formulas are defused, plain text is left alone.
    assert rows[1][6] == "'=cmd|' /C calc'!A0" and rows[3][4] == "'=SUM(A1:A9)" and rows[3][5] == "'-1"
    assert rows[4][4] == "'+33 6 12" and rows[4][6] == "'@mention"
    assert rows[0][4] == "Pixel, 8" and rows[2][4] == "two\nlines\r\nhere" and rows[5][4] == "Téléphone ☃"


def test_json_round_trip(app, client, user):
    seed_events(app, user["id"], TRICKY)
    response = download(client, user, "?format=json")
    assert response.is_streamed
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Disposition"].endswith('.json"')
    events = json.loads(response.get_data(as_text=True))
    assert events == [{**event_payload(row), "device": row.device} for row in stored(app, user["id"])]
    # The same dicts as history (which is newest first), plus the device.
    history = client.get("/api/emotions?limit=100", headers=user["headers"]).get_json()["events"]
    assert [{k: v for k, v in e.items() if k != "device"} for e in events] == [
        {k: v for k, v in e.items() if k != "device"} for e in reversed(history)]


def test_no_events_gives_a_header_or_an_empty_array(client, user):
    assert download(client, user).get_data(as_text=True) == "id,seq,timestamp,emotion,device,client_timestamp,client_msg_id\r\n"
    assert json.loads(download(client, user, "?format=json").get_data()) == []


def test_from_and_to_filter(app, client, user):
    seed_events(app, user["id"], [(f"2026-11-{day}T12:00", "happy") for day in range(20, 30)])
    events = json.loads(download(client, user, "?format=json&from=2026-11-22T12:00:00Z&to=2026-11-25T12:00:00Z").data)
    assert [e["timestamp"][:10] for e in events] == ["2026-11-22", "2026-11-23", "2026-11-24"]
    # Wall times in tz: 13:00 in Paris is 12:00 UTC.
    rows = parse_csv(download(client, user, "?from=2026-11-28T13:00&tz=Europe/Paris").get_data(as_text=True))
    assert [r[2][:10] for r in rows] == ["2026-11-28", "2026-11-29"]
    rows = parse_csv(download(client, user, "?to=2026-11-21T12:00:00.001Z").get_data(as_text=True))
    assert [r[2][:10] for r in rows] == ["2026-11-20", "2026-11-21"]


def test_other_users_events_are_never_exported(app, client, auth, user):
    other = auth.login()["user"]["id"]
    seed_events(app, other, [("2026-11-26T00:00", "angry")])
    seed_events(app, user["id"], [("2026-11-26T01:00", "happy")])
    seed_events(app, other, [("2026-11-26T02:00", "sad")])
    assert [e["emotion"] for e in json.loads(download(client, user, "?format=json").data)] == ["happy"]


def test_many_pages_stream_without_holding_a_connection(app, client, user):
    total = 2 * export.PAGE_SIZE + 37
    base = datetime(2026, 11, 1, tzinfo=timezone.utc)
    seed_events(app, user["id"], [(base + timedelta(minutes=i), "happy" if i % 2 else "sad") for i in range(total)])
    with app.app_context():
        pool = db.engine.pool
    response = client.get("/api/emotions/export?format=json", headers=user["headers"], buffered=False)
    assert response.is_streamed
    chunks = []
    for chunk in response.response:
        # While the client holds a page, no pooled connection is in use (SQLite has only one).
        assert pool.checkedout() == 0
        chunks.append(chunk)
    response.close()
    assert len(chunks) == 3 + 2  # "[", three pages, "]"
    events = json.loads(b"".join(chunks))
    assert [e["seq"] for e in events] == list(range(1, total + 1))
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids))
    assert len(parse_csv(download(client, user).get_data(as_text=True))) == total


@pytest.mark.parametrize(
    "query, error, field",
    [
        ("format=xml", "invalid_parameter", "format"),
        ("format=", "invalid_parameter", "format"),
        ("from=soon", "invalid_parameter", "from"),
        ("to=2026-02-30", "invalid_parameter", "to"),
        ("tz=Mars/Olympus", "unknown_timezone", "tz"),
        ("tz=../../etc/passwd", "unknown_timezone", "tz"),
        ("from=2026-11-26&to=2026-11-25", "invalid_range", "from"),
    ],
)
def test_bad_parameters_are_refused(client, user, query, error, field):
    response = client.get(f"/api/emotions/export?{query}", headers=user["headers"])
    assert response.status_code == 400
    body = response.get_json()
    assert (body["error"], body["field"]) == (error, field)


def test_there_is_no_range_cap(client, user):
    download(client, user, "?from=1900-01-01&to=8999-12-31")


def test_a_token_is_required(client):
    response = client.get("/api/emotions/export")
    assert response.status_code == 401 and response.get_json()["error"] == "missing_token"


# ---------------------------------------------------------------------------------------- a real server


@pytest.fixture(scope="module")
def served(server_factory, sqlite_template, tmp_path_factory):
    """A gunicorn server on a SQLite file, and an app on the same file to seed it with."""
    url = fresh_sqlite(sqlite_template, tmp_path_factory.mktemp("export"))
    server = server_factory(DATABASE_URL=url)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, **TEST_SECRETS})
    yield server, app
    with app.app_context():
        db.engine.dispose()


def test_a_download_of_thousands_of_rows(served):
    server, app = served
    login = server.login()
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    seed_events(app, login["user"]["id"], [(base + timedelta(minutes=i), "happy") for i in range(3000)])
    status, text = server.request("GET", "/api/emotions/export", token=login["access_token"], timeout=30)
    assert status == 200
    rows = parse_csv(text)
    assert [int(r[1]) for r in rows] == list(range(1, 3001))


class SlowConnection(http.client.HTTPConnection):
    """A client with a small receive buffer, so that the server soon has to wait for it."""

    def connect(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(self.timeout)
        self.sock.connect((self.host, self.port))


def test_a_slow_download_does_not_hold_the_worker(served):
    server, app = served
    login = server.login()
    token = login["access_token"]
    total = 20000
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    seed_events(app, login["user"]["id"], [
        {"created_at": base + timedelta(seconds=i), "emotion": "neutral", "device": f"device {i % 7} " + "x" * 50,
         "client_msg_id": f"{i:08d}" + "y" * 50, "client_timestamp": "2026-01-01T00:00:00.000000+00:00"}
        for i in range(total)
    ])
    conn = SlowConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/api/emotions/export?format=json", headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    assert response.status == 200
    head = response.read(16384)
    time.sleep(0.5)  # the server fills the socket's buffers and waits for this client

    started = time.monotonic()
    status, event = server.request("POST", "/api/emotions", {"emotion": "happy"}, token=token, timeout=5)
    took = time.monotonic() - started
    assert status == 201, event
    assert took < 1.0, took

    events = json.loads(head + response.read())
    conn.close()
    # The export was still reading pages when the emotion was stored: it ends with it.
    assert len(events) == total + 1
    assert events[-1]["id"] == event["id"] and events[-1]["emotion"] == "happy"
