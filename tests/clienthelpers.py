"""Helpers for the tests of the Python client (clients/python): a client tuned for fast tests, a thread
that reads a watch, and a writer that stores events over HTTP whatever happens to the server."""
import threading
import time
import uuid

import pytest
from emotion_client import Backoff, Client, Connected, Disconnected, EmotionUpdate

from tests.conftest import PASSWORD, wait_until  # noqa: F401 - the client tests import it from here

_OPEN = []


@pytest.fixture(autouse=True)
def close_clients():
    """Close the test's clients afterwards: an idle keep-alive connection delays a server's stop by
    up to its keepalive (5 s), and every module stops its servers."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def fast_client(url, **options):
    """A client with short timeouts and a quick reconnect schedule (closed after the test)."""
    options.setdefault("timeout", 2.0)
    options.setdefault("retry_timeout", 20.0)
    options.setdefault("heartbeat", 1.0)
    options.setdefault("heartbeat_timeout", 1.0)
    options.setdefault("backoff", Backoff(base=0.05, cap=0.5, stable_after=1.0))
    options.setdefault("device", "test client")
    client = Client(url, **options)
    _OPEN.append(client)
    return client


def logged_in_client(url, **options):
    """A fresh user's client whose HTTP connections are all closed, so a server can stop at once."""
    setup = fast_client(url)
    new_user(setup)
    setup.close()
    return fast_client(url, tokens=setup.tokens, **options)


def new_user(client):
    """Register a fresh user through `client`, log it in there, and return its username."""
    username = f"user_{uuid.uuid4().hex[:10]}"
    client.register(username, PASSWORD)
    client.login(username, PASSWORD)
    return username


class Reader(threading.Thread):
    """Reads a watch to its end, keeping every item; `error` is what ended it, if anything."""

    def __init__(self, watch):
        super().__init__(daemon=True)
        self.watch = watch
        self.items = []
        self.error = None
        self.start()

    def run(self):
        try:
            for item in self.watch:
                self.items.append(item)
        except Exception as exc:  # the test inspects how the stream ended
            self.error = exc

    @property
    def ids(self):
        return [item.event.id for item in self.items if isinstance(item, EmotionUpdate)]

    def of(self, kind):
        return [item for item in self.items if isinstance(item, kind)]

    def connects(self):
        return len(self.of(Connected))

    def disconnects(self):
        return self.of(Disconnected)

    def wait_connected(self, count=1, timeout=15):
        wait_until(lambda: self.connects() >= count, timeout, f"{count} connection(s)")

    def wait_for_id(self, event_id, timeout=15):
        wait_until(lambda: self.ids and self.ids[-1] >= event_id, timeout, f"event {event_id} (have {self.ids[-3:]})")


class Writer(threading.Thread):
    """Stores an update over HTTP every `pause` seconds on the servers given, in turn, ignoring
    failures (the server may be down); `acked` holds the ids of the updates it was told were stored."""

    def __init__(self, servers, token, pause=0.03):
        super().__init__(daemon=True)
        self.servers = list(servers)
        self.token = token
        self.pause = pause
        self.acked = []
        self.stopping = threading.Event()

    def run(self):
        turn = 0
        while not self.stopping.is_set():
            server = self.servers[turn % len(self.servers)]
            turn += 1
            try:
                update = {"emotion": "happy"}
                status, body = server.request("POST", "/api/emotions", update, token=self.token, timeout=2)
                if status == 201:
                    self.acked.append(body["id"])
            except OSError:
                pass
            time.sleep(self.pause)

    def stop(self):
        self.stopping.set()
        self.join(timeout=10)
        return self.acked


def stored_ids(client):
    """Every event id of the client's user, oldest first."""
    return sorted(event.id for event in client.history(limit=None))
