"""In-band token renewal in the Python client: on `token_expiring` it gets a new access token over HTTP
and offers it with a `refresh` frame, so one socket outlives many tokens; a refused offer falls back to
the 4401 close and an HTTP renewal; a revoked session ends the watch.

The first tests run against real servers; the refusals, which a correct client never provokes from a
real server on purpose, are played by a scripted socket server with an httpx mock for the HTTP side."""
import json
import threading
import time
import urllib.parse

import httpx
import pytest
from emotion_client import AuthError, Connected, Disconnected, EmotionUpdate, Revoked, Tokens
from websockets.sync.server import serve

from tests.clienthelpers import (  # noqa: F401 (close_clients is a fixture)
    Reader,
    close_clients,
    fast_client,
    logged_in_client,
    stored_ids,
    wait_until,
)
from tests.tcpproxy import TcpProxy

# ---------------------------------------------------------------------------------------- real servers


def test_one_socket_outlives_several_token_lifetimes(server_factory):
    server = server_factory(ACCESS_TOKEN_TTL=2, WS_TOKEN_NOTICE=1)
    proxy = TcpProxy(server.port)  # sees every handshake the watch makes
    try:
        client = logged_in_client(proxy.url)
        writer = fast_client(server.url, tokens=client.tokens)
        tokens_seen = set()
        with client.watch() as watch:
            reader = Reader(watch)
            reader.wait_connected()
            acked = []
            deadline = time.monotonic() + 5  # two and a half lifetimes of the longest token
            while time.monotonic() < deadline:
                acked.append(writer.set("happy").id)
                tokens_seen.add(client.tokens.access_token)
                time.sleep(0.1)
            reader.wait_for_id(acked[-1])
            assert proxy.count(b"GET /api/ws") == 1  # one handshake: the socket it opened first lives on
        assert reader.connects() == 1 and reader.disconnects() == [] and reader.error is None
        assert len(tokens_seen) >= 3  # renewed in band again and again
        assert reader.ids == acked == stored_ids(client)
    finally:
        proxy.close()


def test_a_socket_renewed_in_band_still_closes_when_its_login_is_ended(server_factory):
    server = server_factory(ACCESS_TOKEN_TTL=2, WS_TOKEN_NOTICE=1)
    client = logged_in_client(server.url)
    first = client.tokens.access_token
    reader = Reader(client.watch())
    reader.wait_connected()
    wait_until(lambda: client.tokens.access_token != first, timeout=5, message="an in-band renewal")
    time.sleep(2.1)  # the token the socket was opened with has expired: it lives on the new one
    assert reader.connects() == 1
    fast_client(server.url, tokens=client.tokens).logout()
    reader.join(timeout=5)
    assert isinstance(reader.error, Revoked)


def test_without_notices_the_socket_is_renewed_by_reconnecting(server_factory):
    # WS_TOKEN_NOTICE=0: the server never says `token_expiring`, and closes with 4401 at expiry.
    server = server_factory(ACCESS_TOKEN_TTL=2, WS_TOKEN_NOTICE=0)
    client = logged_in_client(server.url)
    writer = fast_client(server.url, tokens=client.tokens)
    with client.watch() as watch:
        reader = Reader(watch)
        reader.wait_connected()
        acked = []
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            acked.append(writer.set("sad").id)
            time.sleep(0.1)
        reader.wait_for_id(acked[-1])
    assert reader.error is None and reader.connects() >= 3
    assert all(d.code == 4401 and d.retry_in == 0 for d in reader.disconnects())
    assert reader.ids == acked == stored_ids(client)


# ---------------------------------------------------------------------------------------- scripted server


ESTABLISHED = {"type": "connection_established", "message": "Connected", "user_id": "1", "current": None,
               "last_event_id": 0, "devices": 1, "device": {"id": "d1", "name": None}, "online": []}
EVENT = {"type": "emotion_update", "id": 1, "seq": 1, "user_id": "1", "emotion": "happy",
         "timestamp": "2026-11-26T10:00:00.000Z", "client_timestamp": None, "device": None}


class ScriptedServer:
    """A socket server that plays one script per connection, recording each handshake's token and
    query; HTTP (token refresh) is answered by `transport`, which hands out access-2, access-3 ..."""

    def __init__(self, scripts, refresh_answer=None):
        self.scripts = list(scripts)
        self.handshakes = []
        self.refreshes = []
        self.refresh_answer = refresh_answer
        self.server = serve(self._handle, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.transport = httpx.MockTransport(self._http)

    def _handle(self, ws):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(ws.request.path).query)
        self.handshakes.append((ws.request.headers["Authorization"], query))
        if not self.scripts:
            ws.close(1011, "no script")
            return
        self.scripts.pop(0)(ws)
        try:
            ws.recv(timeout=10)  # hold the socket until the client goes
        except Exception:
            pass

    def _http(self, request):
        assert request.url.path == "/api/auth/refresh"
        self.refreshes.append(request.headers["Authorization"])
        if self.refresh_answer is not None:
            status, body = self.refresh_answer
            return httpx.Response(status, json=body)
        return httpx.Response(200, json={"access_token": f"access-{len(self.refreshes) + 1}", "expires_in": 900})

    def client(self):
        return fast_client(f"http://127.0.0.1:{self.port}", tokens=Tokens("access-1", "refresh-1"),
                           transport=self.transport)

    def close(self):
        self.server.shutdown()


