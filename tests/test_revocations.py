"""The worker's cache of tokens found not revoked: what it keeps, when it forgets, and that a token's later
requests and handshakes skip the database while logouts and password changes still take effect at once."""
import threading
import uuid
from types import SimpleNamespace

import pytest
from sqlalchemy import event

from emotion_app.broker.redis import RedisBroker
from emotion_app.extensions import db
from emotion_app.revocations import RevocationCache
from tests.conftest import PASSWORD, Auth, wait_until
from tests.test_broker import wait_listening

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "x" * 24}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def listening_broker(shared=True):
    """A broker stand-in whose epoch the test sets (None: its listener is away)."""
    broker = SimpleNamespace(shared=shared, current=1)
    broker.epoch = lambda: broker.current
    return broker


# ------------------------------------------------------------------------------------------- the cache


def test_a_token_is_known_until_a_revocation_of_its_user_arrives():
    cache = RevocationCache(listening_broker(), 60)
    assert not cache.allows(7, "jti-a", "sid-a", 0)
    cache.remember(cache.mark(), 7, "jti-a", "sid-a", 0)
    cache.remember(cache.mark(), 7, "jti-b", "sid-b", 0)
    cache.remember(cache.mark(), 8, "jti-c", "sid-c", 0)
    assert cache.allows(7, "jti-a", "sid-a", 0) and cache.allows(8, "jti-c", "sid-c", 0) and len(cache) == 3
    assert not cache.allows(7, "jti-x", "sid-a", 0)  # another token of the session: never checked here
    cache.note({"kind": "event", "user_id": "7", "event": {}})
    assert cache.allows(7, "jti-a", "sid-a", 0)
    # A logout of one session forgets every token of the user (whichever it names); other users keep theirs.
    cache.note({"kind": "revoke", "user_id": "7", "jti": "jti-b", "sid": "sid-b"})
    assert not cache.allows(7, "jti-a", "sid-a", 0) and not cache.allows(7, "jti-b", "sid-b", 0)
    assert cache.allows(8, "jti-c", "sid-c", 0) and len(cache) == 1
    cache.note({"kind": "revoke", "user_id": "8", "all": True})
    assert not cache.allows(8, "jti-c", "sid-c", 0) and len(cache) == 0


def test_a_revocation_that_arrives_during_the_read_keeps_the_answer_out():
    cache = RevocationCache(listening_broker(), 60)
    mark = cache.mark()  # the read starts: the token is not revoked yet
    cache.note({"kind": "revoke", "user_id": "7", "jti": "jti-a", "sid": "sid-a"})  # logged out meanwhile
    cache.remember(mark, 7, "jti-a", "sid-a", 0)  # the read's now stale answer
    assert not cache.allows(7, "jti-a", "sid-a", 0) and len(cache) == 0
    # A read that starts after the revocation was noted is kept as usual.
    cache.remember(cache.mark(), 7, "jti-b", "sid-b", 0)
    assert cache.allows(7, "jti-b", "sid-b", 0)


def test_an_unclear_revocation_forgets_everyone():
    cache = RevocationCache(listening_broker(), 60)
    cache.remember(cache.mark(), 7, "jti-a", "sid-a", 0)
    cache.note({"kind": "revoke", "user_id": None, "all": True})
    assert len(cache) == 0


def test_nothing_is_kept_or_used_unless_the_broker_hears_every_message():
    broker = listening_broker()
    broker.current = None  # the listener has not subscribed yet
    cache = RevocationCache(broker, 60)
    cache.remember(cache.mark(), 7, "jti-a", "sid-a", 0)
    assert len(cache) == 0 and not cache.allows(7, "jti-a", "sid-a", 0)

    broker.current = 1
    cache.remember(cache.mark(), 7, "jti-a", "sid-a", 0)
    assert cache.allows(7, "jti-a", "sid-a", 0)
    broker.current = None  # the connection is lost: a revocation may be lost with it
    assert not cache.allows(7, "jti-a", "sid-a", 0) and len(cache) == 0
    cache.remember(cache.mark(), 7, "jti-a", "sid-a", 0)
    assert len(cache) == 0

    cache.remember(cache.mark(), 7, "jti-a", "sid-a", 0)
    broker.current = 1
    cache.remember(cache.mark(), 7, "jti-a", "sid-a", 0)
    mark = cache.mark()
    broker.current = 2  # lost and back between two checks: what was kept may be stale
    assert not cache.allows(7, "jti-a", "sid-a", 0) and len(cache) == 0
    cache.remember(mark, 7, "jti-b", "sid-b", 0)  # read while the old connection was going away
    assert len(cache) == 0
    cache.remember(cache.mark(), 7, "jti-b", "sid-b", 0)
    assert cache.allows(7, "jti-b", "sid-b", 0)


