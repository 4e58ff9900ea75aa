"""Group commit: concurrent emotion updates of one process share a transaction.

There is no background thread. The first caller to find no batch in progress becomes the leader: it
lets the other ready greenlets run once (so that their updates can join), then writes everything
pending in one transaction, hands each caller its result, and passes leadership to the first caller
still waiting. A lone update is therefore written at once; under load, one commit serves many.

Rows are written in user-id order: every transaction takes user rows' locks in the same order, so
concurrent batches (other workers, other hosts) cannot deadlock on PostgreSQL.
"""
import threading
import time
from collections import Counter
from types import SimpleNamespace

from sqlalchemy import bindparam, cast, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import NoResultFound

from .models import EmotionEvent, User, event_payload
from .timeutil import utcnow

MAX_BATCH = 200

_users = User.__table__
_events = EmotionEvent.__table__
# Built once: SQLAlchemy then only looks up their compiled form.
# Each user's last_seq goes up by one; a user with n updates in the batch is in the first n rounds.
BUMP_SEQS = (
    update(_users)
    .where(_users.c.id.in_(bindparam("uids", expanding=True)))
    .values(last_seq=_users.c.last_seq + 1)
    .returning(_users.c.id, _users.c.last_seq)
)
# PostgreSQL's UPDATE locks rows in whatever order it meets them; locking them first, in id order,
# means concurrent batches (other workers, other hosts) cannot deadlock. (SQLite locks the whole
# database instead, and its driver would not open a transaction for a statement that starts WITH.)
_locked = (
    select(_users.c.id)
    .where(_users.c.id.in_(bindparam("uids", expanding=True)))
    .order_by(_users.c.id)
    .with_for_update()
    .cte("locked")
)
BUMP_SEQS_IN_ID_ORDER = (
    update(_users)
    .where(_users.c.id == _locked.c.id)
    .values(last_seq=_users.c.last_seq + 1)
    .returning(_users.c.id, _users.c.last_seq)
)
GIVE_BACK_SEQS = update(_users).where(_users.c.id == bindparam("uid")).values(last_seq=_users.c.last_seq - bindparam("n"))
# A superset of the (user, client_msg_id) pairs asked about; the exact pairs are picked out in Python.
FIND_BY_MSG_IDS = select(_events).where(
    _events.c.user_id.in_(bindparam("uids", expanding=True)),
    _events.c.client_msg_id.in_(bindparam("mids", expanding=True)),
)
# One statement for the whole batch. Rows come back in no set order (asking for one makes SQLite
# insert row by row); (user_id, seq) is unique and tells which id is whose.
INSERT_EVENTS = insert(_events).returning(_events.c.id, _events.c.user_id, _events.c.seq)
# The same for PostgreSQL, with one array per column: the statement is the same, and short, for any
# batch size, so psycopg converts it once; a VALUES list is a new, long statement per batch size,
# re-parsed every time once it has more than 50 parameters.
_PER_ROW = ("user_id", "emotion", "client_timestamp", "seq", "client_msg_id", "device", "source", "confidence")
_unnested = func.unnest(*[cast(bindparam(name), ARRAY(_events.c[name].type)) for name in _PER_ROW])
_unnested = _unnested.table_valued(*_PER_ROW).render_derived()
INSERT_EVENT_ARRAYS = (
    insert(_events)
    .from_select(
        [*_PER_ROW, "created_at"],
        select(*[_unnested.c[name] for name in _PER_ROW], bindparam("created_at", type_=_events.c.created_at.type)),
    )
    .returning(_events.c.id, _events.c.user_id, _events.c.seq)
)


class Pending:
    """One caller's update, and then its outcome."""

    __slots__ = (
        "user_id", "emotion", "client_timestamp", "client_msg_id", "device", "source", "confidence", "done",
        "result", "error", "lead",
    )

    def __init__(self, user_id, emotion, client_timestamp, client_msg_id, device=None, source=None, confidence=None):
        self.user_id = user_id
        self.emotion = emotion
        self.client_timestamp = client_timestamp
        self.client_msg_id = client_msg_id
        self.device = device
        self.source = source
        self.confidence = confidence
        self.done = threading.Event()
        self.result = None  # (event dict, created)
        self.error = None
        self.lead = False  # woken to lead the next batch rather than with a result


