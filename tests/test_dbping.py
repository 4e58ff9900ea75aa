"""Pooled PostgreSQL connections are checked before use only when they sat idle, and a database restart
(here: its backends terminated) costs at most the statements already on their way."""
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from emotion_app import create_app, dbping
from emotion_app.extensions import db, read_connection
from tests.conftest import TEST_SECRETS

PAST_THE_WINDOW = dbping.IDLE_BEFORE_PING + 0.1
BACKEND = sa.text("SELECT pg_backend_pid()")


@pytest.fixture
def pg_app(postgres_template):
    app = create_app({"SQLALCHEMY_DATABASE_URI": postgres_template, "TESTING": True, **TEST_SECRETS})
    with app.app_context():
        yield app
        db.engine.dispose()


def terminate(admin, *pids):
    with admin.connect() as conn:
        for pid in pids:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()


def test_the_pool_does_not_ping_on_every_checkout(pg_app):
    assert not db.engine.pool._pre_ping


def test_a_connection_that_sat_idle_is_checked_and_a_dead_one_replaced(pg_app, postgres_server):
    with read_connection() as conn:
        dead = conn.execute(BACKEND).scalar()
    terminate(postgres_server, dead)
    time.sleep(PAST_THE_WINDOW)

    with read_connection() as conn:
        assert conn.execute(BACKEND).scalar() != dead


def test_a_connection_used_moments_ago_is_trusted_and_only_its_statement_fails(pg_app, postgres_server):
    with read_connection() as conn:
        dead = conn.execute(BACKEND).scalar()
    terminate(postgres_server, dead)

    with pytest.raises(DBAPIError) as failure, read_connection() as conn:
        conn.execute(BACKEND)  # no check before it: the connection was handed back within the window
    assert failure.value.connection_invalidated
    with read_connection() as conn:
        assert conn.execute(BACKEND).scalar() != dead


def test_one_dead_connection_found_replaces_every_older_one(pg_app, postgres_server):
    pool = db.engine.pool
    first, second = pool.connect(), pool.connect()
    pids = [c.dbapi_connection.execute("SELECT pg_backend_pid()").fetchone()[0] for c in (first, second)]
    first.close()
    time.sleep(PAST_THE_WINDOW)  # the first sits idle: checked on its next checkout
    second.close()  # the second was used moments ago: trusted
    terminate(postgres_server, *pids)

    again_first = pool.connect()  # the pool hands connections out oldest first: the checked one found dead...
    again_second = pool.connect()  # ...so the trusted one, pooled before that, is replaced too
    try:
        for conn in (again_first, again_second):
            assert conn.dbapi_connection.execute("SELECT pg_backend_pid()").fetchone()[0] not in pids
    finally:
        again_first.close()
        again_second.close()