def test_entries_expire_and_the_cache_is_bounded():
    clock = Clock()
    cache = RevocationCache(listening_broker(), 60, max_tokens=3, clock=clock)
    cache.remember(cache.mark(), 7, "jti-a", "sid-a", 0)
    clock.now += 59.9
    assert cache.allows(7, "jti-a", "sid-a", 0)
    cache.remember(cache.mark(), 7, "jti-b", "sid-b", 0)  # joins the user's entry, which keeps its age
    clock.now += 0.1
    assert not cache.allows(7, "jti-a", "sid-a", 0) and not cache.allows(7, "jti-b", "sid-b", 0)
    assert len(cache) == 0

    for n in range(3):
        cache.remember(cache.mark(), n, "jti", "sid", 0)
    assert len(cache) == 3
    cache.remember(cache.mark(), 9, "jti", "sid", 0)  # one more than the bound: start over
    assert len(cache) == 1 and cache.allows(9, "jti", "sid", 0) and not cache.allows(0, "jti", "sid", 0)


def test_a_new_token_version_replaces_the_users_entry():
    cache = RevocationCache(listening_broker(), 60)
    cache.remember(cache.mark(), 7, "jti-a", "sid-a", 0)
    # The password was changed outside the app (no revoke message): a new token reads version 1.
    cache.remember(cache.mark(), 7, "jti-b", "sid-b", 1)
    assert cache.allows(7, "jti-b", "sid-b", 1) and not cache.allows(7, "jti-a", "sid-a", 0) and len(cache) == 1


def test_a_cache_that_is_off_keeps_and_knows_nothing():
    assert not RevocationCache(listening_broker(), 0).allows(7, "jti-a", "sid-a", 0)
    zero = RevocationCache(listening_broker(), 0)
    zero.remember(zero.mark(), 7, "jti-a", "sid-a", 0)
    assert len(zero) == 0


def test_beside_other_workers_the_in_process_broker_turns_the_caches_off(make_app, redis_url):
    # The in-process broker hears its own worker only: beside others, tokens and first states are read.
    alone = make_app()
    known, states = alone.extensions["emotion_revocations"], alone.extensions["emotion_hub"].states
    alone.extensions["emotion_workers"](1)
    known.remember(known.mark(), 7, "jti-a", "sid-a", 0)
    states.confirm(states.reading("7"), "7", None, 0)
    assert known.allows(7, "jti-a", "sid-a", 0) and states.get("7") == (None, 0)
    alone.extensions["emotion_workers"](3)
    assert not known.allows(7, "jti-a", "sid-a", 0) and len(known) == 0
    assert states.get("7") is None and len(states) == 0
    # A shared broker hears every worker: both stay on.
    shared = make_app(REDIS_URL=redis_url, BROKER_PREFIX=f"t{uuid.uuid4().hex[:8]}")
    shared.extensions["emotion_workers"](3)
    assert shared.extensions["emotion_revocations"].lifetime and shared.extensions["emotion_hub"].states.lifetime


def test_the_cache_follows_the_redis_listener(private_redis):
    broker = RedisBroker(private_redis.url, f"test_{uuid.uuid4().hex[:8]}")
    cache = RevocationCache(broker, 60)
    try:
        # The listener starts with the process's first socket: until it has subscribed, nothing is kept.
        cache.remember(cache.mark(), 7, "jti-a", "sid-a", 0)
        assert len(cache) == 0 and broker.epoch() is None
        broker.start()
        wait_listening(broker)
        cache.remember(cache.mark(), 7, "jti-a", "sid-a", 0)
        assert cache.allows(7, "jti-a", "sid-a", 0)

        private_redis.stop()
        wait_until(lambda: not broker.listening, timeout=5, message="the listener to notice")
        assert not cache.allows(7, "jti-a", "sid-a", 0) and len(cache) == 0
        cache.remember(cache.mark(), 7, "jti-a", "sid-a", 0)
        assert len(cache) == 0

        private_redis.start()
        wait_listening(broker, timeout=15)
        assert not cache.allows(7, "jti-a", "sid-a", 0) and len(cache) == 0  # starts empty
        cache.remember(cache.mark(), 7, "jti-a", "sid-a", 0)
        assert cache.allows(7, "jti-a", "sid-a", 0)
    finally:
        broker.stop()
    assert broker.epoch() is None


# ------------------------------------------------------------------------------------------- in the app


class Statements:
    """The SQL statements an app's engine runs, as they run."""

    def __init__(self, app):
        self.seen = []
        with app.app_context():
            event.listen(db.engine, "before_cursor_execute", self._record)

    def _record(self, _conn, _cursor, statement, *_args):
        self.seen.append(statement)

    def during(self, action):
        self.seen.clear()
        result = action()
        return result, list(self.seen)


def handshake_checks(app, token):
    """Run a socket's checks before the handshake (ws.authenticate), without a socket; return the refusal."""
    with app.test_request_context("/api/ws", query_string={"token": token}, headers=UPGRADE):
        try:
            return app.preprocess_request()
        except Exception as exc:  # noqa: BLE001 - turned into the response a device would get
            return app.make_response(app.handle_user_exception(exc))


