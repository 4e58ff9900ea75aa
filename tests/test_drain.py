"""Graceful restarts: on SIGTERM a server refuses new sockets, closes open ones with 1012 at once, and its
devices resume on another server with nothing lost."""
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from types import SimpleNamespace

import websocket

from emotion_app.hub import Connection, Hub
from tests.conftest import Auth, recv_close, recv_json


def test_a_draining_worker_refuses_handshakes_and_is_not_ready(app, client, auth):
    tokens = auth.login()
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", **Auth.bearer(tokens["access_token"])}
    assert client.get("/readyz").status_code == 200
    app.extensions["emotion_drain"]()
    response = client.get("/api/ws", headers=upgrade)
    body = response.get_json()
    assert response.status_code == 503 and body["error"] == "draining" and body["retry_after"] >= 1
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["checks"]["draining"] != "ok"
    # Plain HTTP is still served while in-flight work finishes.
    assert client.get("/api/auth/me", headers=Auth.bearer(tokens["access_token"])).status_code == 200


def test_a_socket_that_joins_the_hub_after_the_drain_is_closed_with_1012_too():
    hub = Hub()
    before, after = (Connection(SimpleNamespace(sock=None), 1, "jti", 8, 1.0, fetch=None, replay_limit=1)
                     for _ in range(2))
    hub.attach(before)
    hub.drain()
    # Its handshake passed the draining check before the drain ran.
    hub.attach(after)
    assert before.close_code == after.close_code == 1012
    # Queued: it goes out after connection_established and any replay, as it does for `before`.
    assert after.closing and after.queue[-1] == ("close", 1012, "Service restart")


def test_handshakes_under_way_when_the_drain_runs_are_closed_with_1012_and_do_not_hold_up_the_exit(server_factory):
    # A handshake passes the draining check, then waits while simple-websocket starts its reader thread
    # before its socket joins the hub; the drain often runs in between. Such a socket must get 1012 like
    # the others, not stay open until gunicorn cuts it after graceful_timeout (10 s), without a close frame.
    server = server_factory()
    token = server.login()["access_token"]
    opened, stop = [], threading.Event()

    def open_sockets():
        while not stop.is_set():
            try:
                opened.append(server.device(token)[0])
            except (websocket.WebSocketException, OSError):
                return  # refused (draining) or the port is closed: the restart has begun

    openers = [threading.Thread(target=open_sockets, daemon=True) for _ in range(16)]
    for opener in openers:
        opener.start()
    time.sleep(0.5)
    sent_at = time.monotonic()
    os.kill(server.proc.pid, signal.SIGTERM)
    server.proc.wait(timeout=15)
    exited_after = time.monotonic() - sent_at
    stop.set()
    for opener in openers:
        opener.join(timeout=5)
    codes = Counter()
    for ws in opened:
        try:
            codes[recv_close(ws)[0]] += 1
        except (websocket.WebSocketException, OSError):
            codes["cut without a close frame"] += 1
        ws.close()
    assert codes == {1012: len(opened)} and len(opened) > 16
    assert exited_after < 8, f"the server took {exited_after:.1f} s to exit"


class Device:
    """A device that records every event it sees and when its socket closed, then resumes elsewhere."""

    def __init__(self, server, token):
        self.ws, first = server.device(token)
        self.ids = []
        self.close_code = None
        self.closed_at = None
        self.thread = threading.Thread(target=self._read_until_close, daemon=True)
        self.thread.start()

    def _read_until_close(self):
        self.ws.settimeout(30)
        while True:
            frame = self.ws.recv_frame()
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                self.closed_at = time.monotonic()
                self.close_code = int.from_bytes(frame.data[:2], "big")
                return
            if frame.opcode == websocket.ABNF.OPCODE_TEXT:
                message = json.loads(frame.data)
                if message["type"] == "emotion_update":
                    self.ids.append(message["id"])

    def resume(self, server, token):
        """Reconnect to `server` with since = the last id seen; read the replay and live events."""
        since = self.ids[-1] if self.ids else 0
        self.ws, first = server.device(token, since=since)
        assert first["type"] == "connection_established"

    def read_live(self, until_id, timeout=15):
        deadline = time.monotonic() + timeout
        while not self.ids or self.ids[-1] < until_id:
            assert time.monotonic() < deadline, f"device stopped at {self.ids[-1:]} before {until_id}"
            frame = recv_json(self.ws, skip=("presence", "synced"))
            if frame["type"] == "emotion_update":
                self.ids.append(frame["id"])


