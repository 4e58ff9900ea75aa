"""The in-process broker: the default, for a single worker."""
import time
from collections import deque

from .base import Broker, online_list


class MemoryBroker(Broker):
    """Delivers to this process only; messages still go through JSON, exactly as over Redis."""

    shared = False

    def __init__(self):
        super().__init__()
        self._present = {}  # user id -> {socket id: name}
        self._tickets = {}
        self._expiry = deque()  # (expires, key) in the order tickets were made

    def epoch(self):
        # Every message published in this process is delivered here as it is published, and there is no
        # connection to lose. Other processes are never heard: the in-process broker serves one worker
        # (config.server_settings), and beside others the worker's caches are turned off (start_delivery).
        return 0

    def presence_join(self, user_id, member, name=None):
        self._present.setdefault(str(user_id), {})[member] = name
        return self.presence_list(user_id)

    def presence_leave(self, user_id, member):
        members = self._present.get(str(user_id), {})
        members.pop(member, None)
        if not members:
            self._present.pop(str(user_id), None)
        return self.presence_list(user_id)

    def presence_list(self, user_id):
        return online_list(self._present.get(str(user_id), {}).items())

    def presence_count(self, user_id):
        return len(self._present.get(str(user_id), ()))

    def put_ticket(self, key, value, ttl):
        now = time.monotonic()
        # Expired tickets are dropped as new ones come, so memory stays bounded by the rate of making them.
        while self._expiry and self._expiry[0][0] <= now:
            expired = self._expiry.popleft()[1]
            if self._tickets.get(expired, (None, 0))[1] <= now:
                self._tickets.pop(expired, None)
        self._tickets[key] = (value, now + ttl)
        self._expiry.append((now + ttl, key))

    def take_ticket(self, key):
        value, expires = self._tickets.pop(key, (None, 0))
        return value if expires > time.monotonic() else None
