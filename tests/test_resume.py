"""Never lose an update: resume with `since`, state on connect, paging, ordering, idempotent sends."""
import json
import random
import threading
import time
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
import websocket

from emotion_app import create_app, store
from emotion_app.extensions import db
from emotion_app.models import EmotionEvent
from tests.conftest import TEST_SECRETS, recv_json
from tests.test_ws import assert_quiet


def send_update(ws, emotion, **extra):
    ws.send(json.dumps({"type": "emotion_update", "emotion": emotion, **extra}))


def read_replay(ws):
    """Read a replay: the events, then the `synced` frame that closes it."""
    events = []
    while True:
        frame = recv_json(ws)
        if frame["type"] == "synced":
            return events, frame
        assert frame["type"] == "emotion_update", frame
        events.append(frame)


def test_connection_established_carries_the_state(live_server):
    tokens = live_server.login()
    token = tokens["access_token"]
    _, first = live_server.device(token)
    assert (first["current"], first["last_event_id"], first["devices"]) == (None, None, 1)
    status, event = live_server.request("POST", "/api/emotions", {"emotion": "happy"}, token=token)
    assert status == 201
    _, second = live_server.device(token)
    assert second["current"] == event and second["last_event_id"] == event["id"]
    assert second["devices"] == 2


def test_offline_device_gets_exactly_what_it_missed_then_live(live_server):
    token = live_server.login()["access_token"]
    phone, _ = live_server.device(token)
    laptop, _ = live_server.device(token)
    send_update(phone, "happy")
    last_seen = recv_json(laptop)["id"]
    recv_json(phone)
    laptop.close()

    missed = []
    for emotion in ["sad", "angry", "neutral"]:
        send_update(phone, emotion)
        missed.append(recv_json(phone))
    for emotion in ["surprised", "fearful"]:
        status, event = live_server.request("POST", "/api/emotions", {"emotion": emotion}, token=token)
        assert status == 201
        missed.append(recv_json(phone))
        assert missed[-1]["id"] == event["id"]

    laptop = live_server.connect(token, since=last_seen)
    first = recv_json(laptop)
    assert first["type"] == "connection_established" and first["last_event_id"] == missed[-1]["id"]
    replayed, synced = read_replay(laptop)
    assert replayed == missed  # exactly those 5, in order, same frames as live
    assert synced == {"type": "synced", "since": last_seen, "count": 5, "last_id": missed[-1]["id"], "has_more": False}
    send_update(phone, "disgusted")
    assert recv_json(laptop)["emotion"] == "disgusted"  # then live ones
    assert_quiet(laptop)


def test_sync_message_replays_on_an_open_socket(live_server):
    token = live_server.login()["access_token"]
    ws, _ = live_server.device(token)
    sent = []
    for emotion in ["happy", "sad"]:
        send_update(ws, emotion)
        sent.append(recv_json(ws))
    ws.send(json.dumps({"type": "sync", "since": 0}))
    replayed, synced = read_replay(ws)
    assert replayed == sent and synced["count"] == 2 and synced["has_more"] is False
    ws.send(json.dumps({"type": "sync", "since": "soon"}))
    assert recv_json(ws)["code"] == "invalid_since"


def test_replays_are_paged(server_factory):
    server = server_factory(REPLAY_LIMIT=3)
    token = server.login()["access_token"]
    sender, _ = server.device(token)
    stored = []
    for n in range(7):
        send_update(sender, ["happy", "sad"][n % 2])
        stored.append(recv_json(sender)["id"])

    device = server.connect(token, since=0)
    recv_json(device)
    pages = []
    since = 0
    while True:
        events, synced = read_replay(device)
        pages.append([e["id"] for e in events])
        assert synced["since"] == since and synced["count"] == len(events)
        if not synced["has_more"]:
            break
        # Paused: live events wait in SQL until the device asks for the next page.
        send_update(sender, "angry")
        stored.append(recv_json(sender)["id"])
        since = synced["last_id"]
        device.send(json.dumps({"type": "sync", "since": since}))
    assert pages == [stored[0:3], stored[3:6], stored[6:9]]
    send_update(sender, "neutral")
    assert recv_json(device)["id"] == recv_json(sender)["id"]


def test_bad_since_is_refused_before_the_handshake(live_server):
    token = live_server.login()["access_token"]
    for bad in ["-1", "abc", "1.5", ""]:
        with pytest.raises(websocket.WebSocketBadStatusException) as info:
            websocket.create_connection(f"{live_server.ws_url}?token={token}&since={bad}", timeout=5)
        body = json.loads(info.value.resp_body)
        assert info.value.status_code == 400 and body["error"] == "invalid_since" and body["field"] == "since"


