"""The Redis broker: pub/sub on one channel, so every worker on every host reaches its own sockets."""
import logging
import threading
import uuid

import redis

from .base import Broker

log = logging.getLogger(__name__)

BACKOFF_FIRST, BACKOFF_CAP = 0.1, 5.0


class RedisBroker(Broker):
    """Publishes to `<prefix>:broadcast`; one listener per process hands other processes' messages to the hub.

    The listener runs in a thread (a greenlet under gevent's patching), is started lazily by the first
    socket of the process (never at import or before fork), and never dies: a Redis restart or outage
    is retried with capped exponential backoff. Pub/sub is at-most-once; SQL keeps every event.
    """

    shared = True

    def __init__(self, url, prefix):
        super().__init__()
        self.url = url
        self.channel = f"{prefix}:broadcast"
        self.origin = uuid.uuid4().hex  # tells this process's own messages apart on the channel
        self.listening = False
        self._client = None
        self._listener = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def _redis(self):
        if self._client is None:
            self._client = redis.Redis.from_url(
                self.url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=15
            )
        return self._client

    def start(self):
        if self._listener is not None:
            return
        with self._lock:
            if self._listener is None:
                self._listener = threading.Thread(target=self._listen_forever, name="redis-broker", daemon=True)
                self._listener.start()

    def stop(self):
        """Stop the listener (within about a second) and close the connections."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        if self._client is not None:
            self._client.close()

    def health(self):
        try:
            self._redis().ping()
        except redis.RedisError as exc:
            return f"redis unreachable: {exc}"
        if self._listener is not None and not self.listening:
            return "redis reachable, listener reconnecting"
        return None

    def _send(self, data):
        try:
            self._redis().publish(self.channel, f"{self.origin} {data}")
        except redis.RedisError as exc:
            # Stored and delivered here already; other processes miss it until Redis is back, and
            # their devices recover it from SQL.
            log.warning("could not publish to redis: %s", exc)

    def _listen_forever(self):
        backoff = BACKOFF_FIRST
        while not self._stopping.is_set():
            pubsub = None
            try:
                pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self.listening = True
                if backoff > BACKOFF_FIRST:
                    log.info("redis broker listening again on %s", self.channel)
                backoff = BACKOFF_FIRST
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._on_message(message["data"])
            except Exception as exc:  # noqa: BLE001 - the listener must outlive anything Redis does
                self.listening = False
                log.warning("redis broker listener lost its connection (%s); retrying in %.1fs", exc, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_CAP)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001
                        pass

    def _on_message(self, raw):
        # On the channel: "<origin> <json>"; the origin is a fixed-width hex id.
        try:
            origin, data = raw.decode().split(" ", 1)
        except (UnicodeDecodeError, ValueError, AttributeError):
            log.warning("ignoring a malformed broker message: %.200r", raw)
            return
        if origin != self.origin:
            self._deliver(data)