def recv(ws):
    """The client's next frame, passing over its heartbeat pings."""
    while (frame := json.loads(ws.recv(timeout=5)))["type"] == "ping":
        send(ws, {"type": "pong"})
    return frame


def send(ws, frame):
    ws.send(json.dumps(frame))


@pytest.fixture
def scripted():
    servers = []

    def start(*scripts, **options):
        servers.append(ScriptedServer(scripts, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def items_until(watch, kind, limit=10):
    items = []
    while not items or not isinstance(items[-1], kind):
        assert len(items) < limit, items
        items.append(watch.get(timeout=5))
    return items


def test_token_expiring_is_answered_with_a_refresh_frame_and_the_socket_stays(scripted):
    offered = []

    def script(ws):
        send(ws, ESTABLISHED)
        send(ws, {"type": "token_expiring", "expires_in": 5})
        offered.append(recv(ws))
        send(ws, {"type": "refreshed", "expires_at": "2026-11-26T10:15:00.000Z", "expires_in": 900})
        send(ws, EVENT)

    server = scripted(script)
    client = server.client()
    with client.watch() as watch:
        items = items_until(watch, EmotionUpdate)
    assert [type(item) for item in items] == [Connected, EmotionUpdate]
    assert offered == [{"type": "refresh", "token": "access-2"}]
    assert server.refreshes == ["Bearer refresh-1"] and client.tokens.access_token == "access-2"
    assert len(server.handshakes) == 1


@pytest.mark.parametrize("code", ["token_invalid", "token_wrong_user", "token_not_newer", "missing_field"])
def test_a_refused_refresh_keeps_the_socket_until_4401_then_reconnects_at_once(scripted, code):
    offered = []

    def first(ws):
        send(ws, ESTABLISHED)
        send(ws, {"type": "token_expiring", "expires_in": 2})
        offered.append(recv(ws))
        send(ws, {"type": "error", "message": "refused", "code": code})
        if code == "token_not_newer":  # a second offer, of a token from a second later
            offered.append(recv(ws))
            send(ws, {"type": "error", "message": "refused", "code": code})
        send(ws, EVENT)  # the socket is still open
        send(ws, {"type": "error", "message": "Access token has expired", "code": "token_expired"})
        ws.close(4401, "Token expired")

    def second(ws):
        send(ws, {**ESTABLISHED, "last_event_id": 1})
        send(ws, {"type": "synced", "since": 1, "count": 0, "last_id": 1, "has_more": False})
        send(ws, {**EVENT, "id": 2, "seq": 2})

    server = scripted(first, second)
    client = server.client()
    with client.watch() as watch:
        items = items_until(watch, EmotionUpdate)
        items += items_until(watch, Disconnected)
        items += items_until(watch, EmotionUpdate)
    updates = [item.event.id for item in items if isinstance(item, EmotionUpdate)]
    (closed,) = [item for item in items if isinstance(item, Disconnected)]
    assert updates == [1, 2] and closed.code == 4401 and closed.retry_in == 0
    latest = f"access-{len(offered) + 1}"
    assert offered[-1] == {"type": "refresh", "token": latest}
    # The reconnect uses the newest token and resumes after the last event seen.
    assert server.handshakes[1] == (f"Bearer {latest}", {"since": ["1"], "device": ["test client"]})


def test_a_revoked_token_offered_in_band_ends_the_watch(scripted):
    def script(ws):
        send(ws, ESTABLISHED)
        send(ws, {"type": "token_expiring", "expires_in": 2})
        recv(ws)
        send(ws, {"type": "error", "message": "This token has been revoked: log in again", "code": "token_revoked"})

    client = scripted(script).client()
    watch = client.watch()
    assert isinstance(watch.get(timeout=5), Connected)
    with pytest.raises(Revoked):
        watch.get(timeout=5)


@pytest.mark.parametrize("answer, error", [
    ({"status": 401, "error": "token_revoked", "message": "Token has been revoked: log in again"}, Revoked),
    ({"status": 401, "error": "token_expired", "message": "Token has expired"}, AuthError),
])
def test_a_refresh_token_the_server_refuses_ends_the_watch(scripted, answer, error):
    def script(ws):
        send(ws, ESTABLISHED)
        send(ws, {"type": "token_expiring", "expires_in": 2})

    client = scripted(script, refresh_answer=(401, answer)).client()
    watch = client.watch()
    assert isinstance(watch.get(timeout=5), Connected)
    with pytest.raises(error) as ended:
        watch.get(timeout=5)
    assert ended.value.code == answer["error"]
