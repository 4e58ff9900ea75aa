"""Reading a socket's frames in the greenlet that serves it.

simple-websocket gives every socket a reader thread (under gevent, a greenlet) that reads frames, answers
the device's pings, sends the server's own and hands messages to `Server.receive` through an event. Here
the handler's greenlet does that work itself, inside `receive`, so that an idle socket waits in one
greenlet rather than two: no second greenlet stack, thread object, event or selector per socket. The
route stays flask-sock's: `SOCK_SERVER_OPTIONS` (emotion_app/__init__.py) gives simple-websocket
`thread_class=no_thread` and `event_class=Wakeup`, and the receive loop calls `receive(ws, timeout)`
instead of `ws.receive(timeout)`.
"""
import time

from gevent import Timeout, getcurrent
from gevent.hub import get_hub
from simple_websocket import ConnectionClosed
from wsproto.events import Ping
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError


class Wakeup:
    """simple-websocket's `event_class`: `set()` ends the wait of the greenlet blocked in `receive`.

    Whoever closes a socket from another greenlet calls `ws.event.set()`, as for simple-websocket's own
    receive, and the handler then finds the socket closed. Also keeps the time of the server's next ping.
    """

    __slots__ = ("waiting", "next_ping")

    def __init__(self):
        self.waiting = None  # the greenlet blocked in receive(), while it is
        self.next_ping = None  # when the server pings next (time.monotonic()), if it pings

    def set(self):
        """Wake the greenlet waiting in `receive`, if one is."""
        waiting = self.waiting
        if waiting is not None:
            # Thrown from the hub, and only if that greenlet still waits in the same place (as gevent's
            # Timeout does): anywhere else the exception would cut into unrelated work.
            get_hub().loop.run_callback(_wake, self, waiting)


class _Woken(Exception):
    """Thrown into a greenlet waiting in `receive` by `Wakeup.set`."""


def _wake(wakeup, waiting):
    if wakeup.waiting is waiting:
        waiting.throw(_Woken)


class _Events(list):
    """wsproto's queue of the events a socket has received, as a list: it holds a frame or two at a time,
    and an empty deque costs 760 bytes per socket. wsproto only appends, pops from the left and tests it
    (wsproto is pinned in requirements.txt; test_wsreader.py reads frames through it)."""

    __slots__ = ()

    def popleft(self):
        return self.pop(0)


class _NoThread:
    name = "emotion_app.wsreader"  # simple-websocket renames its thread

    def start(self):
        """Nothing to start: `receive` reads."""


_NO_THREAD = _NoThread()


def no_thread(target):
    """simple-websocket's `thread_class`: no reader thread. Called once the handshake is done, with the
    thread's target (a method of the new socket), it keeps only what the open socket needs of wsproto and
    schedules the socket's first ping."""
    ws = target.__self__
    # wsproto's WSConnection would keep its HTTP handshake for the socket's life (h11's parser and
    # buffers, the parsed request with every header); its open connection does the rest alone, with
    # the same send, receive_data and events.
    ws.ws = ws.ws.connection
    ws.ws._events = _Events()
    if ws.ping_interval:
        ws.event.next_ping = time.monotonic() + ws.ping_interval
    return _NO_THREAD


def receive(ws, timeout):
    """The next message of `ws` (str or bytes), or None if none came within `timeout` seconds.

    Raises ConnectionClosed once the socket is closed. While waiting it reads frames, answers pings and
    close frames, and sends the server's pings every `ping_interval`, closing with 1008 a socket whose
    device did not answer the previous one: what simple-websocket's reader thread does.
    """
    wakeup = ws.event
    deadline = time.monotonic() + timeout
    while ws.connected and not ws.input_buffer:
        now = time.monotonic()
        if wakeup.next_ping is not None and wakeup.next_ping <= now:
            _ping(ws, wakeup, now)
            continue
        wait = deadline - now
        if wait <= 0:
            return None
        if wakeup.next_ping is not None:
            wait = min(wait, wakeup.next_ping - now)
        _read(ws, wakeup, wait)
    if ws.input_buffer:
        return ws.input_buffer.pop(0)
    raise ConnectionClosed(ws.close_reason, ws.close_message)


def _ping(ws, wakeup, now):
    if not ws.pong_received:
        # The answer may be waiting unread: this greenlet was perhaps busy elsewhere when it came.
        _read(ws, wakeup, 0)
        if not ws.connected:
            return
    try:
        if not ws.pong_received:
            ws.close(reason=CloseReason.POLICY_VIOLATION, message="Ping/Pong timeout")
            _end(ws)
            return
        ws.pong_received = False
        ws.sock.send(ws.ws.send(Ping()))
    except OSError:
        _end(ws)
        return
    wakeup.next_ping = max(now, wakeup.next_ping) + ws.ping_interval


def _read(ws, wakeup, wait):
    """Read what arrives within `wait` seconds, if anything, and act on its frames."""
    data = None
    wakeup.waiting = getcurrent()
    try:
        with Timeout(wait, False):
            data = ws.sock.recv(ws.receive_bytes)
    except _Woken:
        return
    except OSError:  # reset, or closed by another greenlet
        data = b""
    finally:
        wakeup.waiting = None
    if data is None:  # nothing came
        return
    if not data:
        _end(ws)
        return
    try:
        ws.ws.receive_data(data)
        ws.connected = ws._handle_events()  # answers pings and close frames, queues messages
    except (OSError, LocalProtocolError):
        ws.connected = False
    if not ws.connected:
        _end(ws)


def _end(ws):
    """The connection is over: close the socket, as simple-websocket's reader does when it stops."""
    ws.connected = False
    try:
        ws.sock.close()
    except OSError:
        pass
