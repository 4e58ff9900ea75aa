"""Scale-out against real services: several gunicorn servers and workers sharing PostgreSQL and Redis,
and what happens when Redis or PostgreSQL goes away and comes back."""
import json
import socket
import time
import uuid

import pytest

from tests.conftest import PASSWORD, free_port, recv_close, recv_json, wait_until
from tests.tcpproxy import TcpProxy
from tests.test_ws import assert_quiet


def drain_updates(ws, quiet=0.5):
    """Read emotion updates until none arrives for `quiet` seconds; fail on anything else."""
    frames = []
    while True:
        try:
            frame = recv_json(ws, timeout=quiet)
        except socket.timeout:
            return frames
        except Exception as exc:  # websocket-client's own timeout type
            if "timed out" in str(exc):
                return frames
            raise
        assert frame["type"] == "emotion_update", frame
        frames.append(frame)


@pytest.fixture(scope="module")
def cluster(server_factory, postgres_databases, redis_url):
    """Two one-worker servers (two hosts) and a two-worker server, on one PostgreSQL and one Redis."""
    shared = {
        "DATABASE_URL": postgres_databases(),
        "REDIS_URL": redis_url,
        "BROKER_PREFIX": f"test_{uuid.uuid4().hex[:8]}",
    }
    return [
        server_factory(**shared, WEB_CONCURRENCY=1),
        server_factory(**shared, WEB_CONCURRENCY=1),
        server_factory(**shared, WEB_CONCURRENCY=2),
    ]


def test_devices_anywhere_get_each_update_exactly_once(cluster):
    host_a, host_b, two_workers = cluster
    tokens = host_a.login()
    token = tokens["access_token"]
    devices = [host_a.device(token)[0], host_b.device(token, via="header")[0]]
    # The kernel decides which worker accepts a connection: connect until both workers hold devices.
    for _ in range(40):
        devices.append(two_workers.device(token)[0])
        per_worker = two_workers.sockets_per_worker()
        if len(per_worker) == 2 and min(per_worker.values()) >= 2:
            break
    assert len(per_worker) == 2 and min(per_worker.values()) >= 2, per_worker
    strangers = [server.device(server.login()["access_token"])[0] for server in cluster]

    devices[0].send(json.dumps({"type": "emotion_update", "emotion": "happy"}))
    devices[1].send(json.dumps({"type": "emotion_update", "emotion": "sad"}))
    devices[-1].send(json.dumps({"type": "emotion_update", "emotion": "angry"}))
    status, _ = two_workers.request("POST", "/api/emotions", {"emotion": "neutral"}, token=token)
    assert status == 201

    # The socket updates are stored a moment after they are sent: wait (bounded) until all four are.
    def stored_ids():
        return sorted(event["id"] for event in host_b.request("GET", "/api/emotions", token=token)[1]["events"])

    wait_until(lambda: len(stored_ids()) >= 4, timeout=10, message="the four updates to be stored")
    stored = stored_ids()
    assert len(stored) == 4
    for ws in devices:
        received = drain_updates(ws)
        assert sorted(f["id"] for f in received) == stored, "each device gets each update exactly once"
        assert {f["user_id"] for f in received} == {tokens["user"]["id"]}
    for ws in strangers:
        assert_quiet(ws)
    for ws in devices + strangers:
        ws.close()


def cache_hits(server):
    """How many revocation checks the server's workers answered from their caches."""
    lines = server.request("GET", "/metrics")[1].splitlines()
    prefix = 'emotion_app_revocation_checks_total{source="cache"}'
    return sum(float(line.split()[-1]) for line in lines if line.startswith(prefix))


def devices_on_every_worker(host, two_workers, token):
    """Open sockets with `token` on `host` and on both workers of `two_workers`: a worker's first socket
    starts its broker listener, without which it keeps no token in its cache."""
    sockets = [host.device(token)[0]]
    for _ in range(40):
        sockets.append(two_workers.device(token)[0])
        per_worker = two_workers.sockets_per_worker()
        if len(per_worker) == 2 and min(per_worker.values()) >= 1:
            return sockets
    raise AssertionError(f"the sockets did not reach both workers: {per_worker}")


def known_everywhere(servers, token):
    """Use `token` on every server twice (a server listed again: more of its workers), so that each
    worker answers it from its cache; check that they did."""
    before = {server: cache_hits(server) for server in set(servers)}
    for server in servers + servers:
        assert server.request("POST", "/api/ws-ticket", token=token)[0] == 200
    assert all(cache_hits(server) > hits for server, hits in before.items())


