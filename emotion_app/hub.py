"""This process's open sockets by user, each with a bounded outbound queue and its own writer.

The hub never blocks. Delivering writes a ready-made frame straight to each idle connection whose
socket takes it without waiting (the usual case); anything else goes on the connection's queue, which
at most one writer greenlet per connection (started when there is something to send) works through.
So a device that stops reading only ever delays itself; when its queue fills up it is disconnected,
and it reconnects and catches up from SQL.
"""
import logging
import secrets
import threading
import time
from collections import deque
from datetime import datetime

import gevent
from simple_websocket import ConnectionClosed

from . import messages
from .heldstate import HeldStates
from .metrics import DATABASE_ERRORS, DELIVERY_SECONDS, QUEUE_DROPS

log = logging.getLogger(__name__)

# Close codes sent to devices.
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TOKEN_EXPIRED = 4401
CLOSE_TOKEN_REVOKED = 4403

NOTHING_QUEUED = ()  # a connection's queue while it is empty (see Connection.__init__)


def text_frame(text):
    """A whole, unmasked server-to-client WebSocket text frame (RFC 6455 5.2).

    The same bytes serve every device: a frame without RSV1 is valid whether or not permessage-deflate
    was negotiated (RFC 7692 6), so no per-connection encoder state is involved.
    """
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


class SerialSocket:
    """Wraps a connection's raw socket so that every write is whole, one at a time, and bounded in time.

    simple-websocket writes with `socket.send`, which may write only part of a frame, and writes from
    two greenlets (its pinger and our writer); two greenlets writing one gevent socket raise
    ConcurrentObjectUseError. Here every write is a `sendall` under a lock. A write that stalls longer
    than `timeout` (the peer stopped reading) closes the socket: the stream is unusable after a partial
    frame, and the reader notices the close at once.
    """

    __slots__ = ("_sock", "_timeout", "_lock")  # one per socket

    def __init__(self, sock, timeout):
        self._sock = sock
        self._timeout = timeout
        self._lock = threading.Lock()

    def send(self, data):
        with self._lock:
            try:
                with gevent.Timeout(self._timeout):
                    # One send() usually takes a whole small frame; sendall() only for the rest.
                    sent = self._sock.send(data)
                    if sent < len(data):
                        self._sock.sendall(memoryview(data)[sent:])
            except gevent.Timeout:
                self._sock.close()
                raise BrokenPipeError("send timed out: the peer is not reading") from None
        return len(data)

    def send_nowait(self, data):
        """Write `data` without waiting, if no other write is under way; return whether it was taken.

        Usually the kernel takes a small frame whole. If it takes only part (its buffer is nearly
        full), the rest is written by a greenlet that keeps the lock until done, so the frame still
        goes out whole and first. Raises OSError if the connection is gone.
        """
        if not self._lock.acquire(blocking=False):
            return False
        try:
            sent = self._sock.send(data, 0, 0.0)  # timeout 0: raise rather than wait
        except BlockingIOError:
            self._lock.release()
            return False
        except BaseException:
            self._lock.release()
            raise
        if sent == len(data):
            self._lock.release()
        else:
            gevent.spawn(self._finish, memoryview(data)[sent:])
        return True

    def _finish(self, rest):
        try:
            with gevent.Timeout(self._timeout):
                self._sock.sendall(rest)
        except (gevent.Timeout, OSError):
            self._sock.close()  # a frame cut short leaves the stream unusable
        finally:
            self._lock.release()

    def close(self):
        self._sock.close()

    def __getattr__(self, name):
        return getattr(self._sock, name)


