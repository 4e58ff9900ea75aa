"""What every broker does: deliver a message to this process at once, and to other processes if shared."""
import json
import logging

log = logging.getLogger(__name__)


def encode(message):
    """Messages cross the broker as compact JSON, whichever backend carries them."""
    return json.dumps(message, separators=(",", ":"))


def online_list(members):
    """`[{"id", "name"}, ...]` from (socket id, name) pairs, in a stable order: by name (unnamed first), then id."""
    online = [{"id": member, "name": name} for member, name in members]
    return sorted(online, key=lambda d: (d["name"] or "", d["id"]))


class Broker:
    """Publishes messages (JSON-serialisable dicts) to the hubs of every worker.

    The publishing process's own hub gets the message directly, before and whatever the backend does:
    the sender's confirmation and the devices on the same worker never wait on (or depend on) the
    network. A shared backend then carries it to the other processes, which skip their own messages.
    """

    shared = False

    def __init__(self):
        self._handler = None

    def subscribe(self, handler):
        """Register the function that receives every message (this process's hub)."""
        self._handler = handler

    def start(self):
        """Start receiving from other processes, if the backend has any; safe to call often."""

    def stop(self):
        """Stop receiving from other processes."""

    # Presence: which sockets of a user are open, across every process the broker reaches. Members are
    # the ids of sockets (Connection.id), each with the name its device gave (or None). Changes return
    # the user's online list afterwards (see `online_list`), or None while the backend is unreachable.

    def presence_join(self, user_id, member, name=None):
        """Count `member` (named `name`) as an open socket of `user_id`; return the user's online list."""
        raise NotImplementedError

    def presence_leave(self, user_id, member):
        """Forget `member`; return the user's online list."""
        raise NotImplementedError

    def presence_list(self, user_id):
        """Return the user's online list."""
        raise NotImplementedError

    def presence_count(self, user_id):
        """Return how many sockets `user_id` has open."""
        raise NotImplementedError

    # Tickets: single-use values with a lifetime, visible to every process the broker reaches (a ticket
    # made by one worker is taken by whichever worker the socket lands on).

    def put_ticket(self, key, value, ttl):
        """Keep `value` (a string) under `key` for `ttl` seconds, or until taken."""
        raise NotImplementedError

    def take_ticket(self, key):
        """Return the value under `key` and forget it, or None if there is none (taken or expired)."""
        raise NotImplementedError

    def health(self):
        """Return None when the broker works, else a short description of what is wrong."""
        return None

    def epoch(self):
        """A number that stays the same for as long as every message published by any process reaches this
        one, and changes when that is interrupted; None while it is not so (see revocations.py)."""
        return None

    def publish(self, message):
        """Deliver `message` here, then hand it to the backend for the other processes."""
        self.publish_many([message])

    def publish_many(self, messages):
        """Publish several messages in order (one round trip to a shared backend)."""
        batch = [encode(message) for message in messages]
        for data in batch:
            self._deliver(data)
        self._send(batch)

    def _send(self, batch):
        """Carry encoded messages to other processes (nothing to do for a single-process backend)."""

    def _deliver(self, data):
        if self._handler is None:
            return
        try:
            # Decoding the JSON gives every hub the same message, whichever way it came.
            message = json.loads(data)
        except ValueError:
            log.warning("ignoring a broker message that is not JSON: %.200r", data)
            return
        try:
            self._handler(message)
        except Exception:
            # A bug in delivery must not turn into a failed store for the sender.
            log.exception("delivering a broker message failed")
