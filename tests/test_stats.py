"""/api/emotions/stats: durations per emotion per local-time bucket; on SQLite and PostgreSQL."""
import tracemalloc
from datetime import timedelta
from zoneinfo import ZoneInfo
from urllib.parse import urlencode

import pytest
from sqlalchemy import event

from emotion_app import stats
from emotion_app.extensions import db
from emotion_app.timeutil import isoformat, utcnow
from tests.conftest import Auth
from tests.seed import seed_events, utc

HOURS = 3600.0


@pytest.fixture
def user(auth):
    tokens = auth.login()
    return {"headers": Auth.bearer(tokens["access_token"]), "id": tokens["user"]["id"]}


def get_stats(client, user, **params):
    query = urlencode({"from" if k == "start" else k: v for k, v in params.items()})
    response = client.get(f"/api/emotions/stats?{query}", headers=user["headers"])
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def seconds(bucket):
    """{emotion: seconds} of one bucket."""
    return {e: v["seconds"] for e, v in bucket["emotions"].items()}


def test_a_plain_day(app, client, user):
    seed_events(app, user["id"], [
        ("2026-11-26T08:00", "happy"), ("2026-11-26T10:00", "sad"),
        ("2026-11-26T13:00", "happy"), ("2026-11-26T20:00", "neutral"),
    ])
    body = get_stats(client, user, start="2026-11-26", to="2026-11-27")
    assert body["from"] == "2026-11-26T00:00:00.000Z" and body["to"] == "2026-11-27T00:00:00.000Z"
    assert body["bucket"] == "day" and body["tz"] == "UTC"
    assert body["emotions"] == list(app.config["EMOTIONS"])
    # Nothing before the first event at 08:00; the last emotion lasts until `to`.
    assert body["tracked_seconds"] == 16 * HOURS
    assert body["buckets"] == [{
        "start": "2026-11-26T00:00:00+00:00",
        "label": "2026-11-26",
        "emotions": {
            "happy": {"count": 2, "seconds": 9 * HOURS},
            "sad": {"count": 1, "seconds": 3 * HOURS},
            "neutral": {"count": 1, "seconds": 4 * HOURS},
        },
    }]
    assert body["totals"] == {
        "happy": {"count": 2, "seconds": 9 * HOURS, "share": 0.5625, "longest": {
            "seconds": 7 * HOURS, "start": "2026-11-26T13:00:00.000Z", "end": "2026-11-26T20:00:00.000Z"}},
        "sad": {"count": 1, "seconds": 3 * HOURS, "share": 0.1875, "longest": {
            "seconds": 3 * HOURS, "start": "2026-11-26T10:00:00.000Z", "end": "2026-11-26T13:00:00.000Z"}},
        "neutral": {"count": 1, "seconds": 4 * HOURS, "share": 0.25, "longest": {
            "seconds": 4 * HOURS, "start": "2026-11-26T20:00:00.000Z", "end": "2026-11-27T00:00:00.000Z"}},
    }


def test_the_emotion_in_force_at_from_counts_from_from_but_is_no_change(app, client, user):
    seed_events(app, user["id"], [
        ("2026-11-25T10:00", "angry"), ("2026-11-25T22:00", "sad"), ("2026-11-26T03:00", "happy"),
    ])
    body = get_stats(client, user, start="2026-11-26T00:00:00Z", to="2026-11-26T06:00:00Z", bucket="hour")
    assert [b["label"] for b in body["buckets"]] == [f"2026-11-26T0{h}:00" for h in range(6)]
    assert [b["emotions"] for b in body["buckets"]] == (
        [{"sad": {"count": 0, "seconds": HOURS}}] * 3 + [{"happy": {"count": 1, "seconds": HOURS}}]
        + [{"happy": {"count": 0, "seconds": HOURS}}] * 2
    )
    assert body["totals"]["sad"]["count"] == 0 and body["totals"]["sad"]["seconds"] == 3 * HOURS
    assert body["totals"]["sad"]["longest"]["start"] == "2026-11-26T00:00:00.000Z"
    assert "angry" not in body["totals"]
    assert body["tracked_seconds"] == 6 * HOURS


def test_time_before_the_first_event_is_none_and_empty_buckets_are_listed(app, client, user):
    seed_events(app, user["id"], [("2026-11-26T03:30", "fearful")])
    body = get_stats(client, user, start="2026-11-26T00:00Z", to="2026-11-26T05:00Z", bucket="hour")
    assert [b["emotions"] for b in body["buckets"]] == [
        {}, {}, {}, {"fearful": {"count": 1, "seconds": 1800.0}}, {"fearful": {"count": 0, "seconds": HOURS}},
    ]
    assert body["tracked_seconds"] == 5400.0 and body["totals"]["fearful"]["share"] == 1.0