def test_sigterm_closes_sockets_with_1012_and_devices_resume_with_nothing_lost(
    server_factory, postgres_databases, redis_url
):
    shared = {"DATABASE_URL": postgres_databases(), "REDIS_URL": redis_url, "BROKER_PREFIX": f"d{uuid.uuid4().hex[:8]}"}
    leaving = server_factory(WEB_CONCURRENCY=2, **shared)
    staying = server_factory(WEB_CONCURRENCY=1, HISTORY_MAX_LIMIT=1000, **shared)
    tokens = staying.login()
    token = tokens["access_token"]
    devices = [Device(leaving, token) for _ in range(4)]
    writer, _ = staying.device(token)
    acked = []
    stop = threading.Event()

    def write():
        # Updates keep coming from another server throughout the restart; each is acknowledged.
        while not stop.is_set():
            writer.send(json.dumps({"type": "emotion_update", "emotion": "happy"}))
            frame = recv_json(writer)
            if frame["type"] == "emotion_update":
                acked.append(frame["id"])
            time.sleep(0.02)

    sender = threading.Thread(target=write, daemon=True)
    sender.start()
    time.sleep(0.5)
    sent_at = time.monotonic()
    os.kill(leaving.proc.pid, signal.SIGTERM)
    for device in devices:
        device.thread.join(timeout=5)
        assert device.close_code == 1012, device.close_code
        assert device.closed_at - sent_at < 1.0, f"1012 came {device.closed_at - sent_at:.2f} s after SIGTERM"
    leaving.proc.wait(timeout=8)  # well inside graceful_timeout (10 s): nothing held it up
    exited_after = time.monotonic() - sent_at
    for device in devices:
        device.resume(staying, token)
    time.sleep(0.3)
    stop.set()
    sender.join(timeout=5)
    for device in devices:
        device.read_live(acked[-1])
    status, body = staying.request("GET", "/api/emotions?limit=1000", token=token)
    stored = sorted(e["id"] for e in body["events"])
    assert set(acked) <= set(stored) and len(acked) > 20
    for device in devices:
        assert device.ids == stored, "a device missed or repeated an event across the restart"
    assert exited_after < 8
    writer.close()


def test_a_reload_replaces_workers_and_devices_resume_on_the_new_ones(server_factory):
    server = server_factory()
    token = server.login()["access_token"]
    device = Device(server, token)
    writer, _ = server.device(token)
    writer.send(json.dumps({"type": "emotion_update", "emotion": "happy"}))
    first = recv_json(writer)
    old_workers = server.worker_pids()
    sent_at = time.monotonic()
    os.kill(server.proc.pid, signal.SIGHUP)  # gunicorn starts new workers, then SIGTERMs the old ones
    device.thread.join(timeout=5)
    assert device.close_code == 1012 and device.closed_at - sent_at < 5
    deadline = time.monotonic() + 15
    while True:  # the new workers take a moment to boot
        try:
            device.resume(server, token)
            break
        except (websocket.WebSocketException, OSError):
            assert time.monotonic() < deadline, "no new worker took the socket"
            time.sleep(0.2)
    while set(server.worker_pids()) & set(old_workers):  # the old worker exits once its requests end
        assert time.monotonic() < deadline, "the old worker did not exit"
        time.sleep(0.1)
    writer2, _ = server.device(token)
    writer2.send(json.dumps({"type": "emotion_update", "emotion": "sad"}))
    second = recv_json(writer2)
    device.read_live(second["id"])
    assert device.ids == [first["id"], second["id"]]
