"""This process's open sockets by user, each with a bounded outbound queue and its own writer.

The hub never blocks: delivering puts a ready-made frame on each connection's queue. One writer greenlet
per connection does the sending, so a device that stops reading only ever delays itself; when its
queue fills up it is disconnected, and it reconnects and catches up from SQL.
"""
import logging
import threading

import gevent
from gevent.queue import Full, Queue

from . import messages

log = logging.getLogger(__name__)

# Close codes sent to devices.
CLOSE_TOKEN_EXPIRED = 4401
CLOSE_TOKEN_REVOKED = 4403


class SerialSocket:
    """Wraps a connection's raw socket so that every write is whole, one at a time, and bounded in time.

    simple-websocket writes with `socket.send`, which may write only part of a frame, and writes from
    two greenlets (its pinger and our writer); two greenlets writing one gevent socket raise
    ConcurrentObjectUseError. Here every write is a `sendall` under a lock. A write that stalls longer
    than `timeout` (the peer stopped reading) closes the socket: the stream is unusable after a partial
    frame, and the reader notices the close at once.
    """

    def __init__(self, sock, timeout):
        self._sock = sock
        self._timeout = timeout
        self._lock = threading.Lock()

    def send(self, data):
        with self._lock:
            try:
                with gevent.Timeout(self._timeout):
                    self._sock.sendall(data)
            except gevent.Timeout:
                self._sock.close()
                raise BrokenPipeError("send timed out: the peer is not reading") from None
        return len(data)

    def close(self):
        self._sock.close()

    def __getattr__(self, name):
        return getattr(self._sock, name)


class Connection:
    """One open WebSocket of one user: its identity, outbound queue and writer greenlet."""

    def __init__(self, ws, user_id, jti, queue_size, send_timeout):
        self.ws = ws
        self.user_id = str(user_id)
        self.jti = jti
        self.queue = Queue(maxsize=queue_size)
        self.closing = False
        self._send_timeout = send_timeout
        ws.sock = SerialSocket(ws.sock, send_timeout)
        self._writer = None

    def start(self):
        """Start the writer greenlet."""
        self._writer = gevent.spawn(self._write_loop)

    def push(self, text):
        """Queue a text frame; a connection whose queue is full is too slow and is dropped."""
        if self.closing:
            return
        try:
            self.queue.put_nowait(text)
        except Full:
            log.warning("dropping a slow socket of user %s: %d frames waiting", self.user_id, self.queue.qsize())
            self.abort()

    def close(self, code, reason, error=None):
        """Send an optional error frame, then a close frame with `code`, after what is already queued."""
        if error:
            self.push(error)
        if self.closing:
            return
        self.closing = True
        try:
            self.queue.put_nowait((code, reason))
        except Full:
            self.abort()

    def abort(self):
        """Cut the connection at once, without a close handshake (the peer is not reading anyway)."""
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

    def _write_loop(self):
        try:
            while True:
                item = self.queue.get()
                if isinstance(item, tuple):
                    code, reason = item
                    self.ws.close(reason=code, message=reason)
                    self.ws.event.set()  # wake the receive loop: the socket is closed
                    return
                self.ws.send(item)
        except Exception as exc:  # noqa: BLE001 - a dead peer shows up here in many forms
            log.debug("writer of user %s stopped: %r", self.user_id, exc)
            self.abort()


class Hub:
    """Open connections of this process, by user id."""

    def __init__(self):
        self._by_user = {}

    def attach(self, conn):
        """Start delivering the user's events to `conn`."""
        self._by_user.setdefault(conn.user_id, set()).add(conn)

    def detach(self, conn):
        """Forget `conn` at once."""
        conns = self._by_user.get(conn.user_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_user[conn.user_id]

    def connections(self, user_id):
        """The open connections of `user_id` in this process."""
        return list(self._by_user.get(str(user_id), ()))

    def count(self):
        """How many sockets are open in this process."""
        return sum(len(conns) for conns in self._by_user.values())

    def dispatch(self, message):
        """Act on one broker message: push an event, or close the sockets of a revoked token."""
        kind = message.get("kind")
        user_id = message.get("user_id")
        if kind == "event":
            text = messages.emotion_update(message["event"])  # encoded once for all devices
            for conn in self.connections(user_id):
                conn.push(text)
        elif kind == "revoke":
            error = messages.error("Token has been revoked: log in again", code="token_revoked")
            for conn in self.connections(user_id):
                if conn.jti == message.get("jti"):
                    conn.close(CLOSE_TOKEN_REVOKED, "Token revoked", error=error)
        else:
            log.warning("ignoring a broker message of unknown kind %r", kind)
