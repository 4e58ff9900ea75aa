"""/api/ws against a real gunicorn + gevent server, with real WebSocket clients."""
import json
import os
import re
import socket
import threading
import time

import pytest
import websocket

from tests.conftest import recv_close, recv_json, wait_until

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def refused(server, url=None, headers=None):
    """Attempt a handshake that must be refused; return (status, JSON body)."""
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(url or server.ws_url, header=headers or [], timeout=5)
    return info.value.status_code, json.loads(info.value.resp_body)


def assert_quiet(ws):
    """Nothing is waiting on `ws`: a ping's answer is the very next frame."""
    ws.send(json.dumps({"type": "ping"}))
    frame = recv_json(ws)
    assert frame["type"] == "pong", f"expected nothing before the pong, got {frame}"


def stored_events(server, token):
    status, body = server.request("GET", "/api/emotions?limit=100", token=token)
    assert status == 200, body
    return body["events"]


# ------------------------------------------------------------------------------------------- connecting


@pytest.mark.parametrize("via", ["query", "header"])
def test_connection_established_has_the_contract_fields(live_server, via):
    tokens = live_server.login()
    ws = live_server.connect(tokens["access_token"], via=via)
    frame = recv_json(ws)
    # The contract's fields, as the contract has them, then the state (tested in test_resume.py).
    assert list(frame)[:4] == ["type", "message", "timestamp", "user_id"]
    assert frame.keys() == {
        "type", "message", "timestamp", "user_id", "current", "last_event_id", "devices", "device", "online"
    }
    assert frame["type"] == "connection_established"
    assert frame["message"] == "Connected to emotion detection WebSocket server"
    assert frame["user_id"] == tokens["user"]["id"]
    assert STAMP.match(frame["timestamp"])
    ws.close()


def test_refusals_happen_before_the_handshake(live_server):
    tokens = live_server.login()
    url = live_server.ws_url
    cases = {
        "missing_token": refused(live_server),
        "malformed": refused(live_server, f"{url}?token=not-a-jwt"),
        "bad_header": refused(live_server, headers=["Authorization: Basic abc"]),
        "refresh": refused(live_server, f"{url}?token={tokens['refresh_token']}"),
        "refresh_header": refused(live_server, headers=[f"Authorization: Bearer {tokens['refresh_token']}"]),
    }
    expected = {
        "missing_token": "missing_token",
        "malformed": "invalid_token",
        "bad_header": "invalid_token",
        "refresh": "wrong_token_type",
        "refresh_header": "wrong_token_type",
    }
    for case, (status, body) in cases.items():
        assert status == 401, case
        assert body["status"] == 401 and body["error"] == expected[case], (case, body)
        assert body["message"], case


def test_revoked_token_is_refused(live_server):
    tokens = live_server.login()
    assert live_server.request("POST", "/api/auth/logout", token=tokens["access_token"])[0] == 200
    status, body = refused(live_server, f"{live_server.ws_url}?token={tokens['access_token']}")
    assert (status, body["error"]) == (401, "token_revoked")


def test_expired_token_is_refused(server_factory):
    server = server_factory(ACCESS_TOKEN_TTL=1)
    tokens = server.login()
    time.sleep(1.5)
    status, body = refused(server, f"{server.ws_url}?token={tokens['access_token']}")
    assert (status, body["error"]) == (401, "token_expired")


def test_no_socket_is_opened_for_a_refused_token(live_server):
    # The raw answer is a plain HTTP 401 with a JSON body, not a 101 upgrade.
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as sock:
        sock.sendall(
            b"GET /api/ws?token=bad HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 401")
    assert "application/json" in answer and "Sec-WebSocket-Accept" not in answer


# ------------------------------------------------------------------------------------------- messages


def test_ping_pong(live_server):
    ws, _ = live_server.device(live_server.login()["access_token"])
    ws.send(json.dumps({"type": "ping", "timestamp": "2023-05-09T14:40:00.000Z"}))
    frame = recv_json(ws)
    assert frame["type"] == "pong" and STAMP.match(frame["timestamp"])
    ws.close()


