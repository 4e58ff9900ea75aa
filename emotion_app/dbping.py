"""Checking a pooled database connection before use, only when it has sat idle.

SQLAlchemy's `pool_pre_ping` sends a `SELECT 1` on every checkout: a round trip on every socket handshake
and every request. A connection handed back moments ago was alive moments ago, so the check is skipped
for one used within the last `IDLE_BEFORE_PING` seconds, as HikariCP does (its `aliveBypassWindowMs`,
500 ms). If the database restarts inside that window, the first statement on a dead connection fails
(a 503 or a `database_unavailable` frame); SQLAlchemy then invalidates every connection the pool held
before the failure, so the next checkout connects afresh.
"""
import time

from sqlalchemy import event, exc

IDLE_BEFORE_PING = 0.5  # seconds
USED_AT = "emotion_used_at"  # in each pool record's info dict


def ping_when_idle(engine):
    """Check each connection `engine`'s pool hands out, unless it was in use within IDLE_BEFORE_PING."""
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def used(_dbapi_conn, record):
        record.info[USED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def check(dbapi_conn, record, _proxy):
        if time.monotonic() - record.info.get(USED_AT, 0.0) < IDLE_BEFORE_PING:
            return
        try:
            alive = dialect.do_ping(dbapi_conn)
        except Exception as error:  # the driver's own error class: its dialect knows which mean "gone"
            if not dialect.is_disconnect(error, dbapi_conn, None):
                raise
            alive = False
        if not alive:
            # A dead connection most likely means the database restarted: every connection pooled before
            # now is replaced, and the pool connects afresh for this caller (up to three tries).
            raise exc.InvalidatePoolError("the pooled connection was closed by the database")