def refused_everywhere(servers, token, message):
    """Whether every server (a server listed twice: more of its workers) refuses `token` with `message`."""
    answers = [server.request("POST", "/api/ws-ticket", token=token) for server in servers]
    return all(status == 401 and body["message"] == message for status, body in answers)


def held_first_states(server):
    """How many new sockets got their first state from what their worker holds (summed over workers)."""
    prefix = 'emotion_app_first_states_total{source="held"}'
    return sum(float(line.split()[-1]) for line in server.request("GET", "/metrics")[1].splitlines()
               if line.startswith(prefix))


def test_the_state_a_worker_holds_follows_updates_made_on_other_hosts(cluster):
    host_a, host_b, two_workers = cluster
    token = host_a.login()["access_token"]
    sockets = devices_on_every_worker(host_b, two_workers, token)
    for emotion in ("happy", "sad"):
        # Made on a host with no socket of the user: it reaches the others only through Redis.
        status, event = host_a.request("POST", "/api/emotions", {"emotion": emotion}, token=token)
        assert status == 201
        for ws in sockets:
            assert recv_json(ws) == {"type": "emotion_update", **event}
        held = {server: held_first_states(server) for server in (host_b, two_workers)}
        for server in (host_b, host_b, two_workers, two_workers, two_workers):
            ws, hello = server.device(token)
            assert hello["current"] == event and hello["last_event_id"] == event["id"]
            sockets.append(ws)
        # Each worker holds the user from its first socket (or the first after its listener subscribed) on.
        assert held_first_states(host_b) > held[host_b] and held_first_states(two_workers) > held[two_workers]
    for ws in sockets:
        ws.close()


def test_logout_on_one_host_closes_sockets_on_the_others(cluster):
    host_a, host_b, two_workers = cluster
    tokens = host_a.login()
    sockets = devices_on_every_worker(host_b, two_workers, tokens["access_token"])
    others = [host_b] + [two_workers] * 6
    known_everywhere(others, tokens["access_token"])
    assert host_a.request("POST", "/api/auth/logout", token=tokens["access_token"])[0] == 200
    wait_until(
        lambda: refused_everywhere(others, tokens["access_token"], "Token has been revoked: log in again"),
        timeout=1,
        message="every worker to refuse the logged-out token",
    )
    for ws in sockets:
        code, _reason, frames = recv_close(ws)
        assert code == 4403 and [f["code"] for f in frames] == ["token_revoked"]


def test_a_password_change_on_one_host_refuses_known_tokens_on_the_others(cluster):
    host_a, host_b, two_workers = cluster
    tokens = host_a.login()
    elsewhere = host_b.login(tokens["user"]["username"])["access_token"]  # another session of the user
    sockets = devices_on_every_worker(host_b, two_workers, elsewhere)
    others = [host_b] + [two_workers] * 6
    known_everywhere(others, elsewhere)
    body = {"current_password": PASSWORD, "new_password": "a new password entirely"}
    assert host_a.request("POST", "/api/auth/password", body, token=tokens["access_token"])[0] == 200
    wait_until(
        lambda: refused_everywhere(
            others, elsewhere, "Token was revoked by a password change: log in with the new password"
        ),
        timeout=1,
        message="every worker to refuse the older session's token",
    )
    for ws in sockets:
        assert recv_close(ws)[0] == 4403


def test_readiness_reports_database_and_broker(cluster):
    for server in cluster:
        status, body = server.request("GET", "/readyz")
        # Detection loads on a worker's first detection (DETECTION_LOAD=lazy): not loaded, and still ready.
        assert (status, body) == (
            200, {"status": "ready", "database": "ok", "broker": "ok", "draining": "ok", "detection": "not_loaded"}
        )


