"""The current state of the users who have sockets on this worker, so that a user's next device connects
without a database read.

A device's first frame carries its user's latest event and the seq it resumes from. For a user with a socket
here already, the worker knows both: it read them when that socket connected, and the hub has seen every
event of the user since. The state held for a user is used only while all of these hold:

- a database read confirmed it, in the broker epoch it is used in (the broker then delivered every event
  since: a Redis listener that lost its connection may have lost events with it, see revocations.py), and
  no longer ago than `lifetime` (a change made outside the app, or an event whose publishing failed);
- the user has had a socket on this worker ever since: the entry goes with the user's last socket;
- it is at least as new as every event of the user the hub has seen. Events seen while the confirming read
  ran are kept (the hub records them for any user with a socket here), so a read that missed an event
  committed during it cannot hide it.

Everything else reads the database, as does a device resuming with `since` (it needs the pruning mark).
"""
import threading
import time

LIFETIME = 60.0  # seconds a confirmed state is trusted


class _Held:
    __slots__ = ("seq", "current", "epoch", "confirmed_at")

    def __init__(self):
        self.seq = -1  # nothing seen yet
        self.current = None
        self.epoch = None
        self.confirmed_at = None  # monotonic time of the confirming database read; None: not confirmed


class HeldStates:
    """The state of each user with a socket here, by user id (the hub's keys: strings).

    `epoch` is the broker's epoch() (its result None: nothing is held).
    """

    def __init__(self, epoch, lifetime=LIFETIME, clock=time.monotonic):
        self._epoch = epoch
        self.lifetime = lifetime
        self._clock = clock
        self._users = {}
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

    def mark(self):
        """Taken before the database read whose result is handed to `confirm`."""
        return self._epoch()

    def confirm(self, mark, user_id, current, last_seq):
        """Hold what a database read found for a user with a socket here (it was attached before the read),
        unless the broker's epoch changed since `mark`: events may have been missed meanwhile."""
        with self._lock:
            if mark is None or mark != self._epoch() or not self.lifetime:
                return
            held = self._users.get(user_id)
            if held is None:
                held = self._users[user_id] = _Held()
            if last_seq >= held.seq:
                held.seq, held.current = last_seq, current
            held.epoch, held.confirmed_at = mark, self._clock()

    def saw(self, user_id, event):
        """Note an event of a user with a socket here, as the hub delivers it."""
        with self._lock:
            held = self._users.get(user_id)
            if held is None:
                held = self._users[user_id] = _Held()
            if event["seq"] > held.seq:
                held.seq, held.current = event["seq"], event

    def forget(self, user_id):
        """The user's last socket here has gone."""
        with self._lock:
            self._users.pop(user_id, None)

    def off(self):
        """Read every state from the database from now on."""
        with self._lock:
            self.lifetime = 0
            self._users.clear()

    def __len__(self):
        return len(self._users)
