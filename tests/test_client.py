"""The Python client (clients/python) against real gunicorn + gevent servers: its watch sees every event
exactly once and in order through restarts, killed workers, dropped and stalled networks and a move to
another server; updates are stored once through outages; revocation ends it; expiring tokens do not."""
import os
import signal
import threading
import time
import uuid

import pytest
from emotion_client import AuthError, Connected, Revoked

from tests.clienthelpers import (  # noqa: F401 (close_clients is a fixture)
    Reader,
    Writer,
    close_clients,
    fast_client,
    logged_in_client,
    new_user,
    stored_ids,
    wait_until,
)
from tests.conftest import PASSWORD
from tests.tcpproxy import TcpProxy


@pytest.fixture
def proxy_to():
    proxies = []

    def start(server):
        proxy = TcpProxy(server.port)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()


def _restart(server, proxy):
    server.stop()  # SIGTERM: the server drains, closing sockets with 1012
    server.start()


def _kill_worker(server, proxy):
    (worker,) = server.worker_pids()
    os.kill(worker, signal.SIGKILL)  # no close frame; the master starts a new worker


def _cut(server, proxy):
    proxy.cut()


SCENARIOS = {
    "sigterm_restart": (_restart, 1012),
    "worker_killed": (_kill_worker, 1006),
    "network_cut": (_cut, 1006),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_watch_sees_every_event_once_in_order_across(scenario, request, server_factory, proxy_to):
    # A cut network leaves the server as it was: the module's shared server will do.
    server = request.getfixturevalue("live_server") if scenario == "network_cut" else server_factory()
    proxy = proxy_to(server)
    client = logged_in_client(proxy.url)
    writer = Writer([server], server.login(client.tokens.username)["access_token"])
    with client.watch() as watch:
        reader = Reader(watch)
        reader.wait_connected()
        writer.start()
        wait_until(lambda: len(reader.ids) >= 5, message="events before the fault")
        fault, code = SCENARIOS[scenario]
        fault(server, proxy)
        reader.wait_connected(2, timeout=20)
        after = len(writer.acked)
        wait_until(lambda: len(writer.acked) >= after + 5, message="events after the fault")
        acked = writer.stop()
        reader.wait_for_id(acked[-1])
        time.sleep(0.2)  # a repeat, if there were one, would arrive now
    assert [d.code for d in reader.disconnects()][:1] == [code], reader.disconnects()
    stored = stored_ids(client)
    assert set(acked) <= set(stored)
    assert reader.ids == stored, "the watch missed, repeated or reordered an event"
    assert reader.error is None


def test_heartbeat_notices_a_stalled_network_and_resumes(live_server, proxy_to):
    server = live_server
    proxy = proxy_to(server)
    client = fast_client(proxy.url, heartbeat=0.3, heartbeat_timeout=0.5, timeout=1.0)
    username = new_user(client)
    writer = Writer([server], server.login(username)["access_token"], pause=0.05)
    with client.watch() as watch:
        reader = Reader(watch)
        reader.wait_connected()
        writer.start()
        wait_until(lambda: len(reader.ids) >= 3, message="events before the stall")
        proxy.stall()  # nothing moves, nothing is closed: only the heartbeat can tell
        wait_until(lambda: reader.disconnects(), timeout=5, message="the heartbeat to give up")
        assert "ping" in reader.disconnects()[0].reason and reader.disconnects()[0].code == 1006
        time.sleep(0.5)  # the reconnects meanwhile hang in the stalled network and time out
        proxy.resume()
        reader.wait_connected(2, timeout=10)
        acked = writer.stop()
        reader.wait_for_id(acked[-1])
    assert reader.ids == stored_ids(client)


def test_two_servers_sharing_redis_and_postgres_and_a_move_between_them(
    server_factory, proxy_to, postgres_databases, redis_url
):
    shared = {"DATABASE_URL": postgres_databases(), "REDIS_URL": redis_url, "BROKER_PREFIX": f"c{uuid.uuid4().hex[:8]}"}
    host_a, host_b = server_factory(**shared), server_factory(**shared)
    balancer = proxy_to(host_a)
    client = logged_in_client(balancer.url)
    writer = Writer([host_a, host_b], host_b.login(client.tokens.username)["access_token"])
    with client.watch() as watch:
        reader = Reader(watch)
        reader.wait_connected()
        writer.start()
        wait_until(lambda: len(reader.ids) >= 10, message="events stored on both hosts")
        # Host A leaves: the balancer sends new connections to B, and A closes its sockets with 1012.
        balancer.upstream = host_b.port
        host_a.stop()
        reader.wait_connected(2)
        after = len(writer.acked)
        wait_until(lambda: len(writer.acked) >= after + 5, message="events after the move")
        acked = writer.stop()
        reader.wait_for_id(acked[-1])
    stored = stored_ids(client)
    assert reader.disconnects()[0].code == 1012
    assert reader.ids == stored and set(acked) <= set(stored)


def test_an_update_during_an_outage_is_stored_once_after_it(server_factory, proxy_to):
    server = server_factory()
    proxy = proxy_to(server)
    client = logged_in_client(proxy.url)
    msg_id = f"outage-{uuid.uuid4().hex[:8]}"
    result = {}
    # First the answers are lost (the request is stored, the client cannot know), then the server is down.
    proxy.swallow = True
    thread = threading.Thread(target=lambda: result.update(event=client.set("sad", client_msg_id=msg_id)))
    thread.start()
    wait_until(lambda: proxy.count(b"POST /api/emotions") >= 2, message="the update to be sent twice")
    server.stop()
    proxy.swallow = False
    time.sleep(0.5)
    assert thread.is_alive(), "set() gave up during the outage"
    server.start()
    thread.join(timeout=20)
    event = result["event"]
    sent = proxy.count(b"POST /api/emotions")
    assert sent >= 3 and proxy.count(msg_id.encode()) == sent, "every retry carries the same client_msg_id"
    history = list(client.history(limit=None))
    assert [e.client_msg_id for e in history].count(msg_id) == 1
    assert event.client_msg_id == msg_id and event.emotion == "sad" and event.id == history[0].id


def test_an_update_over_the_socket_is_resent_after_a_drop_and_stored_once(live_server, proxy_to):
    server = live_server
    proxy = proxy_to(server)
    client = fast_client(proxy.url)
    new_user(client)
    with client.watch() as watch:
        reader = Reader(watch)
        reader.wait_connected()
        proxy.stall()
        result = {}
        thread = threading.Thread(
            target=lambda: result.update(event=client.set("angry", client_msg_id="on-the-socket"))
        )
        thread.start()
        time.sleep(0.2)  # sent into the silent network: no confirmation comes
        assert thread.is_alive()
        proxy.cut()
        proxy.resume()
        thread.join(timeout=15)
        reader.wait_for_id(result["event"].id)
    history = list(client.history(limit=None))
    assert [e.client_msg_id for e in history] == ["on-the-socket"]
    assert reader.ids == [history[0].id] and reader.connects() >= 2


def test_logout_elsewhere_ends_the_watch_with_revoked(live_server):
    client = fast_client(live_server.url)
    new_user(client)
    watch = client.watch()
    reader = Reader(watch)
    reader.wait_connected()
    other = fast_client(live_server.url, tokens=client.tokens)  # the same login, on another device
    other.logout()
    reader.join(timeout=5)
    assert isinstance(reader.error, Revoked), reader.error
    with pytest.raises(Revoked):
        client.set("happy")


def test_a_password_change_elsewhere_ends_the_watch_too(live_server):
    client = fast_client(live_server.url)
    username = new_user(client)
    reader = Reader(client.watch())
    reader.wait_connected()
    token = live_server.login(username)["access_token"]
    status, _ = live_server.request(
        "POST", "/api/auth/password", {"current_password": PASSWORD, "new_password": "another password 2"}, token=token
    )
    assert status == 200
    reader.join(timeout=5)
    assert isinstance(reader.error, Revoked)


def test_http_calls_and_the_watch_renew_short_lived_tokens(server_factory):
    # The default notice (60 s) is longer than these tokens live: the server says `token_expiring` at
    # once, and the client renews in band or, when a token from the same second is no newer, by
    # reconnecting after the 4401; either way without losing or repeating an event.
    server = server_factory(ACCESS_TOKEN_TTL=2)
    client = fast_client(server.url)
    new_user(client)
    writer = fast_client(server.url, tokens=client.tokens)
    with client.watch() as watch:
        reader = Reader(watch)
        reader.wait_connected()
        first_token = client.tokens.access_token
        acked = []
        deadline = time.monotonic() + 4.5  # several token lifetimes (each 1-2 s: `exp` is in whole seconds)
        while time.monotonic() < deadline:
            acked.append(writer.set("happy").id)
            time.sleep(0.1)
        reader.wait_for_id(acked[-1])
    assert client.tokens.access_token != first_token
    assert reader.error is None
    assert reader.ids == acked == stored_ids(client)
    assert all(d.code == 4401 and d.retry_in == 0 for d in reader.disconnects())


def test_wrong_password_and_missing_login_raise_auth_errors(live_server):
    client = fast_client(live_server.url)
    username = new_user(client)
    with pytest.raises(AuthError) as wrong:
        fast_client(live_server.url).login(username, "not the password")
    assert wrong.value.code == "invalid_credentials"
    with pytest.raises(AuthError):
        fast_client(live_server.url).current()


def test_reading_the_current_state_history_devices_and_stats(live_server):
    client = fast_client(live_server.url, device="Laptop")
    new_user(client)
    assert client.current() is None
    events = [client.set(emotion) for emotion in ("happy", "sad", "happy")]
    assert client.current() == events[-1] and events[-1].device == "Laptop"
    assert list(client.history(limit=2)) == events[:0:-1]
    assert list(client.history(limit=None, before=events[1].id)) == events[:1]
    with client.watch() as watch:
        connected = watch.get(timeout=5)
        assert isinstance(connected, Connected) and connected.current == events[-1]
        assert [d.name for d in client.devices()] == ["Laptop"]
    stats = client.stats(days=7, tz="Europe/Paris")
    assert stats["totals"]["happy"]["count"] == 2 and stats["tz"] == "Europe/Paris"