class GroupCommitter:
    """Writes emotion events in shared transactions; `write` blocks its caller until its row is committed."""

    def __init__(self, engine, publish, max_batch=MAX_BATCH):
        """`publish(events)` announces a list of committed events, in order."""
        self._engine = engine
        self._publish = publish
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._pending = []
        self._leading = False

    def write(self, user_id, emotion, client_timestamp=None, client_msg_id=None, device=None, source=None,
              confidence=None):
        """Store one event; return (event dict, created). Raises what made its batch fail (SQLAlchemyError).

        `source` and `confidence` are set for a detected emotion (see EmotionEvent)."""
        item = Pending(user_id, emotion, client_timestamp, client_msg_id, device, source, confidence)
        with self._lock:
            self._pending.append(item)
            lead = not self._leading
            self._leading = True
        while not lead:
            item.done.wait()
            if not item.lead:
                break
            item.done.clear()
            lead, item.lead = True, False
        if lead:
            self._lead_once()
        if item.error is not None:
            raise item.error
        return item.result

    def _lead_once(self):
        # Let every greenlet that is ready run first: those with an update to store join this batch.
        time.sleep(0)
        with self._lock:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        try:
            self._commit(batch)
        finally:
            with self._lock:
                if self._pending:
                    successor = self._pending[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._leading = False
            for item in batch:
                item.done.set()

    def _commit(self, batch):
        ordered = sorted(batch, key=lambda i: i.user_id)  # stable: one user's updates keep their order
        try:
            with self._engine.begin() as conn:
                _write_batch(conn, ordered)
        except Exception as exc:  # noqa: BLE001 - every waiting caller must get an outcome
            for item in batch:
                item.result, item.error = None, exc
            return
        # Announced only once committed, in commit order, so devices rarely see a seq out of order.
        self._publish([item.result[0] for item in ordered if item.result[1]])


def _write_batch(conn, items):
    """Store `items` (sorted by user) in the open transaction `conn`, setting each one's result.

    A handful of statements per batch, however many updates it holds: the seq reservation (one
    statement per update of the busiest user in the batch, usually one), one look-up of repeated
    client_msg_ids, one multi-row insert.
    """
    wanted = Counter(item.user_id for item in items)
    # Reserving seqs locks the users' rows: no other writer can store one of these users'
    # client_msg_ids until this batch commits.
    bump = BUMP_SEQS if conn.dialect.name == "sqlite" else BUMP_SEQS_IN_ID_ORDER
    last_seq = {}
    for round_ in range(1, max(wanted.values()) + 1):
        uids = [uid for uid, count in wanted.items() if count >= round_]
        last_seq.update(conn.execute(bump, {"uids": uids}).all())
    if len(last_seq) < len(wanted):
        raise NoResultFound(f"no such user: {sorted(wanted.keys() - last_seq.keys())}")
    next_seq = {uid: last_seq[uid] - count + 1 for uid, count in wanted.items()}
    seen = {}  # (user, client_msg_id) -> the stored row, or the row this batch stores first
    keyed = [item for item in items if item.client_msg_id is not None]
    if keyed:
        params = {"uids": list(wanted), "mids": list({item.client_msg_id for item in keyed})}
        for row in conn.execute(FIND_BY_MSG_IDS, params):
            seen[(row.user_id, row.client_msg_id)] = row
    now = utcnow()
    rows, repeats = [], []
    for item in items:
        key = (item.user_id, item.client_msg_id)
        if item.client_msg_id is not None and key in seen:
            repeats.append((item, seen[key]))  # answered with the original; uses no seq
            continue
        row = {
            "user_id": item.user_id,
            "emotion": item.emotion,
            "created_at": now,
            "client_timestamp": item.client_timestamp,
            "seq": next_seq[item.user_id],
            "client_msg_id": item.client_msg_id,
            "device": item.device,
            "source": item.source,
            "confidence": item.confidence,
        }
        next_seq[item.user_id] += 1
        rows.append((item, row))
        if item.client_msg_id is not None:
            seen[key] = row
    if rows:
        if conn.dialect.name == "postgresql":
            params = {name: [row[name] for _, row in rows] for name in _PER_ROW}
            stored = conn.execute(INSERT_EVENT_ARRAYS, {**params, "created_at": now})
        else:
            stored = conn.execute(INSERT_EVENTS, [row for _, row in rows])
        ids = {(uid, seq): event_id for event_id, uid, seq in stored}
        for item, row in rows:
            row["id"] = ids[(row["user_id"], row["seq"])]
            item.result = (event_payload(SimpleNamespace(**row)), True)
    for item, original in repeats:
        if isinstance(original, dict):  # stored earlier in this batch
            original = SimpleNamespace(**original)
        item.result = (event_payload(original), False)
    # Repeats reserved seqs they did not use: hand those back, so seqs stay without gaps.
    for uid, count in Counter(item.user_id for item, _ in repeats).items():
        conn.execute(GIVE_BACK_SEQS, {"uid": uid, "n": count})