def test_a_range_without_events_has_empty_buckets_and_no_totals(client, user):
    body = get_stats(client, user, start="2026-11-20", to="2026-11-23")
    assert [b["label"] for b in body["buckets"]] == ["2026-11-20", "2026-11-21", "2026-11-22"]
    assert all(b["emotions"] == {} for b in body["buckets"])
    assert body["totals"] == {} and body["tracked_seconds"] == 0.0


def test_the_last_emotion_ends_at_now_when_to_is_later(app, client, user):
    now = utcnow()
    seed_events(app, user["id"], [(now - timedelta(hours=2), "surprised")])
    body = get_stats(client, user, start=isoformat(now - timedelta(hours=3)), to=isoformat(now + timedelta(days=1)),
                     bucket="hour")
    total = body["totals"]["surprised"]
    assert total["seconds"] == pytest.approx(2 * HOURS, abs=10)
    assert body["tracked_seconds"] == total["seconds"]
    # The hours after now hold nothing.
    assert all(b["emotions"] == {} for b in body["buckets"][4:])


def test_default_range_ends_now(app, client, user):
    now = utcnow()
    seed_events(app, user["id"], [(now - timedelta(days=10), "sad"), (now - timedelta(hours=1), "happy")])
    body = get_stats(client, user)
    assert len(body["buckets"]) in (7, 8)
    assert body["totals"]["sad"]["seconds"] == pytest.approx(7 * 24 * HOURS - HOURS, abs=10)
    assert body["totals"]["happy"]["seconds"] == pytest.approx(HOURS, abs=10)
    assert len(get_stats(client, user, bucket="hour")["buckets"]) in (24, 25)
    assert len(get_stats(client, user, bucket="week")["buckets"]) in (12, 13)


