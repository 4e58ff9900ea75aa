"""One WebSocket to `/api/ws` (websockets' sync client): open it, read and write JSON frames, and
turn every way it can fail into `Refused` (the server said no) or `Closed` (it ended)."""
from __future__ import annotations

import json
import socket
import urllib.parse
from contextlib import contextmanager
from typing import Any, Iterator

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from .errors import ApiError
from .http import USER_AGENT

CLOSE_LOST = 1006  # no close frame: the connection dropped (or we gave up on it)


class Refused(Exception):
    """The server refused the handshake with an HTTP error (`error` says which)."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(str(error))
        self.error = error


class Closed(Exception):
    """The socket ended: close `code` (1006 without a close frame) and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed with {code}: {reason}")
        self.code = code
        self.reason = reason


def socket_url(base_url: str, since: int | None = None, device: str | None = None) -> str:
    """The socket's URL for an http(s) base URL, with `since` and `device` in the query."""
    parts = urllib.parse.urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = urllib.parse.urlencode({k: v for k, v in (("since", since), ("device", device)) if v is not None})
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/api/ws", query, ""))


class Socket:
    """An open socket: JSON frames in and out."""

    def __init__(self, conn: ClientConnection) -> None:
        self._conn = conn

    def recv(self, timeout: float) -> dict[str, Any] | None:
        """The next frame as a dict; None if nothing came within `timeout` or it was not a JSON object."""
        try:
            data = self._conn.recv(timeout=max(timeout, 0.0))
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            raise _closed(exc) from None
        except OSError as exc:
            raise Closed(CLOSE_LOST, str(exc) or "connection lost") from None
        try:
            frame = json.loads(data)
        except ValueError:
            return None
        return frame if isinstance(frame, dict) else None

    def send(self, frame: dict[str, Any]) -> bool:
        """Send a frame; False if the socket is already gone (the caller resends after reconnecting)."""
        try:
            self._conn.send(json.dumps(frame, separators=(",", ":")))
            return True
        except (ConnectionClosed, OSError):
            return False

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake (it is dead or unwanted)."""
        try:
            self._conn.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@contextmanager
def open_socket(url: str, token: str, timeout: float) -> Iterator[Socket]:
    """Open the socket with the token in the Authorization header (never in the URL, which proxies log).

    Raises Refused for an HTTP refusal; OSError, TimeoutError or WebSocketException when the server
    cannot be reached or the handshake fails on the way.
    """
    try:
        manager = connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            user_agent_header=USER_AGENT,
            open_timeout=timeout,
            close_timeout=min(timeout, 2.0),
            # The client's own heartbeat (application pings) notices a dead peer; the server pings too.
            ping_interval=None,
            compression=None,
        )
        conn = manager.__enter__()
    except InvalidStatus as exc:
        raise Refused(_refusal(exc)) from None
    try:
        yield Socket(conn)
    finally:
        try:
            manager.__exit__(None, None, None)
        except (WebSocketException, OSError):
            pass


def _refusal(exc: InvalidStatus) -> ApiError:
    response = exc.response
    try:
        body = json.loads(response.body or b"")
    except ValueError:
        body = None
    error = ApiError.from_body(response.status_code, body)
    if error.retry_after is None:
        try:
            error.retry_after = float(response.headers.get("Retry-After", ""))
        except ValueError:
            pass
    return error


def _closed(exc: ConnectionClosed) -> Closed:
    if exc.rcvd is None:
        return Closed(CLOSE_LOST, "connection lost")
    return Closed(exc.rcvd.code, exc.rcvd.reason)
