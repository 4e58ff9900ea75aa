"""Nothing acknowledged is lost across workers, hosts, a killed worker and a Redis restart."""
import json
import os
import signal
import threading
import time
import uuid

import pytest
import websocket

from tests.conftest import recv_json


class Streamer(threading.Thread):
    """One device sending updates as fast as they are confirmed; records every acknowledged id."""

    def __init__(self, server, token, emotion="happy", pause=0.003):
        super().__init__(daemon=True)
        self.ws, _ = server.device(token)
        self.emotion = emotion
        self.pause = pause
        self.acked = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            self.ws.send(json.dumps({"type": "emotion_update", "emotion": self.emotion}))
            while True:  # its own confirmation; other devices' updates come in between
                frame = recv_json(self.ws, timeout=15)
                assert frame["type"] == "emotion_update", frame
                if frame["emotion"] == self.emotion and frame["id"] not in self.acked:
                    if not self.acked or frame["id"] > self.acked[-1]:
                        self.acked.append(frame["id"])
                        break
            time.sleep(self.pause)

    def stop(self):
        self.stopping.set()
        self.join(timeout=30)
        self.ws.close()


class ResumingDevice(threading.Thread):
    """A device that reads everything, and on any disconnect reconnects with `since` its last id."""

    def __init__(self, server, token):
        super().__init__(daemon=True)
        self.server = server
        self.token = token
        self.ids = []
        self.seqs = []
        self.reconnects = 0
        self.stopping = threading.Event()
        self.ws = self._connect()

    def _connect(self):
        since = self.ids[-1] if self.ids else None
        deadline = time.monotonic() + 30
        while True:
            try:
                ws = self.server.connect(self.token, since=since)
                assert recv_json(ws)["type"] == "connection_established"
                return ws
            except (OSError, websocket.WebSocketException):
                assert time.monotonic() < deadline, "could not reconnect"
                time.sleep(0.05)

    def run(self):
        while not self.stopping.is_set():
            try:
                frame = recv_json(self.ws, timeout=0.2)
            except websocket.WebSocketTimeoutException:
                continue
            except (OSError, websocket.WebSocketException):
                self.reconnects += 1
                self.ws = self._connect()
                continue
            if frame["type"] == "emotion_update":
                self.ids.append(frame["id"])
                self.seqs.append(frame["seq"])
            else:
                assert frame["type"] == "synced", frame

    def finish(self, expected, timeout=20):
        """Wait until the device has `expected` ids (or time runs out), then stop it."""
        deadline = time.monotonic() + timeout
        while len(self.ids) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # anything extra (a duplicate) would arrive now
        self.stopping.set()
        self.join(timeout=10)
        self.ws.close()
        return self.ids


@pytest.fixture
def shared_services(postgres_databases, redis_url):
    return {"DATABASE_URL": postgres_databases(), "REDIS_URL": redis_url, "BROKER_PREFIX": f"t{uuid.uuid4().hex[:8]}"}


def test_concurrent_senders_on_two_hosts_are_seen_in_order_by_everyone(server_factory, shared_services):
    host_a = server_factory(**shared_services)
    host_b = server_factory(**shared_services, WEB_CONCURRENCY=2)
    token = host_a.login()["access_token"]
    devices = [ResumingDevice(server, token) for server in (host_a, host_b, host_b, host_b)]
    for device in devices:
        device.start()
    senders = [Streamer(host_a, token, "happy", pause=0), Streamer(host_b, token, "sad", pause=0)]
    for sender in senders:
        sender.start()
    time.sleep(3)
    for sender in senders:
        sender.stop()
    status, history = host_a.request("GET", "/api/emotions?limit=100", token=token)
    total = len(senders[0].acked) + len(senders[1].acked)
    assert total > 50
    _, current = host_b.request("GET", "/api/emotions/current", token=token)
    expected_seqs = list(range(1, current["seq"] + 1))
    for device in devices:
        ids = device.finish(expected_seqs)
        # Each device: every event of the user, once, in the order the user's seq gives.
        assert device.seqs == expected_seqs
        assert ids == sorted(ids)
    assert sorted(senders[0].acked + senders[1].acked) == devices[0].ids


def test_killing_a_worker_loses_nothing_acknowledged(server_factory, shared_services):
    host_a = server_factory(**shared_services)
    two_workers = server_factory(**shared_services, WEB_CONCURRENCY=2)
    token = host_a.login()["access_token"]
    devices = []
    for _ in range(40):  # until both workers hold devices
        devices.append(ResumingDevice(two_workers, token))
        per_worker = two_workers.sockets_per_worker()
        if len(per_worker) == 2 and min(per_worker.values()) >= 2:
            break
    assert min(per_worker.values()) >= 2, per_worker
    for device in devices:
        device.start()
    streamer = Streamer(host_a, token)
    streamer.start()
    time.sleep(1)
    victim = max(per_worker, key=per_worker.get)
    os.kill(victim, signal.SIGKILL)
    time.sleep(2)
    streamer.stop()
    assert len(streamer.acked) > 50
    for device in devices:
        assert device.finish(streamer.acked) == streamer.acked
    assert sum(device.reconnects for device in devices) >= per_worker[victim]


def test_redis_restart_mid_stream_loses_nothing(server_factory, postgres_databases, private_redis):
    shared = {"DATABASE_URL": postgres_databases(), "REDIS_URL": private_redis.url, "BROKER_PREFIX": "midstream"}
    host_a, host_b = server_factory(**shared), server_factory(**shared)
    token = host_a.login()["access_token"]
    far = ResumingDevice(host_b, token)
    far.start()
    streamer = Streamer(host_a, token)
    streamer.start()
    time.sleep(0.7)
    private_redis.stop()
    time.sleep(1)
    private_redis.start()
    time.sleep(6)  # the listeners reconnect (backoff capped at 5 s) while the stream goes on
    streamer.stop()
    # Events stored during the outage reach the far device from SQL (its seq shows the gap).
    assert far.finish(streamer.acked) == streamer.acked


def test_presence_counts_across_hosts(server_factory, shared_services):
    host_a, host_b = server_factory(**shared_services), server_factory(**shared_services)
    token = host_a.login()["access_token"]
    first, hello = host_a.device(token)
    assert hello["devices"] == 1
    second, hello = host_b.device(token)
    assert hello["devices"] == 2
    joined = recv_json(first, skip=())
    assert (joined["type"], joined["devices"], joined["change"]) == ("presence", 2, "connected")
    for server in (host_a, host_b):
        assert server.request("GET", "/api/devices", token=token)[1]["devices"] == 2
    second.close()
    left = recv_json(first, skip=())
    assert (left["type"], left["devices"], left["change"]) == ("presence", 1, "disconnected")
    assert host_b.request("GET", "/api/devices", token=token)[1]["devices"] == 1
    first.close()
