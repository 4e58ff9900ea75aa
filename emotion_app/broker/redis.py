"""The Redis broker: pub/sub on one channel, so every worker on every host reaches its own sockets."""
import logging
import threading
import time
import uuid

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..metrics import BROKER_RECONNECTS
from .base import Broker, online_list

log = logging.getLogger(__name__)

BACKOFF_FIRST, BACKOFF_CAP = 0.1, 5.0
# Presence entries live this long unless refreshed; each process refreshes its own well before, so a
# process that dies (even by SIGKILL) stops counting within PRESENCE_TTL.
PRESENCE_TTL, PRESENCE_REFRESH = 60.0, 20.0


def _online(entries):
    """The online list from the members of a user's presence set."""
    members = []
    for raw in entries:
        parts = raw.decode(errors="replace").split(":", 2)
        if len(parts) >= 2:
            members.append((parts[1], parts[2] if len(parts) == 3 else None))
    return online_list(members)


class RedisBroker(Broker):
    """Publishes to `<prefix>:broadcast`; one listener per process hands other processes' messages to the hub.

    The listener runs in a thread (a greenlet under gevent's patching), is started lazily by the first
    socket of the process (never at import or before fork), and never dies: a Redis restart or outage
    is retried with capped exponential backoff. Pub/sub is at-most-once; SQL keeps every event.

    `epoch()` counts the subscriptions Redis has confirmed: it stays the same while the listener hears
    every message published on the channel, and is None until the first confirmation and whenever the
    connection is lost (messages published meanwhile are gone).
    """

    shared = True
    # Presence: one sorted set per user, members "<origin>:<socket>" or "<origin>:<socket>:<name>", scored
    # by when they expire.

    def __init__(self, url, prefix):
        super().__init__()
        self.url = url
        self.channel = f"{prefix}:broadcast"
        self.origin = uuid.uuid4().hex  # tells this process's own messages apart on the channel
        self._epoch = None  # the current subscription's number; None while there is none
        self._subscriptions = 0
        self._client = None
        self._listener = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._prefix = prefix
        self._members = {}  # user id -> {socket id: set member} of this process, refreshed by the listener
        self._refreshed = 0.0

    @property
    def listening(self):
        """Whether the listener is subscribed, so that other processes' messages reach this one."""
        return self._epoch is not None

    def epoch(self):
        return self._epoch

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

    def _presence_key(self, user_id):
        return f"{self._prefix}:presence:{user_id}"

    def _entry(self, member, name):
        # The socket's name travels in the set's member itself: listing the user's devices stays one read.
        return f"{self.origin}:{member}" if name is None else f"{self.origin}:{member}:{name}"

    def presence_join(self, user_id, member, name=None):
        user_id = str(user_id)
        entry = self._entry(member, name)
        self._members.setdefault(user_id, {})[member] = entry

        def join(pipe, key):
            pipe.zadd(key, {entry: time.time() + PRESENCE_TTL})
            pipe.expire(key, int(PRESENCE_TTL) + 1)

        return self._online_after(user_id, join, "not recorded")

    def presence_leave(self, user_id, member):
        user_id = str(user_id)
        members = self._members.get(user_id, {})
        entry = members.pop(member, None) or self._entry(member, None)
        if not members:
            self._members.pop(user_id, None)
        return self._online_after(user_id, lambda pipe, key: pipe.zrem(key, entry), "not updated")

    def presence_list(self, user_id):
        """The user's open sockets on every host; None while Redis is unreachable."""
        return self._online_after(user_id, None, "unknown")

    def _online_after(self, user_id, change, failure):
        """Apply `change(pipe, key)` (if any), drop expired members and read the user's online list, in one
        round trip; None (logged as "presence <failure>") while Redis is unreachable."""
        key = self._presence_key(user_id)
        try:
            # No MULTI/EXEC: the commands still run in order, and each reply is a state the set was in.
            pipe = self._redis().pipeline(transaction=False)
            if change is not None:
                change(pipe, key)
            pipe.zremrangebyscore(key, "-inf", time.time())
            pipe.zrange(key, 0, -1)
            return _online(pipe.execute()[-1])
        except redis.RedisError as exc:
            log.warning("presence %s, redis unavailable: %s", failure, exc)
            return None

    def presence_count(self, user_id):
        """How many sockets the user has open on every host; None while Redis is unreachable."""
        key = self._presence_key(user_id)
        try:
            pipe = self._redis().pipeline(transaction=False)
            pipe.zremrangebyscore(key, "-inf", time.time())
            pipe.zcard(key)
            return pipe.execute()[1]
        except redis.RedisError as exc:
            log.warning("presence unknown, redis unavailable: %s", exc)
            return None

    def _refresh_presence(self):
        """Push the expiry of this process's present members forward (called by the listener)."""
        now = time.time()
        if now - self._refreshed < PRESENCE_REFRESH:
            return
        self._refreshed = now
        present = {user_id: dict(members) for user_id, members in list(self._members.items())}
        pipe = self._redis().pipeline(transaction=False)
        for user_id, members in present.items():
            key = self._presence_key(user_id)
            pipe.zadd(key, {entry: now + PRESENCE_TTL for entry in members.values()})
            pipe.expire(key, int(PRESENCE_TTL) + 1)
        pipe.execute()
        # A socket that closed while this was on its way (its removal may have reached Redis first) was
        # put back: take it out again, or other devices would list it until it expires.
        gone = [(user_id, entry) for user_id, members in present.items() for member, entry in members.items()
                if member not in self._members.get(user_id, ())]
        if gone:
            pipe = self._redis().pipeline(transaction=False)
            for user_id, entry in gone:
                pipe.zrem(self._presence_key(user_id), entry)
            pipe.execute()

    def put_ticket(self, key, value, ttl):
        self._redis().set(f"{self._prefix}:ticket:{key}", value, ex=max(1, int(ttl)))

    def take_ticket(self, key):
        value = self._redis().getdel(f"{self._prefix}:ticket:{key}")  # atomic: one taker at most
        return value.decode() if value is not None else None

    def _send(self, batch):
        try:
            if len(batch) == 1:
                self._redis().publish(self.channel, f"{self.origin} {batch[0]}")
                return
            pipe = self._redis().pipeline(transaction=False)
            for data in batch:
                pipe.publish(self.channel, f"{self.origin} {data}")
            pipe.execute()
        except redis.RedisError as exc:
            # Stored and delivered here already; devices elsewhere notice the gap in their user's
            # seq with the next event and fetch what they missed from SQL, or resume with since.
            log.warning("could not publish to redis: %s", exc)

    def _listen_forever(self):
        # A connection of its own that never retries by itself: redis-py would otherwise reconnect and
        # subscribe again inside get_message, silently, and the messages published meanwhile would be lost
        # without the epoch changing.
        client = redis.Redis.from_url(
            self.url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=15, retry=Retry(NoBackoff(), 0)
        )
        backoff = BACKOFF_FIRST
        while not self._stopping.is_set():
            pubsub = None
            try:
                pubsub = client.pubsub()
                pubsub.subscribe(self.channel)
                self._refreshed = 0.0  # entries may have expired while Redis was away
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        pass
                    elif message["type"] == "message":
                        self._on_message(message["data"])
                    elif message["type"] == "subscribe":
                        backoff = self._subscribed(backoff)
                    self._refresh_presence()
            except Exception as exc:  # noqa: BLE001 - the listener must outlive anything Redis does
                self._epoch = None
                log.warning("redis broker listener lost its connection (%s); retrying in %.1fs", exc, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_CAP)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001
                        pass
        self._epoch = None
        client.close()

    def _subscribed(self, backoff):
        """Redis confirmed the subscription: every message published from now on reaches this process.
        Return the backoff for the next outage."""
        self._subscriptions += 1
        self._epoch = self._subscriptions
        if backoff > BACKOFF_FIRST:
            BROKER_RECONNECTS.inc()
            log.info("redis broker listening again on %s", self.channel)
        return BACKOFF_FIRST

    def _on_message(self, raw):
        # On the channel: "<origin> <json>"; the origin is a fixed-width hex id.
        try:
            origin, data = raw.decode().split(" ", 1)
        except (UnicodeDecodeError, ValueError, AttributeError):
            log.warning("ignoring a malformed broker message: %.200r", raw)
            return
        if origin != self.origin:
            self._deliver(data)