class Connection:
    """One open WebSocket of one user: its identity, outbound queue and writer greenlet.

    The writer greenlet exists only while there is something queued: an idle socket costs no greenlet
    of ours, and sending stays serialised because there is never more than one writer (and an event is
    written directly only when nothing is queued and no writer runs). Events go out in `seq` order,
    each once: an event already sent is skipped, and
    a gap (an event arrived before one published earlier elsewhere, or a missed broker message) is
    filled from SQL through `fetch` before going on. Replays (`since`) come from SQL the same way.
    """

    # Slots: a worker holds thousands of these, and an instance dict would cost more than the fields.
    __slots__ = (
        "id", "ws", "user_id", "jti", "sid", "expires_at", "name", "queue", "_queue_size", "_started", "closing",
        "last_seq", "paused", "close_code", "_fetch", "_replay_limit", "_send_timeout", "_writer", "candidate",
        "candidate_revoked",
    )

    def __init__(
        self, ws, user_id, jti, queue_size, send_timeout, fetch, replay_limit, sid=None, name=None, expires_at=None
    ):
        self.id = secrets.token_hex(8)  # 16 hex digits, without building a UUID
        self.ws = ws
        self.user_id = str(user_id)
        self.jti = jti
        self.sid = sid  # the login session the token belongs to
        self.expires_at = expires_at  # when the token expires (epoch seconds); a refresh moves it
        self.name = name  # the name the device gave itself (contract/fields.py normalises it), or None
        # A deque only while something waits: an empty one costs 760 bytes, and idle sockets need none.
        self.queue = NOTHING_QUEUED
        self._queue_size = queue_size
        self._started = False
        self.closing = False
        self.last_seq = 0
        self.paused = False  # a capped replay waits for the device to ask for the next page
        self.close_code = None  # why the server ended the socket, if it did
        self._fetch = fetch
        self._replay_limit = replay_limit
        self._send_timeout = send_timeout
        ws.sock = SerialSocket(ws.sock, send_timeout)
        self._writer = None
        # A token this socket is switching to (refresh), while it is checked: (jti, sid). A revocation of
        # it that arrives meanwhile only marks it, so the check refuses it.
        self.candidate = None
        self.candidate_revoked = False

    @property
    def device(self):
        """This socket as presence frames show it: `{"id", "name"}`."""
        return {"id": self.id, "name": self.name}

    def start(self, last_seq, since=None):
        """Start sending: the events after id `since` (if given), then what is queued, then live ones.

        Until then frames only queue up, so that connection_established goes first.
        """
        self.last_seq = last_seq
        self._started = True
        if since is not None or self.queue:
            self._writer = gevent.spawn(self._write_loop, since)

    def send_first(self, text):
        """Write a text frame before `start`, while nothing else writes to the socket (connection_established).

        A ready frame, like events: no per-socket encoder is involved, and the kernel usually takes it at
        once, with no timer set.
        """
        if not self.ws.connected:
            raise ConnectionClosed(self.ws.close_reason, self.ws.close_message)
        frame = text_frame(text)
        if not self.ws.sock.send_nowait(frame):
            self.ws.sock.send(frame)

    def push(self, text):
        """Send or queue a text frame; a connection whose queue is full is too slow and is dropped.

        As for events, an idle connection's frame is written at once if the socket takes it without
        waiting: an idle socket then never needs a queue or a writer greenlet for a presence frame.
        """
        if self._writer is None and self._started and not self.queue and not self.closing:
            try:
                if self.ws.sock.send_nowait(text_frame(text)):
                    return
            except OSError:
                self.abort()
                return
        self._put(text)

    def push_event(self, seq, frame, stored_at):
        """Send or queue one of the user's events, as a ready WebSocket frame (encoded once for all
        devices); `stored_at` (epoch seconds) is when it was committed.

        The usual case, the next event of an idle connection, is written at once if the socket takes
        it without waiting: no greenlet, no queue. Anything else goes through the queue and writer.
        """
        if self.paused:  # a paused device fetches it from SQL when it pages on
            return
        if seq == self.last_seq + 1 and self._writer is None and self._started and not self.queue and not self.closing:
            try:
                sent = self.ws.sock.send_nowait(frame)
            except OSError:
                self.abort()
                return
            if sent:
                self._delivered(seq, stored_at)
                return
        self._put(("event", seq, frame, stored_at))

    def sync(self, since):
        """Replay the events after id `since`, as the device asked."""
        self._put(("sync", since))

    def _put(self, item, final=False):
        if self.closing:
            return
        if len(self.queue) >= self._queue_size:
            QUEUE_DROPS.inc()
            log.warning("dropping a slow socket of user %s: %d frames waiting", self.user_id, len(self.queue))
            self.abort()
            return
        if self.queue is NOTHING_QUEUED:
            self.queue = deque()
        self.queue.append(item)
        self.closing = final
        # gevent switches only where code waits, so this check-and-spawn cannot race the writer's exit.
        if self._writer is None and self._started:
            self._writer = gevent.spawn(self._write_loop, None)

    def close(self, code, reason, error=None):
        """Send an optional error frame, then a close frame with `code`, after what is already queued."""
        if error:
            self.push(error)
        self.close_code = self.close_code or code
        self._put(("close", code, reason), final=True)

    def abort(self):
        """Cut the connection at once, without a close handshake (the peer is not reading anyway)."""
        self.close_code = self.close_code or "dropped"
        self.closing = True
        try:
            self.ws.sock.close()
        except OSError:
            pass
        self.ws.connected = False
        self.ws.event.set()  # wake the receive loop so the handler returns now

    def finish(self):
        """Stop the writer when the handler returns, after it has sent a close frame that is queued."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        if self.closing and self.ws.connected:
            writer.join(timeout=self._send_timeout)
        self.closing = True
        writer.kill(block=False)

    def _write_loop(self, since):
        try:
            if since is not None:
                self._replay(since=since)
            while self.queue:
                item = self.queue.popleft()
                if isinstance(item, str):
                    self.ws.send(item)
                elif item[0] == "event":
                    self._send_event(*item[1:])
                elif item[0] == "sync":
                    self._replay(since=item[1])
                else:
                    self.ws.close(reason=item[1], message=item[2])
                    self.ws.event.set()  # wake the receive loop: the socket is closed
                    return
            self._writer = None  # all sent; the next frame starts a new writer
            self.queue = NOTHING_QUEUED
        except ReplayFailed:
            log.warning("could not load missed events for user %s; closing so the device resumes", self.user_id)
            try:
                self.ws.send(messages.error("Could not load missed events: reconnect with since", code="replay_failed"))
                self.ws.close(reason=CLOSE_INTERNAL_ERROR, message="Replay failed")
            except Exception:  # noqa: BLE001
                pass
            self.abort()
        except Exception as exc:  # noqa: BLE001 - a dead peer shows up here in many forms
            log.debug("writer of user %s stopped: %r", self.user_id, exc)
            self.abort()

    def _send_event(self, seq, frame, stored_at):
        if self.paused or seq <= self.last_seq:
            return  # sent already (by a replay or catch-up), or to be fetched when the device pages on
        if seq > self.last_seq + 1:
            self._replay(after_seq=self.last_seq)  # fill the gap from SQL, this event included
            if seq <= self.last_seq or self.paused:
                return
        self.ws.sock.send(frame)
        self._delivered(seq, stored_at)

    def _delivered(self, seq, stored_at):
        """Note that event `seq`, committed at `stored_at`, went out on this socket."""
        self.last_seq = seq
        DELIVERY_SECONDS.observe(max(0.0, time.time() - stored_at))

    def _replay(self, since=None, after_seq=None):
        """Send the user's stored events after id `since` (or after `after_seq`), a page at most."""
        try:
            events = self._fetch(self._replay_limit + 1, since_id=since, after_seq=after_seq)
        except Exception as exc:  # noqa: BLE001 - the database is the only source of what was missed
            DATABASE_ERRORS.inc()
            raise ReplayFailed() from exc
        has_more = len(events) > self._replay_limit
        events = events[: self._replay_limit]
        for event in events:
            if event["seq"] > self.last_seq or since is not None:
                self.ws.send(messages.emotion_update(event))
        if events:
            self.last_seq = max(self.last_seq, events[-1]["seq"]) if not has_more else events[-1]["seq"]
        self.paused = has_more
        if since is not None or has_more:
            last_id = events[-1]["id"] if events else since
            self.ws.send(messages.synced(since if since is not None else None, len(events), last_id, has_more))


