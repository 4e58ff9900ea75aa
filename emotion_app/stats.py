"""Statistics: how long each emotion lasted, per local-time bucket (hour, day or week).

An emotion lasts from its event until the user's next event, or until now or the end of the range,
whichever is first. One SQL query pairs every event with the time of the next one (a window
function); its rows are read as a stream and cut into buckets on the way, so memory grows with the
number of buckets and emotions, never with the number of events.
"""
from bisect import bisect_right
from datetime import datetime, time, timedelta
from time import perf_counter, sleep

from sqlalchemy import bindparam, func, select, union_all

from .errors import ApiError
from .extensions import db
from .models import EmotionEvent
from .timeutil import isoformat
from .timerange import UTC, check_order, instant_arg, timezone_arg

# Without `from`: this long before `to`.
DEFAULT_SPAN = {"hour": timedelta(days=1), "day": timedelta(days=7), "week": timedelta(weeks=12)}
# The longest range per bucket size, in days: it bounds the answer (and the work) to a few hundred buckets.
MAX_RANGE_DAYS = {"hour": 31, "day": 400, "week": 1830}
ROWS_PER_FETCH = 500
# Seconds of work after which a long computation lets the rest of the worker run.
SHARE_AFTER = 0.02
HOUR = timedelta(hours=1)

_events = EmotionEvent.__table__
_columns = (_events.c.seq, _events.c.emotion, _events.c.created_at)
_mine = _events.c.user_id == bindparam("uid")
# The event in force at `from` (the latest before it), found through the (user_id, created_at) index ...
_carried_in = (
    select(*_columns)
    .where(_mine, _events.c.created_at < bindparam("start"))
    .order_by(_events.c.created_at.desc(), _events.c.seq.desc())
    .limit(1)
    .subquery("carried_in")
)
# ... and every event inside the range; each paired with the time of the one after it.
_in_range = union_all(
    select(_carried_in),
    select(*_columns).where(_mine, _events.c.created_at >= bindparam("start"), _events.c.created_at < bindparam("end")),
).subquery("in_range")
EVENTS_WITH_ENDS = select(
    _in_range.c.emotion,
    _in_range.c.created_at,
    func.lead(_in_range.c.created_at, type_=_events.c.created_at.type).over(order_by=_in_range.c.seq).label("ended_at"),
).order_by(_in_range.c.seq)


def parse_args(args, bucket, now):
    """The range of a statistics request with `bucket`s (checked already): (from, to, zone), or the 400 that
    explains."""
    zone = timezone_arg(args)
    start, end = instant_arg(args, "from", zone), instant_arg(args, "to", zone) or now
    start = start or end - DEFAULT_SPAN[bucket]
    check_order(start, end)
    if end - start > timedelta(days=MAX_RANGE_DAYS[bucket]):
        raise ApiError(
            400,
            "range_too_long",
            f"With {bucket} buckets the range may span at most {MAX_RANGE_DAYS[bucket]} days",
            field="from",
        )
    return start, end, zone


def summarize(user_id, start, end, bucket, zone, now, emotions):
    """The statistics answer for the user's events in [start, end), cut into `bucket`s of local time in `zone`."""
    edges = bucket_edges(start, end, bucket, zone)
    tally = _Tally(edges, start, end, min(end, now))
    # A connection of its own for one statement. On PostgreSQL, yield_per declares a server-side cursor
    # (rows arrive ROWS_PER_FETCH at a time; the cursor lives in a transaction that ends with the
    # connection); SQLite steps through its result as it is read anyway.
    with db.engine.connect() as conn:
        rows = conn.execution_options(yield_per=ROWS_PER_FETCH).execute(
            EVENTS_WITH_ENDS, {"uid": user_id, "start": start, "end": end}
        )
        turn = perf_counter() + SHARE_AFTER
        for n, (emotion, created_at, ended_at) in enumerate(rows, start=1):
            tally.add(emotion, created_at, ended_at)
            if n % 100 == 0 and perf_counter() > turn:
                # A long range is seconds of CPU: give the worker's sockets and requests a turn now and
                # then (SQLite's reads never wait on I/O, so nothing else would). A sleep, unlike
                # sleep(0), lets gevent's loop poll for I/O.
                sleep(0.001)
                turn = perf_counter() + SHARE_AFTER
    tally.close_stretch()
    return {
        "from": isoformat(start),
        "to": isoformat(end),
        "bucket": bucket,
        "tz": zone.key,
        "emotions": list(emotions),
        "buckets": [_bucket(edge, bucket, zone, cells) for edge, cells in zip(edges, tally.cells)],
        **tally.totals(),
    }


