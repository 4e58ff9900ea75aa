"""The current state of the users who connected to this worker lately, so that their next device (or the
same one, reconnecting) starts without a database read.

A device's first frame carries its user's latest event and the seq it resumes from. Once a socket of the
user has read both from the database, the worker can keep them current by itself: the broker hands every
worker every event (one channel). The state held for a user is used only while all of these hold:

- a database read confirmed it, in the broker epoch it is used in (the broker then delivered every event
  since: a Redis listener that lost its connection may have lost events with it, see revocations.py), and
  no longer ago than `lifetime` (for a change made outside the app, or an event whose publishing failed);
- it is at least as new as every event of the user the worker has seen since the read began. Events that
  arrive while a read runs are kept (`reading` announces the read), so a read that missed an event
  committed during it cannot hide it.

Everything else reads the database, as does a device resuming with `since` (it needs the pruning mark).
At most `max_users` users are held; past that, everything is dropped and the worker starts again.
"""
import threading
import time

LIFETIME = 60.0  # seconds a confirmed state is trusted
MAX_USERS = 10_000


class _Held:
    __slots__ = ("seq", "current", "epoch", "confirmed_at")

    def __init__(self):
        self.seq = -1  # nothing seen yet
        self.current = None
        self.epoch = None
        self.confirmed_at = None  # monotonic time of the confirming database read; None: not confirmed


class HeldStates:
    """The state of the users read lately, by user id (a string, as the hub keys its sockets).

    `epoch` is the broker's epoch() (its result None: nothing is held).
    """

    def __init__(self, epoch, lifetime=LIFETIME, max_users=MAX_USERS, clock=time.monotonic):
        self._epoch = epoch
        self.lifetime = lifetime
        self._max_users = max_users
        self._clock = clock
        self._users = {}
        self._reading = {}  # user id -> reads under way
        # Under gevent nothing here waits, so greenlets never interleave; the lock is for real threads
        # (the Redis listener outside gevent, e.g. `flask run`).
        self._lock = threading.Lock()

    def get(self, user_id):
        """The user's (latest event or None, last seq) without a database read, or None when not known."""
        with self._lock:
            held = self._users.get(user_id)
            if held is None or held.confirmed_at is None or not self.lifetime:
                return None
            if held.epoch != self._epoch() or self._clock() - held.confirmed_at >= self.lifetime:
                return None
            return held.current, held.seq

    def reading(self, user_id):
        """Announce a database read of the user's state; return the mark to hand to `confirm` (or to
        `abandon`, if the read fails)."""
        with self._lock:
            self._reading[user_id] = self._reading.get(user_id, 0) + 1
            return self._epoch()

    def confirm(self, mark, user_id, current, last_seq):
        """Hold what the database read announced with `reading` found, unless the broker's epoch changed
        since `mark`: events may have been missed meanwhile."""
        with self._lock:
            self._done_reading(user_id)
            if mark is None or mark != self._epoch() or not self.lifetime:
                return
            held = self._users.get(user_id) or self._new(user_id)
            if last_seq >= held.seq:
                held.seq, held.current = last_seq, current
            held.epoch, held.confirmed_at = mark, self._clock()

    def abandon(self, user_id):
        """The read announced with `reading` failed."""
        with self._lock:
            self._done_reading(user_id)

    def saw(self, user_id, event):
        """Note an event as the broker delivers it (to this worker, which may hold no socket of its user)."""
        with self._lock:
            held = self._users.get(user_id)
            if held is None:
                if user_id not in self._reading:
                    return  # nothing held for this user, and nothing being read
                held = self._new(user_id)
            if event["seq"] > held.seq:
                held.seq, held.current = event["seq"], event

    def off(self):
        """Read every state from the database from now on."""
        with self._lock:
            self.lifetime = 0
            self._users.clear()

    def __len__(self):
        return len(self._users)

    def _new(self, user_id):
        if len(self._users) >= self._max_users:
            self._users.clear()
        held = self._users[user_id] = _Held()
        return held

    def _done_reading(self, user_id):
        left = self._reading.pop(user_id, 1) - 1
        if left:
            self._reading[user_id] = left