def _epoch(timestamp):
    """Epoch seconds of an event's server timestamp ("2023-05-09T14:45:00.123Z")."""
    try:
        return datetime.fromisoformat(timestamp).timestamp()
    except (TypeError, ValueError):
        return time.time()


def _names(message, jti, sid):
    """Whether a revoke message names the token `jti` or its login session `sid`."""
    return jti == message.get("jti") or (sid is not None and sid == message.get("sid"))


class ReplayFailed(Exception):
    """Missed events could not be read from the database."""


class Hub:
    """Open connections of this process, by user id, and the state of the users who connected lately
    (heldstate.py).

    `epoch` is the broker's epoch(); without it no state is held.
    """

    def __init__(self, epoch=lambda: None):
        self._by_user = {}
        self._count = 0  # kept as sockets come and go: every handshake asks
        self.draining = False
        self.states = HeldStates(epoch)

    def drain(self):
        """Stop taking sockets and close every open one with 1012, so devices resume on a live worker."""
        self.draining = True
        conns = [conn for conns in self._by_user.values() for conn in conns]
        for conn in conns:
            conn.close(CLOSE_SERVICE_RESTART, "Service restart")
        log.info("draining: closed %d socket(s) with 1012", len(conns))

    def attach(self, conn):
        """Start delivering the user's events to `conn`; on a draining worker, close it with 1012 at once
        (after connection_established and any replay, like the sockets the drain closed)."""
        conns = self._by_user.setdefault(conn.user_id, set())
        if conn not in conns:
            conns.add(conn)
            self._count += 1
        if self.draining:
            # The handshake can wait between the draining check and here (sending the upgrade's answer), so
            # a drain can run in between without seeing this socket.
            conn.close(CLOSE_SERVICE_RESTART, "Service restart")

    def detach(self, conn):
        """Forget `conn` at once."""
        conns = self._by_user.get(conn.user_id)
        if conns is not None and conn in conns:
            conns.discard(conn)
            self._count -= 1
            if not conns:
                del self._by_user[conn.user_id]

    def connections(self, user_id):
        """The open connections of `user_id` in this process."""
        return list(self._by_user.get(str(user_id), ()))

    def count(self):
        """How many sockets are open in this process."""
        return self._count

    def dispatch(self, message):
        """Act on one broker message: push an event or a presence change, or close revoked sockets."""
        kind = message.get("kind")
        user_id = message.get("user_id")
        if kind == "event":
            event = message["event"]
            self.states.saw(str(user_id), event)
            conns = self.connections(user_id)
            if not conns:
                return
            frame = text_frame(messages.emotion_update(event))  # encoded once for all devices
            stored_at = _epoch(event["timestamp"])
            for conn in conns:
                conn.push_event(event["seq"], frame, stored_at)
        elif kind == "presence":
            # Workers of an older release send only `member`, not `device` and `online`.
            device = message.get("device") or {"id": message.get("member"), "name": None}
            text = messages.presence(user_id, message["change"], device, message.get("online"))
            for conn in self.connections(user_id):
                if conn.id != device["id"]:  # the device itself knows
                    conn.push(text)
        elif kind == "revoke":
            # One token (logout), one login session (logout, either token), or all of the user's (password change).
            error = messages.error("Token has been revoked: log in again", code="token_revoked")
            for conn in self.connections(user_id):
                if message.get("all") or _names(message, conn.jti, conn.sid):
                    conn.close(CLOSE_TOKEN_REVOKED, "Token revoked", error=error)
                elif conn.candidate is not None and _names(message, *conn.candidate):
                    conn.candidate_revoked = True
        else:
            log.warning("ignoring a broker message of unknown kind %r", kind)
