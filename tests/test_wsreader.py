"""A socket is read in its handler's greenlet (wsreader.py): no reader greenlet, no handshake state kept,
and the same behaviour as simple-websocket's reader: messages, timeouts, pings both ways, close frames,
and a wake-up from another greenlet. Also `stacks.apart`, which runs deep handshake work elsewhere."""
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    from gevent import monkey; monkey.patch_all()
    import gc
    import socket
    import time

    import gevent
    import greenlet
    from flask import Flask, g, request
    from simple_websocket import ConnectionClosed, Server
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import CloseConnection, Ping, Pong, TextMessage

    from emotion_app import wsreader
    from emotion_app.stacks import apart

    KEY = "dGhlIHNhbXBsZSBub25jZQ=="

    def greenlets():
        return sum(isinstance(o, greenlet.greenlet) and not o.dead for o in gc.get_objects())

    def open_socket(ping_interval=None):
        listener = socket.create_server(("127.0.0.1", 0))
        device = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        environ = {"gunicorn.socket": accepted, "HTTP_HOST": "localhost", "HTTP_UPGRADE": "websocket",
                   "HTTP_CONNECTION": "Upgrade", "HTTP_SEC_WEBSOCKET_KEY": KEY, "HTTP_SEC_WEBSOCKET_VERSION": "13"}
        ws = Server(environ, ping_interval=ping_interval, max_message_size=4096,
                    thread_class=wsreader.no_thread, event_class=wsreader.Wakeup)
        head = b""
        while not head.endswith(b"\\r\\n\\r\\n"):
            head += device.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        device.settimeout(5)
        return ws, device, Connection(ConnectionType.CLIENT)

    def events(device, peer):
        peer.receive_data(device.recv(4096))
        return list(peer.events())

    open_socket()  # the first one starts gevent's hub
    before = greenlets()
    ws, device, peer = open_socket()
    assert greenlets() == before, "a greenlet was started for the socket"
    assert type(ws.ws) is Connection, "wsproto's handshake state was kept"

    started = time.monotonic()
    assert wsreader.receive(ws, 0.2) is None
    assert 0.15 < time.monotonic() - started < 2

    device.sendall(peer.send(TextMessage("hello")))
    assert wsreader.receive(ws, 5) == "hello"

    device.sendall(peer.send(Ping(b"p")))
    assert wsreader.receive(ws, 0.2) is None
    assert [type(e) for e in events(device, peer)] == [Pong]

    # Another greenlet closes the socket and wakes the one waiting in receive.
    def close_soon():
        gevent.sleep(0.1)
        ws.close(reason=1012, message="Service restart")
        ws.event.set()
    gevent.spawn(close_soon)
    started = time.monotonic()
    try:
        wsreader.receive(ws, 10)
        raise AssertionError("receive returned on a closed socket")
    except ConnectionClosed:
        pass
    assert time.monotonic() - started < 2
    assert [e.code for e in events(device, peer)] == [1012]

    # The device's close frame is answered, and ends receive.
    ws, device, peer = open_socket()
    device.sendall(peer.send(CloseConnection(code=4000, reason="bye")))
    try:
        wsreader.receive(ws, 5)
        raise AssertionError("receive returned after a close frame")
    except ConnectionClosed:
        assert ws.close_reason == 4000
    assert [(type(e), e.code) for e in events(device, peer)] == [(CloseConnection, 4000)]

    # The server pings while receive waits; a ping left unanswered closes the socket with 1008.
    ws, device, peer = open_socket(ping_interval=0.2)
    assert wsreader.receive(ws, 0.3) is None
    assert [type(e) for e in events(device, peer)] == [Ping]
    try:
        wsreader.receive(ws, 5)
        raise AssertionError("an unanswered ping did not close the socket")
    except ConnectionClosed:
        pass
    assert [e.code for e in events(device, peer)] == [1008]

    # Answered pings keep it open.
    ws, device, peer = open_socket(ping_interval=0.1)
    pings = []
    def answer():
        while True:
            for event in events(device, peer):
                pings.append(event)
                device.sendall(peer.send(event.response()))
    gevent.spawn(answer)
    assert wsreader.receive(ws, 0.6) is None
    assert ws.connected and len(pings) >= 3, pings

    # apart(): same request and g, result and exception handed back to the caller.
    app = Flask("t")
    with app.test_request_context("/?x=1"):
        g.seen = 1
        assert apart(lambda: (request.args["x"], g.seen)) == ("1", 1)
        try:
            apart(int, "nope")
            raise AssertionError("the exception was not raised in the caller")
        except ValueError:
            pass
    print("ok")
    """
)


def test_the_handler_reads_its_socket_as_the_reader_thread_did():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