def test_a_token_checked_once_is_not_read_again(make_app):
    app = make_app()
    client = app.test_client()
    statements = Statements(app)
    tokens = Auth(client).login()
    bearer = Auth.bearer(tokens["access_token"])

    response, seen = statements.during(lambda: client.post("/api/ws-ticket", headers=bearer))
    assert response.status_code == 200 and len(seen) == 1 and "revoked_tokens" in seen[0]
    # The same token again, over HTTP and at a socket's handshake: no SQL at all.
    for _ in range(3):
        response, seen = statements.during(lambda: client.post("/api/ws-ticket", headers=bearer))
        assert response.status_code == 200 and seen == []
    refusal, seen = statements.during(lambda: handshake_checks(app, tokens["access_token"]))
    assert refusal is None and seen == []

    # The refresh token is its own token: read once, then known too.
    refresh = Auth.bearer(tokens["refresh_token"])
    assert len(statements.during(lambda: client.post("/api/auth/refresh", headers=refresh))[1]) == 1
    assert statements.during(lambda: client.post("/api/auth/refresh", headers=refresh))[1] == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_off_every_token_is_read(make_app):
    app = make_app(REVOCATION_CACHE_SECONDS=0)
    client = app.test_client()
    statements = Statements(app)
    bearer = Auth.bearer(Auth(client).login()["access_token"])
    for _ in range(2):
        response, seen = statements.during(lambda: client.post("/api/ws-ticket", headers=bearer))
        assert response.status_code == 200 and len(seen) == 1


# The default deployment: one worker, SQLite, the in-process broker.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_logout_and_password_change_refuse_known_tokens_at_once(make_app):
    app = make_app()
    client = app.test_client()
    statements = Statements(app)
    auth = Auth(client)
    tokens = auth.login()
    username = tokens["user"]["username"]
    other_session = auth.login(username)
    for token in (tokens["access_token"], other_session["access_token"]):
        for _ in range(2):
            assert client.post("/api/ws-ticket", headers=Auth.bearer(token)).status_code == 200
    assert len(app.extensions["emotion_revocations"]) == 2

    bearer = Auth.bearer(tokens["access_token"])
    assert client.post("/api/auth/logout", headers=bearer).status_code == 200
    for _ in range(2):  # refusals are read from the database every time
        response, seen = statements.during(lambda: client.post("/api/ws-ticket", headers=bearer))
        assert response.status_code == 401 and len(seen) == 1
        assert response.get_json() == {
            "error": "token_revoked", "message": "Token has been revoked: log in again", "status": 401
        }
    refusal = handshake_checks(app, tokens["access_token"])
    assert refusal.status_code == 401 and refusal.get_json()["error"] == "token_revoked"

    # The logout forgot every token of the user: the other session's is read and known again.
    for _ in range(2):
        assert client.post("/api/ws-ticket", headers=Auth.bearer(other_session["access_token"])).status_code == 200
    assert len(app.extensions["emotion_revocations"]) == 1
    changed = client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": "a new password entirely"},
        headers=Auth.bearer(other_session["access_token"]),
    )
    assert changed.status_code == 200
    response = client.post("/api/ws-ticket", headers=Auth.bearer(other_session["access_token"]))
    assert response.status_code == 401 and response.get_json() == {
        "error": "token_revoked",
        "message": "Token was revoked by a password change: log in with the new password",
        "status": 401,
    }
    assert client.post("/api/ws-ticket", headers=Auth.bearer(changed.get_json()["access_token"])).status_code == 200


# Several workers need PostgreSQL and Redis.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_revocation_made_by_another_process_reaches_the_cache(make_app, redis_url):
    # Two apps on one database and one Redis channel stand for two workers.
    prefix = f"test_{uuid.uuid4().hex[:8]}"
    here, there = (make_app(REDIS_URL=redis_url, BROKER_PREFIX=prefix) for _ in range(2))
    brokers = [app.extensions["emotion_broker"] for app in (here, there)]
    try:
        for broker in brokers:
            broker.start()  # what a worker's first socket does
            wait_listening(broker)
        auth = Auth(here.test_client())
        tokens = auth.login()
        other_session = auth.login(tokens["user"]["username"])
        elsewhere = there.test_client()
        statements = Statements(there)

        def known_there(token):
            elsewhere.post("/api/ws-ticket", headers=Auth.bearer(token))
            response, seen = statements.during(lambda: elsewhere.post("/api/ws-ticket", headers=Auth.bearer(token)))
            assert response.status_code == 200 and seen == []

        def refused(token):
            return elsewhere.post("/api/ws-ticket", headers=Auth.bearer(token)).status_code == 401

        known_there(tokens["access_token"])
        logout = here.test_client().post("/api/auth/logout", headers=Auth.bearer(tokens["access_token"]))
        assert logout.status_code == 200
        wait_until(lambda: refused(tokens["access_token"]), timeout=1, message="the logout to reach the other app")
        known_there(other_session["access_token"])
        changed = here.test_client().post(
            "/api/auth/password",
            json={"current_password": PASSWORD, "new_password": "a new password entirely"},
            headers=Auth.bearer(other_session["access_token"]),
        )
        assert changed.status_code == 200
        wait_until(lambda: refused(other_session["access_token"]), timeout=1, message="the change to reach it")
    finally:
        # Together: each listener takes up to a second to notice.
        stopping = [threading.Thread(target=broker.stop) for broker in brokers]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