def test_every_device_of_the_user_gets_each_update_and_no_one_else(live_server):
    tokens = live_server.login()
    devices = [live_server.device(tokens["access_token"], via=via)[0] for via in ("query", "header", "query")]
    stranger, _ = live_server.device(live_server.login()["access_token"])

    seen_ids = []
    for sender, emotion in [(0, "happy"), (1, "sad"), (2, "  Angry ")]:
        devices[sender].send(json.dumps({"type": "emotion_update", "emotion": emotion}))
        frames = [recv_json(ws) for ws in devices]
        assert len({json.dumps(f, sort_keys=True) for f in frames}) == 1, frames
        frame = frames[0]
        assert frame["type"] == "emotion_update"
        assert frame["emotion"] == emotion.strip().lower()
        assert frame["user_id"] == tokens["user"]["id"]
        assert STAMP.match(frame["timestamp"])
        assert isinstance(frame["id"], int)
        seen_ids.append(frame["id"])
    assert seen_ids == sorted(seen_ids) and len(set(seen_ids)) == 3

    assert_quiet(stranger)
    for ws in devices:
        assert_quiet(ws)
    # Stored before it was announced: the history holds exactly what the devices saw.
    assert [e["id"] for e in stored_events(live_server, tokens["access_token"])] == seen_ids[::-1]
    for ws in devices + [stranger]:
        ws.close()


def test_flutter_timestamp_is_kept_as_client_timestamp(live_server):
    tokens = live_server.login()
    ws, _ = live_server.device(tokens["access_token"])
    dart_now = "2023-05-09T16:45:00.123456"  # DateTime.now().toIso8601String(): local, no offset
    ws.send(json.dumps({"type": "emotion_update", "emotion": "sad", "timestamp": dart_now}))
    frame = recv_json(ws)
    assert frame["client_timestamp"] == dart_now
    assert frame["timestamp"] != dart_now and STAMP.match(frame["timestamp"])
    ws.close()


@pytest.mark.parametrize(
    "raw, code, words",
    [
        ("not json at all", "invalid_format", "Invalid message format"),
        ("[1, 2, 3]", "invalid_format", "Invalid message format"),
        ('"emotion_update"', "invalid_format", "Invalid message format"),
        ('{"emotion": "sad"}', "missing_type", "'type'"),
        ('{"type": "dance"}', "unknown_type", "'dance'"),
        ('{"type": "emotion_update"}', "missing_field", "'emotion'"),
        ('{"type": "emotion_update", "emotion": 7}', "invalid_field", "'emotion'"),
        ('{"type": "emotion_update", "emotion": "bored"}', "unknown_emotion", "happy, sad, angry"),
        ('{"type": "emotion_update", "emotion": "sad", "timestamp": "tuesday"}', "invalid_timestamp", "ISO-8601"),
    ],
)
def test_bad_frames_get_an_error_and_store_nothing(live_server, raw, code, words):
    tokens = live_server.login()
    ws, _ = live_server.device(tokens["access_token"])
    ws.send(raw)
    frame = recv_json(ws)
    assert frame["type"] == "error" and frame["code"] == code
    assert words in frame["message"]
    # The socket stays open and usable.
    assert_quiet(ws)
    assert stored_events(live_server, tokens["access_token"]) == []
    ws.close()


def test_binary_frames_get_an_error(live_server):
    tokens = live_server.login()
    ws, _ = live_server.device(tokens["access_token"])
    ws.send_binary(b'{"type": "emotion_update", "emotion": "sad"}')
    frame = recv_json(ws)
    assert frame["type"] == "error" and frame["code"] == "binary_not_supported"
    assert_quiet(ws)
    assert stored_events(live_server, tokens["access_token"]) == []
    ws.close()