def test_since_older_than_what_is_kept(server_factory):
    server = server_factory()
    token = server.login()["access_token"]
    ws, _ = server.device(token)
    for emotion in ["happy", "sad", "angry"]:
        send_update(ws, emotion)
    ids = [recv_json(ws)["id"] for _ in range(3)]
    # Age the first two events, then prune as `flask prune` does (the command is in test_retention.py).
    app = create_app({"SQLALCHEMY_DATABASE_URI": server.env["DATABASE_URL"], **TEST_SECRETS})
    with app.app_context():
        db.session.execute(
            sa.update(EmotionEvent).where(EmotionEvent.id <= ids[1]).values(created_at=datetime(2000, 1, 1))
        )
        db.session.commit()
        assert store.prune(datetime(2001, 1, 1, tzinfo=timezone.utc))["events"] == 2
        db.engine.dispose()

    old = server.connect(token, since=ids[0])
    first = recv_json(old)
    assert first["type"] == "connection_established" and first["current"]["id"] == ids[2]
    error = recv_json(old)
    assert error["type"] == "error" and error["code"] == "since_too_old" and "reload" in error["message"]
    assert_quiet(old)  # connected without a replay: the state above is the reload

    fresh = server.connect(token, since=ids[1])  # everything after the mark is still kept
    recv_json(fresh)
    events, synced = read_replay(fresh)
    assert [e["id"] for e in events] == [ids[2]] and not synced["has_more"]
    ws.send(json.dumps({"type": "sync", "since": ids[0]}))
    assert recv_json(ws)["code"] == "since_too_old"


def test_reconnect_race_never_misses_or_repeats(live_server):
    token = live_server.login()["access_token"]
    sender, _ = live_server.device(token)
    acked = []
    stop = threading.Event()

    def stream():
        n = 0
        while not stop.is_set():
            send_update(sender, ["happy", "sad", "angry"][n % 3])
            acked.append(recv_json(sender, timeout=10)["id"])
            n += 1
            time.sleep(0.002)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    received = []
    rng = random.Random(7)
    try:
        for _ in range(200):
            since = received[-1] if received else 0
            ws = live_server.connect(token, since=since)
            assert recv_json(ws)["type"] == "connection_established"
            events, _synced = read_replay(ws)
            received += [e["id"] for e in events]
            # Stay a moment to take live events too, then drop the connection mid-stream.
            deadline = time.monotonic() + rng.uniform(0, 0.03)
            while time.monotonic() < deadline:
                try:
                    frame = recv_json(ws, timeout=max(0.001, deadline - time.monotonic()))
                except websocket.WebSocketTimeoutException:
                    break
                assert frame["type"] == "emotion_update"
                received.append(frame["id"])
            ws.close()
    finally:
        stop.set()
        streamer.join(timeout=15)
    assert len(acked) > 200
    final = live_server.connect(token, since=received[-1])
    recv_json(final)
    events, _ = read_replay(final)
    received += [e["id"] for e in events]
    assert received == acked  # every acknowledged event, once, in order, across 200 reconnects


def test_idempotent_sends(live_server):
    tokens = live_server.login()
    token = tokens["access_token"]
    phone, _ = live_server.device(token)
    tablet, _ = live_server.device(token)
    send_update(phone, "happy", client_msg_id="m-1")
    original = recv_json(phone)
    assert recv_json(tablet) == original and original["client_msg_id"] == "m-1"

    send_update(phone, "happy", client_msg_id="m-1")  # a retry on the same socket
    again = recv_json(phone)
    assert again == {**original, "duplicate": True}
    send_update(tablet, "sad", client_msg_id="m-1")  # the same id from another device
    assert recv_json(tablet) == {**original, "duplicate": True}
    status, body = live_server.request("POST", "/api/emotions", {"emotion": "angry", "client_msg_id": "m-1"}, token=token)
    event = {k: v for k, v in original.items() if k != "type"}
    assert (status, body) == (200, {**event, "duplicate": True})
    status, fresh = live_server.request("POST", "/api/emotions", {"emotion": "angry", "client_msg_id": "m-2"}, token=token)
    assert status == 201 and fresh["id"] > original["id"] and fresh["seq"] == original["seq"] + 1
    assert recv_json(phone)["id"] == recv_json(tablet)["id"] == fresh["id"]  # only the new one was pushed
    assert_quiet(phone)
    assert_quiet(tablet)
    status, history = live_server.request("GET", "/api/emotions", token=token)
    assert [e["id"] for e in history["events"]] == [fresh["id"], original["id"]]
    # Another user's m-1 is theirs.
    other = live_server.login()["access_token"]
    assert live_server.request("POST", "/api/emotions", {"emotion": "sad", "client_msg_id": "m-1"}, token=other)[0] == 201


def test_devices_endpoint_and_presence_frames(live_server):
    tokens = live_server.login()
    token, user_id = tokens["access_token"], tokens["user"]["id"]
    assert live_server.request("GET", "/api/devices", token=token)[1] == {"user_id": user_id, "devices": 0, "online": []}
    first, welcome = live_server.device(token)
    second, hello = live_server.device(token)
    both = sorted([welcome["device"], hello["device"]], key=lambda d: d["id"])  # unnamed: ordered by id
    assert hello["devices"] == 2 and hello["online"] == both
    joined = recv_json(first, skip=())
    assert joined == {
        "type": "presence", "user_id": user_id, "devices": 2, "change": "connected", "device": hello["device"],
        "online": both,
    }
    assert live_server.request("GET", "/api/devices", token=token)[1] == {"user_id": user_id, "devices": 2, "online": both}
    second.close()
    left = recv_json(first, skip=())
    assert left == {
        "type": "presence", "user_id": user_id, "devices": 1, "change": "disconnected", "device": hello["device"],
        "online": [welcome["device"]],
    }
    assert live_server.request("GET", "/api/devices", token=token)[1]["online"] == [welcome["device"]]