@pytest.mark.parametrize(
    "start, to, starts, hours",
    [
        # Spring forward: the 29th has 23 hours.
        ("2026-03-28", "2026-03-31",
         ["2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"], [24, 23, 24]),
        # Fall back: the 25th has 25 hours.
        ("2026-10-24", "2026-10-27",
         ["2026-10-24T00:00:00+02:00", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"], [24, 25, 24]),
    ],
)
def test_day_buckets_are_local_days_across_dst(app, client, user, start, to, starts, hours):
    seed_events(app, user["id"], [("2026-01-01T00:00", "happy")])
    body = get_stats(client, user, start=start, to=to, tz="Europe/Paris")
    assert [b["start"] for b in body["buckets"]] == starts
    assert [b["label"] for b in body["buckets"]] == [s[:10] for s in starts]
    assert [seconds(b)["happy"] for b in body["buckets"]] == [h * HOURS for h in hours]
    assert body["tracked_seconds"] == sum(hours) * HOURS


def test_hour_buckets_skip_the_missing_hour_in_spring(app, client, user):
    seed_events(app, user["id"], [("2026-03-28T20:00", "happy"), ("2026-03-29T01:30", "sad")])
    body = get_stats(client, user, start="2026-03-29T00:00", to="2026-03-29T05:00", bucket="hour", tz="Europe/Paris")
    assert body["from"] == "2026-03-28T23:00:00.000Z" and body["to"] == "2026-03-29T03:00:00.000Z"
    assert [(b["label"], b["start"], b["emotions"]) for b in body["buckets"]] == [
        ("2026-03-29T00:00", "2026-03-29T00:00:00+01:00", {"happy": {"count": 0, "seconds": HOURS}}),
        ("2026-03-29T01:00", "2026-03-29T01:00:00+01:00", {"happy": {"count": 0, "seconds": HOURS}}),
        ("2026-03-29T03:00", "2026-03-29T03:00:00+02:00",
         {"happy": {"count": 0, "seconds": 1800.0}, "sad": {"count": 1, "seconds": 1800.0}}),
        ("2026-03-29T04:00", "2026-03-29T04:00:00+02:00", {"sad": {"count": 0, "seconds": HOURS}}),
    ]


def test_hour_buckets_repeat_the_doubled_hour_in_autumn(app, client, user):
    seed_events(app, user["id"], [("2026-10-25T00:30", "angry"), ("2026-10-25T01:15", "neutral")])
    body = get_stats(client, user, start="2026-10-25T01:00", to="2026-10-25T04:00", bucket="hour", tz="Europe/Paris")
    assert [(b["label"], b["start"], seconds(b)) for b in body["buckets"]] == [
        ("2026-10-25T01:00", "2026-10-25T01:00:00+02:00", {}),
        ("2026-10-25T02:00", "2026-10-25T02:00:00+02:00", {"angry": 1800.0}),
        ("2026-10-25T02:00", "2026-10-25T02:00:00+01:00", {"angry": 900.0, "neutral": 2700.0}),
        ("2026-10-25T03:00", "2026-10-25T03:00:00+01:00", {"neutral": HOURS}),
    ]


def test_week_buckets_start_on_monday(app, client, user):
    seed_events(app, user["id"], [("2026-10-30T00:00", "happy")])
    # Thursday 5 November to Thursday 19 November.
    body = get_stats(client, user, start="2026-11-05", to="2026-11-19", bucket="week")
    assert [b["label"] for b in body["buckets"]] == ["2026-11-02", "2026-11-09", "2026-11-16"]
    assert body["buckets"][0]["start"] == "2026-11-02T00:00:00+00:00"
    # Only the part inside the range counts.
    assert [seconds(b)["happy"] for b in body["buckets"]] == [4 * 24 * HOURS, 7 * 24 * HOURS, 3 * 24 * HOURS]


def test_consecutive_equal_emotions_form_one_stretch(app, client, user):
    seed_events(app, user["id"], [
        ("2026-11-26T10:00", "happy"), ("2026-11-26T11:00", "happy"), ("2026-11-26T12:00", "sad"),
        ("2026-11-26T12:30", "happy"), ("2026-11-26T13:00", "happy"), ("2026-11-26T14:00", "happy"),
        ("2026-11-26T15:00", "sad"),
    ])
    totals = get_stats(client, user, start="2026-11-26T09:00Z", to="2026-11-26T16:00Z")["totals"]
    assert totals["happy"]["count"] == 5 and totals["happy"]["seconds"] == 4.5 * HOURS
    assert totals["happy"]["longest"] == {
        "seconds": 2.5 * HOURS, "start": "2026-11-26T12:30:00.000Z", "end": "2026-11-26T15:00:00.000Z"}
    assert totals["sad"]["longest"] == {
        "seconds": HOURS, "start": "2026-11-26T15:00:00.000Z", "end": "2026-11-26T16:00:00.000Z"}
    # A stretch that began before `from` is clipped to the range.
    totals = get_stats(client, user, start="2026-11-26T10:30Z", to="2026-11-26T14:30Z")["totals"]
    assert totals["happy"]["longest"] == {
        "seconds": 2 * HOURS, "start": "2026-11-26T12:30:00.000Z", "end": "2026-11-26T14:30:00.000Z"}
    assert totals["happy"]["count"] == 4


def test_a_negative_duration_counts_as_zero(app, client, user):
    # Clock skew between hosts: seq 2 was stamped earlier than seq 1.
    seed_events(app, user["id"], [
        ("2026-11-26T12:00", "happy"), ("2026-11-26T11:00", "sad"), ("2026-11-26T13:00", "neutral"),
    ])
    totals = get_stats(client, user, start="2026-11-26T10:00Z", to="2026-11-26T14:00Z")["totals"]
    assert {e: (t["count"], t["seconds"]) for e, t in totals.items()} == {
        "happy": (1, 0.0), "sad": (1, 2 * HOURS), "neutral": (1, HOURS)}


def test_share_is_zero_when_nothing_is_tracked(app, client, user):
    now = utcnow()
    # Stamped ahead of this clock: a change in the range, but no time yet.
    seed_events(app, user["id"], [(now + timedelta(hours=1), "happy")])
    body = get_stats(client, user, start=isoformat(now - timedelta(hours=1)), to=isoformat(now + timedelta(hours=2)))
    assert body["tracked_seconds"] == 0.0
    assert body["totals"]["happy"]["count"] == 1 and body["totals"]["happy"]["share"] == 0.0


def test_other_users_events_never_count(app, client, auth, user):
    other = auth.login()["user"]["id"]
    seed_events(app, other, [("2026-11-26T00:00", "angry"), ("2026-11-26T06:00", "sad")])
    seed_events(app, user["id"], [("2026-11-26T12:00", "happy")])
    seed_events(app, other, [("2026-11-26T18:00", "disgusted")])
    body = get_stats(client, user, start="2026-11-26", to="2026-11-27")
    assert set(body["totals"]) == {"happy"} and body["tracked_seconds"] == 12 * HOURS


def test_wall_times_are_read_in_tz_and_offsets_win(app, client, user):
    seed_events(app, user["id"], [("2026-07-01T00:00", "happy")])
    body = get_stats(client, user, start="2026-07-10", to="2026-07-11", tz="America/New_York")
    assert body["from"] == "2026-07-10T04:00:00.000Z" and body["to"] == "2026-07-11T04:00:00.000Z"
    assert body["buckets"][0]["start"] == "2026-07-10T00:00:00-04:00"
    body = get_stats(client, user, start="2026-07-10T00:00:00+02:00", to="2026-07-11T00:00:00Z", tz="Asia/Tokyo")
    assert body["from"] == "2026-07-09T22:00:00.000Z" and body["totals"]["happy"]["seconds"] == 26 * HOURS
    # An unencoded "+" arrives as a space.
    response = client.get("/api/emotions/stats?from=2026-07-10T00:00:00+02:00&to=2026-07-11", headers=user["headers"])
    assert response.get_json()["from"] == "2026-07-09T22:00:00.000Z"


@pytest.mark.parametrize(
    "query, error, field",
    [
        ("from=yesterday", "invalid_parameter", "from"),
        ("to=2026-13-01", "invalid_parameter", "to"),
        ("from=2026-11-26T25:00", "invalid_parameter", "from"),
        ("from=", "invalid_parameter", "from"),
        ("to=" + "1" * 100, "invalid_parameter", "to"),
        ("from=0001-01-01&to=0001-01-02", "invalid_parameter", "from"),
        ("bucket=month", "invalid_parameter", "bucket"),
        ("bucket=", "invalid_parameter", "bucket"),
        ("tz=Mars/Olympus", "unknown_timezone", "tz"),
        ("tz=../../etc/passwd", "unknown_timezone", "tz"),
        ("tz=/etc/localtime", "unknown_timezone", "tz"),
        ("tz=Europe", "unknown_timezone", "tz"),
        ("tz=", "unknown_timezone", "tz"),
        ("from=2026-11-26&to=2026-11-26", "invalid_range", "from"),
        ("from=2026-11-27&to=2026-11-26", "invalid_range", "from"),
        ("from=2026-11-26T01:00:00%2B01:00&to=2026-11-26T00:00:00Z", "invalid_range", "from"),
        ("from=2026-01-01&to=2026-02-01T00:00:00.001&bucket=hour", "range_too_long", "from"),
        ("from=2026-01-01&to=2027-02-05T00:00:01&bucket=day", "range_too_long", "from"),
        ("from=2020-01-01&to=2025-01-05&bucket=week", "range_too_long", "from"),
    ],
)
def test_bad_parameters_are_refused(client, user, query, error, field):
    response = client.get(f"/api/emotions/stats?{query}", headers=user["headers"])
    assert response.status_code == 400
    body = response.get_json()
    assert (body["error"], body["field"], body["status"]) == (error, field, 400), body
    assert body["message"]


@pytest.mark.parametrize("bucket, days", [("hour", 31), ("day", 400), ("week", 1830)])
def test_the_range_caps_are_inclusive(client, user, bucket, days):
    start = utc("2020-01-01T00:00")
    body = get_stats(client, user, start=isoformat(start), to=isoformat(start + timedelta(days=days)), bucket=bucket)
    assert body["buckets"]
    assert stats.MAX_RANGE_DAYS[bucket] == days


def test_a_token_is_required(client):
    response = client.get("/api/emotions/stats")
    assert response.status_code == 401 and response.get_json()["error"] == "missing_token"


def test_rows_are_streamed_not_fetched_all_at_once(app, client, user):
    """Peak memory of computing stats stays far below what the list of the range's rows would take, and
    PostgreSQL reads them through a server-side cursor (its client-side result would sit outside Python's
    allocator, where tracemalloc cannot see it)."""
    start = utc("2026-11-01T00:00")
    emotions = ["happy", "sad", "angry", "neutral"]
    seed_events(app, user["id"], [(start + timedelta(minutes=5 * i), emotions[i % 4]) for i in range(6000)])
    end = start + timedelta(days=30)
    params = {"uid": int(user["id"]), "start": start, "end": end}
    cursors = []
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", lambda conn, cursor, *a: cursors.append(cursor))
        zone = ZoneInfo("UTC")

        def compute():
            return stats.summarize(int(user["id"]), start, end, "day", zone, utcnow(), emotions)

        compute()  # warm up: compiled statements, imports
        tracemalloc.start()
        body = compute()
        streamed_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

        tracemalloc.start()
        with db.engine.connect() as conn:
            rows = conn.execute(stats.EVENTS_WITH_ENDS, params).all()
        listed_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert len(rows) == 6000
    assert sum(t["count"] for t in body["totals"].values()) == 6000
    assert body["tracked_seconds"] == 30 * 24 * HOURS  # from the first event to `end`
    assert streamed_peak < listed_peak / 4, (streamed_peak, listed_peak)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        assert type(cursors[1]).__name__ == "ServerCursor"
    # One statement per computation.
    assert len(cursors) == 3