def test_oversized_frame_closes_with_1009_and_stores_nothing(live_server):
    tokens = live_server.login()
    ws, _ = live_server.device(tokens["access_token"])
    watcher, _ = live_server.device(tokens["access_token"])
    ws.send(json.dumps({"type": "emotion_update", "emotion": "sad", "padding": "x" * 5000}))
    code, _reason, frames = recv_close(ws)
    assert code == 1009 and frames == []
    assert stored_events(live_server, tokens["access_token"]) == []
    assert_quiet(watcher)  # the user's other device is untouched
    watcher.close()


def test_frame_just_under_the_limit_is_accepted(live_server):
    tokens = live_server.login()
    ws, _ = live_server.device(tokens["access_token"])
    frame = json.dumps({"type": "emotion_update", "emotion": "sad", "note": ""})
    ws.send(frame[:-2] + "x" * (4096 - len(frame)) + '"}')
    assert recv_json(ws)["emotion"] == "sad"
    ws.close()


def test_http_post_reaches_every_socket(live_server):
    tokens = live_server.login()
    devices = [live_server.device(tokens["access_token"])[0] for _ in range(2)]
    status, event = live_server.request("POST", "/api/emotions", {"emotion": "surprised"}, token=tokens["access_token"])
    assert status == 201
    for ws in devices:
        frame = recv_json(ws)
        assert frame == {"type": "emotion_update", **event}
        ws.close()


def first_states(server):
    """{source: count} of emotion_app_first_states_total (where new sockets' first state came from)."""
    prefix = "emotion_app_first_states_total{source="
    lines = server.request("GET", "/metrics")[1].splitlines()
    return {line[len(prefix) + 1:].split('"')[0]: float(line.split()[-1]) for line in lines if line.startswith(prefix)}


def test_a_users_next_device_starts_from_the_state_its_worker_keeps(live_server):
    tokens = live_server.login()
    token = tokens["access_token"]
    first, _ = live_server.device(token)
    first.send(json.dumps({"type": "emotion_update", "emotion": "happy"}))
    happy = recv_json(first)
    status, sad = live_server.request("POST", "/api/emotions", {"emotion": "sad"}, token=token)
    assert status == 201 and recv_json(first) == {"type": "emotion_update", **sad}

    before = first_states(live_server)
    second, hello = live_server.device(token)
    after = first_states(live_server)
    assert after.get("held", 0) == before.get("held", 0) + 1, (before, after)
    assert hello["current"] == sad and hello["last_event_id"] == sad["id"]
    # It carries on from there: the next event arrives once, as on the first device.
    status, angry = live_server.request("POST", "/api/emotions", {"emotion": "angry"}, token=token)
    for ws in (first, second):
        assert recv_json(ws) == {"type": "emotion_update", **angry}
        assert_quiet(ws)
    assert happy["id"] < sad["id"] < angry["id"]

    # With the user's sockets gone, the worker still follows the user's events: a device coming back
    # starts from the latest, still without a database read.
    first.close()
    second.close()
    wait_until(lambda: live_server.request("GET", "/api/devices", token=token)[1]["devices"] == 0, timeout=5,
               message="the user's sockets to be gone")
    status, neutral = live_server.request("POST", "/api/emotions", {"emotion": "neutral"}, token=token)
    assert status == 201
    before = first_states(live_server)
    third, hello = live_server.device(token)
    assert first_states(live_server).get("held", 0) == before.get("held", 0) + 1
    assert hello["current"] == neutral
    third.close()

    # A user none of whose devices connected to this worker yet is read from the database.
    other = live_server.login()["access_token"]
    before = first_states(live_server)
    ws, hello = live_server.device(other)
    assert first_states(live_server).get("database", 0) == before.get("database", 0) + 1
    assert hello["current"] is None
    ws.close()


def test_server_pings_keep_a_quiet_socket_alive(server_factory):
    server = server_factory(WS_PING_INTERVAL=0.3)
    ws, _ = server.device(server.login()["access_token"])
    ws.settimeout(3)
    pings = 0
    deadline = time.monotonic() + 1.5  # several ping intervals
    while time.monotonic() < deadline:
        opcode, _ = ws.recv_data(control_frame=True)  # answers each ping with a pong, as browsers do
        assert opcode == websocket.ABNF.OPCODE_PING
        pings += 1
    assert pings >= 3
    assert_quiet(ws)  # answered pings keep the socket open
    ws.close()


