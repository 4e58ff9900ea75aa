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
from types import SimpleNamespace

from sqlalchemy import bindparam, insert, select, update

from .models import EmotionEvent, User, event_payload
from .timeutil import utcnow

MAX_BATCH = 200

_users = User.__table__
_events = EmotionEvent.__table__
# Built once: SQLAlchemy then only looks up their compiled form.
BUMP_SEQ = (
    update(_users)
    .where(_users.c.id == bindparam("uid"))
    .values(last_seq=_users.c.last_seq + 1)
    .returning(_users.c.last_seq)
)
FIND_BY_MSG_ID = select(_events).where(_events.c.user_id == bindparam("uid"), _events.c.client_msg_id == bindparam("mid"))
GIVE_BACK_SEQ = update(_users).where(_users.c.id == bindparam("uid")).values(last_seq=_users.c.last_seq - 1)
INSERT_EVENT = insert(_events).returning(_events.c.id)


class Pending:
    """One caller's update, and then its outcome."""

    __slots__ = ("user_id", "emotion", "client_timestamp", "client_msg_id", "done", "result", "error", "lead")

    def __init__(self, user_id, emotion, client_timestamp, client_msg_id):
        self.user_id = user_id
        self.emotion = emotion
        self.client_timestamp = client_timestamp
        self.client_msg_id = client_msg_id
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

    def write(self, user_id, emotion, client_timestamp=None, client_msg_id=None):
        """Store one event; return (event dict, created). Raises what made its batch fail (SQLAlchemyError)."""
        item = Pending(user_id, emotion, client_timestamp, client_msg_id)
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
                for item in ordered:
                    item.result = self._write_one(conn, item)
        except Exception as exc:  # noqa: BLE001 - every waiting caller must get an outcome
            for item in batch:
                item.result, item.error = None, exc
            return
        # Announced only once committed, in commit order, so devices rarely see a seq out of order.
        self._publish([item.result[0] for item in ordered if item.result[1]])

    @staticmethod
    def _write_one(conn, item):
        seq = conn.execute(BUMP_SEQ, {"uid": item.user_id}).scalar_one()
        if item.client_msg_id is not None:
            original = conn.execute(FIND_BY_MSG_ID, {"uid": item.user_id, "mid": item.client_msg_id}).first()
            if original is not None:
                conn.execute(GIVE_BACK_SEQ, {"uid": item.user_id})
                return event_payload(original), False
        row = {
            "user_id": item.user_id,
            "emotion": item.emotion,
            "created_at": utcnow(),
            "client_timestamp": item.client_timestamp,
            "seq": seq,
            "client_msg_id": item.client_msg_id,
        }
        row["id"] = conn.execute(INSERT_EVENT, row).scalar_one()
        return event_payload(SimpleNamespace(**row)), True