def bucket_edges(start, end, bucket, zone):
    """The UTC instants where buckets begin, from the one holding `start`, plus the end of the last one."""
    edges = [_floor(start, bucket, zone)]
    while edges[-1] < end:
        edges.append(_next(edges[-1], bucket, zone))
    return edges


def _midnight(day, zone):
    # A midnight that a DST change skips maps to the first instant of that day.
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _floor(moment, bucket, zone):
    local = moment.astimezone(zone)
    if bucket == "hour":
        return min(moment, local.replace(minute=0, second=0, microsecond=0).astimezone(UTC))
    day = local.date()
    if bucket == "week":
        day -= timedelta(days=day.weekday())
    return _midnight(day, zone)


def _next(edge, bucket, zone):
    if bucket == "hour":
        # A real hour later, unless the zone's offset moved by a part of an hour: then the next whole local hour.
        later = edge + HOUR
        whole = later.astimezone(zone).replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        return whole if whole > edge else later
    days = 7 if bucket == "week" else 1
    return _midnight(edge.astimezone(zone).date() + timedelta(days=days), zone)


def _bucket(edge, bucket, zone, cells):
    local = edge.astimezone(zone)
    label = local.strftime("%Y-%m-%dT%H:00") if bucket == "hour" else local.date().isoformat()
    return {
        "start": local.isoformat(),
        "label": label,
        "emotions": {e: {"count": n, "seconds": _seconds(t)} for e, (n, t) in cells.items()},
    }


def _seconds(delta):
    return round(delta.total_seconds(), 3)


class _Tally:
    """Counts and durations per bucket and in total, and the longest stretch of each emotion."""

    def __init__(self, edges, start, end, cutoff):
        self.edges, self.start, self.end, self.cutoff = edges, start, end, cutoff
        self.cells = [{} for _ in edges[:-1]]
        self.sums = {}
        self.longest = {}
        self.stretch = None  # [emotion, start, end, duration] of the run of equal emotions being read

    def add(self, emotion, created_at, ended_at):
        """Count one event (rows come in seq order) and spread its clipped duration over the buckets."""
        if self.start <= created_at < self.end:
            index = bisect_right(self.edges, created_at) - 1
            self._cell(self.cells[index], emotion)[0] += 1
            self._cell(self.sums, emotion)[0] += 1
        # Only [from, min(to, now)) counts; an event stamped after the next one (clock skew) lasts 0.
        lo = max(created_at, self.start)
        hi = max(lo, min(ended_at or self.cutoff, self.cutoff))
        if hi > lo:
            self._spread(emotion, lo, hi)
        if self.stretch and self.stretch[0] == emotion:
            self.stretch[2] = hi
            self.stretch[3] += hi - lo
        else:
            self.close_stretch()
            self.stretch = [emotion, lo, hi, hi - lo]

    def close_stretch(self):
        """Keep the stretch just ended if it is its emotion's longest so far (the earliest wins a tie)."""
        if self.stretch:
            emotion, *rest = self.stretch
            if emotion not in self.longest or rest[2] > self.longest[emotion][2]:
                self.longest[emotion] = rest
        self.stretch = None

    def totals(self):
        """The `totals` and `tracked_seconds` of the answer."""
        tracked = sum((t for _, t in self.sums.values()), timedelta())
        totals = {}
        for emotion, (count, spent) in self.sums.items():
            first, last, duration = self.longest[emotion]
            totals[emotion] = {
                "count": count,
                "seconds": _seconds(spent),
                "share": round(spent / tracked, 4) if tracked else 0.0,
                "longest": {"seconds": _seconds(duration), "start": isoformat(first), "end": isoformat(last)},
            }
        return {"totals": totals, "tracked_seconds": _seconds(tracked)}

    def _spread(self, emotion, lo, hi):
        index = bisect_right(self.edges, lo) - 1
        self._cell(self.sums, emotion)[1] += hi - lo
        while lo < hi:
            cut = min(hi, self.edges[index + 1])
            self._cell(self.cells[index], emotion)[1] += cut - lo
            lo, index = cut, index + 1

    @staticmethod
    def _cell(cells, emotion):
        cell = cells.get(emotion)
        if cell is None:
            cell = cells[emotion] = [0, timedelta()]
        return cell
