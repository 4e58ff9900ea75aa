"""The tokens this worker has found not revoked, so that a token checked once is not looked up in SQL
again, while a logout or password change still takes effect at once.

A token counts as not revoked without a database read only while all of these hold:

- a read found it not revoked, and no revoke message (logout, password change) of any user was noted
  while that read ran: `mark()` before the read, `remember()` after it, which keeps nothing otherwise;
- no revoke message of its user was noted since (`note`, which sees every broker message before the hub
  closes sockets; a revocation made in this process is delivered here before `publish` returns);
- the broker heard every message since: its `epoch()` is the one the token was kept under. A Redis
  listener that lost its connection may have lost a revoke with it: while it is away (or before it first
  subscribed) nothing is kept or used, and when its epoch changes everything kept is dropped;
- its user's entry is younger than the lifetime, for changes made outside the app (a user deleted in SQL).

Refusals (revoked, unknown user) are never kept: they are read from the database every time.
"""
import threading
import time

# Above this many tokens kept in one worker, everything is dropped and the cache fills again.
MAX_TOKENS = 100_000


class _Entry:
    """A user's tokens known not to be revoked, at the token version the database had for the user."""

    __slots__ = ("version", "filled", "tokens")

    def __init__(self, version, filled):
        self.version = version
        self.filled = filled
        self.tokens = set()  # (jti, sid) pairs


class RevocationCache:
    """Per-worker memory of the revocation check's "not revoked" answers, by user id.

    `lifetime` is in seconds; 0 turns the cache off (every check reads the database).
    """

    def __init__(self, broker, lifetime, max_tokens=MAX_TOKENS, clock=time.monotonic):
        self.lifetime = lifetime
        self._broker = broker
        self._max_tokens = max_tokens
        self._clock = clock
        self._users = {}  # user id -> _Entry
        self._size = 0  # tokens kept, over all users
        self._epoch = None  # the broker's epoch the kept tokens were stored under
        self._revokes = 0  # revoke messages noted so far
        # Under gevent nothing here waits, so greenlets never interleave; the lock is for real threads
        # (the Redis listener outside gevent, e.g. `flask run`).
        self._lock = threading.Lock()

    def allows(self, user_id, jti, sid, version):
        """Whether the token is known not to be revoked, with no database read."""
        if not self.lifetime:
            return False
        with self._lock:
            if not self._in_epoch():
                return False
            entry = self._users.get(user_id)
            if entry is None:
                return False
            if self._clock() - entry.filled >= self.lifetime:
                self._drop(user_id)
                return False
            return version >= entry.version and (jti, sid) in entry.tokens

    def mark(self):
        """Taken just before a database read of a token's revocation, and handed to `remember`."""
        return self._revokes, self._broker.epoch()

    def remember(self, mark, user_id, jti, sid, version):
        """Keep the database's answer that the token is not revoked (the user's token version being
        `version`), unless a revoke message was noted or the broker's connection was interrupted since
        `mark` was taken: the read may then predate the revocation."""
        if not self.lifetime:
            return
        revokes, epoch = mark
        with self._lock:
            if not self._in_epoch() or epoch != self._epoch or revokes != self._revokes:
                return
            now = self._clock()
            entry = self._users.get(user_id)
            if entry is None or entry.version != version or now - entry.filled >= self.lifetime:
                self._drop(user_id)
                entry = self._users[user_id] = _Entry(version, now)
            key = (jti, sid)
            if key in entry.tokens:
                return
            if self._size >= self._max_tokens:
                self._clear()
                entry = self._users[user_id] = _Entry(version, now)
            entry.tokens.add(key)
            self._size += 1

    def note(self, message):
        """See a broker message before the hub acts on it: a revoke forgets every token of its user."""
        if message.get("kind") != "revoke":
            return
        with self._lock:
            self._revokes += 1
            try:
                self._drop(int(message.get("user_id")))
            except (TypeError, ValueError):
                self._clear()  # whose tokens it names is unclear: forget everyone's

    def off(self):
        """Read every token from the database from now on."""
        with self._lock:
            self.lifetime = 0
            self._clear()

    def __len__(self):
        """How many tokens are kept."""
        return self._size

    def _in_epoch(self):
        """Whether the broker is hearing every message in the epoch the kept tokens belong to; when its
        epoch changed, or it is not listening, forget them all."""
        epoch = self._broker.epoch()
        if epoch != self._epoch:
            self._clear()
            self._epoch = epoch
        return epoch is not None

    def _drop(self, user_id):
        entry = self._users.pop(user_id, None)
        if entry is not None:
            self._size -= len(entry.tokens)

    def _clear(self):
        self._users.clear()
        self._size = 0