def test_redis_restart_keeps_storing_and_delivery_resumes(server_factory, postgres_databases, private_redis):
    shared = {"DATABASE_URL": postgres_databases(), "REDIS_URL": private_redis.url, "BROKER_PREFIX": "restart"}
    host_a, host_b = server_factory(**shared), server_factory(**shared)
    login = host_a.login()
    token = login["access_token"]
    here, _ = host_a.device(token)
    there, _ = host_b.device(token)
    here.send(json.dumps({"type": "emotion_update", "emotion": "happy"}))
    assert recv_json(here)["emotion"] == recv_json(there)["emotion"] == "happy"
    # Another session of the user, which host_b's cache knows.
    other_session = host_a.login(login["user"]["username"])["access_token"]
    for _ in range(2):
        assert host_b.request("GET", "/api/auth/me", token=other_session)[0] == 200

    private_redis.stop()
    here.send(json.dumps({"type": "emotion_update", "emotion": "sad"}))
    confirmation = recv_json(here)  # stored and acknowledged although the broker is down
    assert confirmation["emotion"] == "sad"
    status, current = host_b.request("GET", "/api/emotions/current", token=token)
    assert status == 200 and current["id"] == confirmation["id"]
    status, body = host_a.request("GET", "/readyz")
    assert status == 503 and body["checks"]["broker"].startswith("redis unreachable")
    assert host_a.request("GET", "/healthz")[0] == 200
    # A logout while host_b cannot hear it: host_b, whose listener is away, reads every token from SQL.
    assert host_a.request("POST", "/api/auth/logout", token=other_session)[0] == 200
    status, body = host_b.request("GET", "/api/auth/me", token=other_session)
    assert status == 401 and body["error"] == "token_revoked"

    private_redis.start()
    # No restart of gunicorn: the listeners reconnect by themselves (backoff capped at 5 s).
    deadline = time.monotonic() + 20
    seen = []
    while not seen:
        assert time.monotonic() < deadline, "delivery across hosts did not resume"
        here.send(json.dumps({"type": "emotion_update", "emotion": "surprised"}))
        recv_json(here)
        seen = drain_updates(there, quiet=0.5)
    # The first event to arrive after the outage showed `there` a gap in the user's seq; the gap was
    # filled from SQL, so it also got the update it missed, in order and once.
    assert seen[0]["id"] == confirmation["id"]
    assert [f["seq"] for f in seen] == list(range(seen[0]["seq"], seen[0]["seq"] + len(seen)))
    here.send(json.dumps({"type": "emotion_update", "emotion": "neutral"}))
    last = recv_json(here)
    assert drain_updates(there) == [last]
    assert host_a.request("GET", "/readyz")[0] == 200


def test_database_outage_gives_clear_errors_and_recovers(server_factory, postgres_databases, postgres_server):
    url = postgres_databases()
    proxy = TcpProxy(postgres_server.url.port or 5432)
    proxied = url.replace(f":{postgres_server.url.port or 5432}/", f":{proxy.port}/")
    server = server_factory(DATABASE_URL=proxied)
    tokens = server.login()
    token = tokens["access_token"]
    ws, _ = server.device(token)
    ws.send(json.dumps({"type": "emotion_update", "emotion": "happy"}))
    first = recv_json(ws)
    assert first["emotion"] == "happy"

    proxy.stop()
    ws.send(json.dumps({"type": "emotion_update", "emotion": "sad"}))
    error = recv_json(ws, timeout=15)
    assert error == {
        "type": "error",
        "message": "Could not store the update, try again",
        "code": "database_unavailable",
    }
    assert_quiet(ws)  # the socket stays open
    ws.send(json.dumps({"type": "sync", "since": 0}))
    assert recv_json(ws, timeout=15) == {
        "type": "error",
        "message": "Database unavailable, try again",
        "code": "database_unavailable",
    }
    assert_quiet(ws)
    for method, path, body in [
        ("POST", "/api/emotions", {"emotion": "sad"}),
        ("GET", "/api/emotions/current", None),
        ("POST", "/api/auth/login", {"username": tokens["user"]["username"], "password": "whatever long"}),
    ]:
        status, answer = server.request(method, path, body, token=token if "emotions" in path else None)
        assert status == 503, (path, answer)
        assert answer["error"] == "database_unavailable"
    status, ready = server.request("GET", "/readyz")
    assert status == 503 and ready["error"] == "not_ready" and ready["checks"]["broker"] == "ok"
    assert ready["checks"]["database"] != "ok"
    assert server.request("GET", "/healthz")[0] == 200

    proxy.start()
    ws.send(json.dumps({"type": "emotion_update", "emotion": "neutral"}))
    recovered = recv_json(ws, timeout=15)
    assert recovered["type"] == "emotion_update" and recovered["emotion"] == "neutral"
    status, history = server.request("GET", "/api/emotions", token=token)
    assert status == 200
    # Nothing half-stored: exactly the two acknowledged updates.
    assert [e["emotion"] for e in history["events"]] == ["neutral", "happy"]
    assert server.request("GET", "/readyz")[0] == 200
    ws.close()
    proxy.stop()


def test_unreachable_database_at_start(server_factory):
    server = server_factory(DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing")
    status, body = server.request("POST", "/api/auth/login", {"username": "someone", "password": "long enough"})
    assert status == 503 and body["error"] == "database_unavailable"
    status, body = server.request("GET", "/readyz")
    assert status == 503 and "database" in body["message"]