def test_a_peer_that_never_answers_pings_is_dropped(server_factory):
    server = server_factory(WS_PING_INTERVAL=0.3)
    tokens = server.login()
    mute, _ = server.device(tokens["access_token"])
    # Make the client deaf to pings: it never sends a pong, as a vanished phone would.
    mute.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    mute.pong = lambda payload="": None
    mute.settimeout(5)
    saw_close = False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not saw_close:
        frame = mute.recv_frame()  # raw frames: pings are not answered
        saw_close = frame.opcode == websocket.ABNF.OPCODE_CLOSE
    assert saw_close
    assert int.from_bytes(frame.data[:2], "big") == 1008


# ------------------------------------------------------------------------------------------- closes


def test_token_expiry_closes_the_socket_with_4401(server_factory):
    server = server_factory(ACCESS_TOKEN_TTL=2)
    ws, _ = server.device(server.login()["access_token"])
    code, reason, frames = recv_close(ws, timeout=6)
    assert code == 4401
    # Told once that the token is about to expire (WS_TOKEN_NOTICE is longer than its life), then why.
    assert [f["type"] for f in frames] == ["token_expiring", "error"] and frames[-1]["code"] == "token_expired"


def test_logout_closes_only_the_sockets_of_the_revoked_token(live_server):
    first = live_server.login()
    second = live_server.login(first["user"]["username"])
    revoked = [live_server.device(first["access_token"], via=v)[0] for v in ("query", "header")]
    kept, _ = live_server.device(second["access_token"])
    assert live_server.request("POST", "/api/auth/logout", token=first["access_token"])[0] == 200
    for ws in revoked:
        code, _reason, frames = recv_close(ws)
        assert code == 4403
        assert [f["code"] for f in frames] == ["token_revoked"]
    assert_quiet(kept)
    kept.close()


def masked_text_frame(text):
    """A client-to-server text frame, masked as RFC 6455 requires."""
    payload = text.encode()
    mask = os.urandom(4)
    header = bytes([0x81, 0x80 | len(payload)]) if len(payload) < 126 else bytes([0x81, 0xFE]) + len(payload).to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_a_stalled_reader_does_not_delay_a_healthy_device(server_factory):
    server = server_factory(WS_SEND_QUEUE=16, WS_SEND_TIMEOUT=2)
    token = server.login()["access_token"]
    # The stalled device completes the handshake, then keeps sending pings but never reads a reply:
    # its replies pile up in the kernel buffers, then in its outbound queue, until the server cuts it.
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.sendall(
        f"GET /api/ws?token={token} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert stalled.recv(12) == b"HTTP/1.1 101"
    ping = masked_text_frame(json.dumps({"type": "ping", "timestamp": "2023-05-09T14:45:00.123456+00:00" + "0" * 30}))
    outcome = {}

    def flood():
        deadline = time.monotonic() + 60
        sent = 0
        try:
            while time.monotonic() < deadline:
                stalled.sendall(ping * 50)
                sent += 50
        except OSError as exc:  # the server closed the connection
            outcome["cut_after"] = sent
            outcome["error"] = exc

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    healthy, _ = server.device(token)
    worst = 0.0
    while flooder.is_alive():
        started = time.monotonic()
        healthy.send(json.dumps({"type": "emotion_update", "emotion": "happy"}))
        frame = recv_json(healthy, timeout=3)  # never held up by the stalled device
        worst = max(worst, time.monotonic() - started)
        assert frame["type"] == "emotion_update"
    flooder.join()
    stalled.close()
    assert "error" in outcome, "the stalled socket was never disconnected"
    assert worst < 3
    assert_quiet(healthy)
    healthy.close()
