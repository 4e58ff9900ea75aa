"""`Watch`: the live stream of a user's events, kept connected by a background thread.

The thread opens the socket, resumes with `since` after every reconnect, follows `has_more` pages,
drops events it has seen, keeps the socket alive with application pings, renews the access token in
band, and waits between attempts as `Backoff` says. The caller reads typed items from a queue.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from websockets.exceptions import WebSocketException

from .backoff import Backoff
from .errors import ApiError, AuthError, Revoked, Unreachable
from .models import Connected, Disconnected, EmotionUpdate, Event, Presence, Resynced, WatchEvent
from .stream import CLOSE_LOST, Closed, Refused, Socket, open_socket, socket_url

if TYPE_CHECKING:
    from .client import Client

CLOSE_RESTART = 1012
CLOSE_EXPIRED = 4401
CLOSE_REVOKED = 4403
# Error frames that answer a `refresh` frame: the old deadline stands (a 4401 later is handled).
REFRESH_REFUSALS = ("token_invalid", "token_wrong_user", "token_not_newer")
# Error frames that are about the connection, not about an update we sent.
NOT_ABOUT_UPDATES = ("since_too_old", "rate_limited", "database_unavailable", "token_expired", "replay_failed",
                     "invalid_since", "token_revoked", *REFRESH_REFUSALS)
_END = object()


@dataclass
class _Outcome:
    """How one connection attempt ended."""

    code: int | None
    reason: str
    retry_after: float | None = None
    immediate: bool = False


class _Pending:
    """An update sent over the socket, waiting for the server to confirm it."""

    def __init__(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        self.done = threading.Event()
        self.event: Event | None = None
        self.error: BaseException | None = None

    def resolve(self, event: Event | None = None, error: BaseException | None = None) -> None:
        self.event, self.error = event, error
        self.done.set()


class Watch(Iterator[WatchEvent]):
    """An iterator of `EmotionUpdate`, `Presence`, `Connected`, `Disconnected` and `Resynced` items.

    Every event is yielded once, in id order, across reconnects. Iteration ends with `Revoked` (the
    session was ended elsewhere) or `AuthError` (the session cannot be renewed); `close()` ends it
    quietly. Use it as a context manager, or call `close()`. `last_id` is the id of the last event
    seen (None until the first connection).
    """

    def __init__(
        self,
        client: Client,
        *,
        since: int | None,
        backoff: Backoff,
        heartbeat: float,
        heartbeat_timeout: float,
        connect_timeout: float,
    ) -> None:
        self._client = client
        self.last_id = since
        self.backoff = backoff
        self._heartbeat = heartbeat
        self._heartbeat_timeout = heartbeat_timeout
        self._connect_timeout = connect_timeout
        self._items: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socket: Socket | None = None
        self._socket_token: str | None = None
        self._outbox: dict[str, _Pending] = {}
        self._resend_at: float | None = None
        self._offered: str | None = None  # the token sent in a `refresh` not yet answered
        self._renew_at: float | None = None  # when to offer a newer token again (after token_not_newer)
        self._renew_retried: str | None = None  # the socket token that retry was for: once per token
        self._resync: list[int] | None = None  # [since, count] while catching up
        self._paging = False
        self._retried_refresh = False
        self._current_id = 0  # last_event_id of the latest connection_established
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="emotion-watch", daemon=True)
        self._thread.start()

    # ---- the caller's side -------------------------------------------------------------------------

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> WatchEvent:
        return self.get()

    def get(self, timeout: float | None = None) -> WatchEvent:
        """The next item; raises TimeoutError if none came within `timeout` seconds, StopIteration
        after `close()`, and the error that ended the stream (`Revoked`, `AuthError` ...)."""
        if self._ended:
            raise StopIteration
        try:
            item = self._items.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"nothing from the stream within {timeout} s") from None
        if item is _END:
            self._ended = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        event: WatchEvent = item
        return event

    @property
    def connected(self) -> bool:
        """Whether the socket is open and established right now."""
        return self._socket is not None

    def close(self) -> None:
        """Stop watching: close the socket, stop reconnecting, end the iteration."""
        self._stop.set()
        sock = self._socket
        if sock is not None:
            sock.abort()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=self._connect_timeout + 5)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, frame: dict[str, Any], timeout: float) -> Event:
        """Send an update over the socket (again after every reconnect) until the server confirms it."""
        pending = _Pending(frame)
        with self._lock:
            self._outbox[frame["client_msg_id"]] = pending
            sock = self._socket
        if sock is not None:
            sock.send(frame)
        try:
            if not pending.done.wait(timeout):
                raise Unreachable(f"The update was not confirmed within {timeout:g} s")
        finally:
            with self._lock:
                self._outbox.pop(frame["client_msg_id"], None)
        if pending.error is not None:
            raise pending.error
        assert pending.event is not None
        return pending.event

    # ---- the background thread -----------------------------------------------------------------------

    def _emit(self, item: Any) -> None:
        self._items.put(item)

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self._loop()
        except BaseException as exc:  # the stream's end, handed to the reader
            error = exc
        with self._lock:
            pending, self._outbox = list(self._outbox.values()), {}
        for item in pending:
            item.resolve(error=error or Unreachable("The stream was closed before the update was confirmed"))
        self._client._watch_ended(self)
        self._emit(error if error is not None and not self._stop.is_set() else _END)

    def _loop(self) -> None:
        while not self._stop.is_set():
            outcome = self._attempt()
            if self._stop.is_set():
                return
            self.backoff.disconnected()
            delay = 0.0 if outcome.immediate else self.backoff.next_delay(outcome.retry_after)
            self._emit(Disconnected(outcome.code, outcome.reason, delay))
            self.backoff.wait(delay, self._stop.wait)

    def _attempt(self) -> _Outcome:
        """Connect once and serve the socket until it ends; say how it ended."""
        try:
            token = self._client._access_token()
        except Unreachable as exc:
            return _Outcome(CLOSE_LOST, str(exc))
        url = socket_url(self._client.base_url, self.last_id, self._client.device)
        try:
            with open_socket(url, token, self._connect_timeout) as sock:
                self._socket_token = token
                return self._serve(sock)
        except Refused as exc:
            return self._refused(exc.error, token)
        except (OSError, TimeoutError, WebSocketException) as exc:
            return _Outcome(CLOSE_LOST, f"cannot connect: {exc or type(exc).__name__}")

    def _refused(self, error: ApiError, token: str) -> _Outcome:
        if error.status == 401:
            if error.code == "token_revoked":
                raise Revoked(error.message)
            if error.code == "token_expired" and not self._retried_refresh:
                # The token expired on the way (or the clocks disagree): renew it once and go again.
                self._retried_refresh = True
                try:
                    self._client._refresh(stale=token)
                except Unreachable as exc:
                    return _Outcome(CLOSE_LOST, str(exc))
                return _Outcome(error.status, error.message, immediate=True)
            raise AuthError(error.message, error.code)
        if error.status in (408, 429) or error.status >= 500:
            return _Outcome(error.status, error.message, retry_after=error.retry_after)
        raise error  # a request the server will never accept (a bad device name, another origin ...)

    def _serve(self, sock: Socket) -> _Outcome:
        last_frame = time.monotonic()
        ping_sent: float | None = None
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if ping_sent is not None and now - ping_sent >= self._heartbeat_timeout:
                    sock.abort()
                    return _Outcome(CLOSE_LOST, "no answer to ping: the connection is dead")
                if ping_sent is None and self._heartbeat and now - last_frame >= self._heartbeat:
                    sock.send({"type": "ping"})
                    ping_sent = now
                if self._resend_at is not None and now >= self._resend_at:
                    self._resend_at = None
                    self._resend(sock)
                if self._renew_at is not None and now >= self._renew_at:
                    self._renew_at = None
                    self._renew(sock, stale=self._offered or self._socket_token)
                frame = sock.recv(self._wait(now, last_frame, ping_sent))
                if frame is None:
                    continue
                last_frame, ping_sent = time.monotonic(), None
                self._handle(sock, frame)
        except Closed as exc:
            return self._closed(exc)
        finally:
            with self._lock:
                self._socket = None
        return _Outcome(1000, "closed")

    def _wait(self, now: float, last_frame: float, ping_sent: float | None) -> float:
        """How long the next read may block before a timer is due."""
        due = [now + 1.0]  # also bounds how late a close() from another thread is noticed
        if ping_sent is not None:
            due.append(ping_sent + self._heartbeat_timeout)
        elif self._heartbeat:
            due.append(last_frame + self._heartbeat)
        if self._resend_at is not None:
            due.append(self._resend_at)
        if self._renew_at is not None:
            due.append(self._renew_at)
        return max(0.0, min(due) - now)

    def _closed(self, closed: Closed) -> _Outcome:
        if closed.code == CLOSE_REVOKED:
            raise Revoked(closed.reason or "The session was revoked: log in again")
        if closed.code == CLOSE_RESTART:
            # Another server (or the restarted one) takes over at once; if none does yet, the restarted
            # one is back within seconds, so the attempts meanwhile keep short delays.
            self.backoff.server_restarted()
            return _Outcome(closed.code, closed.reason or "server restart", immediate=True)
        if closed.code == CLOSE_EXPIRED:
            try:
                self._client._refresh(stale=self._socket_token)
            except Unreachable as exc:
                return _Outcome(closed.code, str(exc))
            return _Outcome(closed.code, closed.reason or "token expired", immediate=True)
        return _Outcome(closed.code, closed.reason or "connection lost")

    # ---- frames ----------------------------------------------------------------------------------------

    def _handle(self, sock: Socket, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "connection_established":
            self._established(sock, frame)
        elif kind == "emotion_update":
            self._update(frame)
        elif kind == "synced":
            self._synced(sock, frame)
        elif kind == "presence":
            self._emit(Presence.from_json(frame))
        elif kind == "token_expiring":
            self._renew(sock, stale=self._socket_token)
        elif kind == "refreshed" and self._offered is not None:
            # The socket now lives as long as the offered token (and belongs to its login).
            self._socket_token, self._offered = self._offered, None
        elif kind == "error":
            self._error(sock, frame)

    def _established(self, sock: Socket, frame: dict[str, Any]) -> None:
        self._retried_refresh = False
        self.backoff.connected()
        self._offered = self._renew_at = self._renew_retried = None
        self._paging = False
        self._current_id = frame.get("last_event_id") or 0
        if self.last_id is None:
            self.last_id = self._current_id
            self._resync = None
        else:
            self._resync = [self.last_id, 0]
        with self._lock:
            self._socket = sock
        self._emit(Connected.from_json(frame))
        self._resend(sock)

    def _update(self, frame: dict[str, Any]) -> None:
        event = Event.from_json(frame)
        if event.client_msg_id is not None:
            with self._lock:
                pending = self._outbox.get(event.client_msg_id)
            if pending is not None:
                pending.resolve(event)
        if frame.get("duplicate") or (self.last_id is not None and event.id <= self.last_id):
            return  # seen already: the caller gets each event once
        self.last_id = event.id
        if self._resync is not None:
            self._resync[1] += 1
        self._emit(EmotionUpdate(event))

    def _synced(self, sock: Socket, frame: dict[str, Any]) -> None:
        last_id = frame.get("last_id")
        if isinstance(last_id, int) and (self.last_id is None or last_id > self.last_id):
            self.last_id = last_id
        if frame.get("has_more"):
            # Live events wait on the server until the last page has been asked for.
            self._paging = sock.send({"type": "sync", "since": self.last_id})
            return
        self._paging = False
        if self._resync is not None:
            since, count = self._resync
            self._resync = None
            self._emit(Resynced(count, since, self.last_id))

    def _renew(self, sock: Socket, stale: str | None) -> None:
        """Answer `token_expiring`: a new access token over HTTP (unless the client has one newer than
        `stale` already), offered to the open socket with a `refresh` frame."""
        try:
            tokens = self._client._refresh(stale=stale)
        except Unreachable:
            return  # the server closes with 4401 at expiry; reconnecting renews then
        self._offered = tokens.access_token
        if not sock.send({"type": "refresh", "token": tokens.access_token}):
            self._offered = None

    def _error(self, sock: Socket, frame: dict[str, Any]) -> None:
        code = frame.get("code")
        message = str(frame.get("message") or code)
        if code == "since_too_old":
            if self._paging:
                # Paging on failed and this socket holds live events back: start over on a fresh one.
                self.last_id = None
                sock.abort()
            else:
                # Events after our position are gone: carry on from the current state.
                self.last_id = self._current_id
                self._resync = None
            return
        if self._offered is not None and (code in REFRESH_REFUSALS or code == "missing_field"):
            if code == "token_not_newer" and self._renew_retried != self._socket_token:
                # Tokens expire in whole seconds: one issued in the same second as the socket's is no
                # newer. Offer a fresh one a second later, once; else 4401 at expiry and a reconnect.
                self._renew_retried = self._socket_token
                self._renew_at = time.monotonic() + 1.0
                return
            self._offered = None
            return  # the old deadline stands: a 4401 at expiry leads to a renewal over HTTP
        if code == "token_revoked":
            raise Revoked(message)
        if code in ("rate_limited", "database_unavailable"):
            # A refused update is still in the outbox: offer it again when the server says.
            retry_after = frame.get("retry_after")
            wait = float(retry_after) if isinstance(retry_after, (int, float)) else 1.0
            self._resend_at = time.monotonic() + wait
            return
        if code in NOT_ABOUT_UPDATES:
            return
        with self._lock:
            pending = list(self._outbox.values())
        # Updates are sent one at a time (Client.set holds a lock), so a refusal is the pending one's.
        for item in pending:
            item.resolve(error=ApiError(400, str(code or "invalid_frame"), message))

    def _resend(self, sock: Socket) -> None:
        with self._lock:
            frames = [item.frame for item in self._outbox.values()]
        if self._offered is not None:  # a refused or lost `refresh` is offered again too
            frames.append({"type": "refresh", "token": self._offered})
        for frame in frames:
            sock.send(frame)

