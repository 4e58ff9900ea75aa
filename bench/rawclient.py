"""The raw-socket client of the handshake scenarios: just enough RFC 6455 (and Engine.IO / Socket.IO) to
connect, authenticate, read the first event and close.

Written against the sockets directly: a WebSocket library's per-connection cost would make the
generator, not the server, the limit on how many handshakes a second are measured.
"""
import asyncio
import base64
import os
import time

TIMEOUT = 30
_MASK = bytes((0x37, 0xFA, 0x21, 0x3D))  # clients must mask their frames (RFC 6455); any key will do


def client_frame(opcode, payload):
    """One final, masked client frame."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + _MASK + bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))


_CLOSE_FRAME = client_frame(0x8, (1000).to_bytes(2, "big"))


async def read_frame(reader):
    """The next server frame: (first byte, payload). Servers do not mask."""
    first, size = await asyncio.wait_for(reader.readexactly(2), TIMEOUT)
    size &= 0x7F
    if size >= 126:
        size = int.from_bytes(await reader.readexactly(2 if size == 126 else 8), "big")
    return first, await asyncio.wait_for(reader.readexactly(size), TIMEOUT)


async def read_text(reader):
    first, payload = await read_frame(reader)
    if first != 0x81:
        raise RuntimeError(f"expected a text frame, got 0x{first:02x}")
    return payload


async def _upgrade(host, port, path):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def _close(reader, writer):
    writer.write(_CLOSE_FRAME)
    # The server answers with its own close frame and ends the connection.
    while await asyncio.wait_for(reader.read(4096), TIMEOUT):
        pass


async def raw_handshake(host, port, token):
    """One device of our server: connect, upgrade, authenticate (?token=), read `connection_established`,
    close cleanly; return seconds to the first frame."""
    began = time.perf_counter()
    reader, writer = await _upgrade(host, port, f"/api/ws?token={token}")
    try:
        if not (await read_text(reader)).startswith(b'{"type":"connection_established"'):
            raise RuntimeError("unexpected first frame")
        elapsed = time.perf_counter() - began
        await _close(reader, writer)
        return elapsed
    finally:
        writer.close()


async def raw_socketio_handshake(host, port, token):
    """One client of a Socket.IO server: connect, Engine.IO v4 WebSocket upgrade, its open packet (`0{...}`),
    Socket.IO connect with auth (`40{"token": ...}`), the connect ack (`40{...}`) and the first event
    (`42["connection_established", ...]`), then a clean close; return seconds to having both.

    python-socketio sends what the connect handler emits before the ack (clients hold such events until
    the ack), so the two are taken in either order.
    """
    began = time.perf_counter()
    reader, writer = await _upgrade(host, port, "/socket.io/?EIO=4&transport=websocket")
    try:
        if not (await read_text(reader)).startswith(b"0{"):
            raise RuntimeError("no Engine.IO open packet")
        writer.write(client_frame(0x1, b'40{"token":"' + token.encode() + b'"}'))
        acked = established = False
        while not (acked and established):
            packet = await read_text(reader)
            if packet.startswith(b"40{") and not acked:
                acked = True
            elif packet.startswith(b'42["connection_established"') and not established:
                established = True
            else:
                raise RuntimeError("unexpected packet: " + packet[:200].decode(errors="replace"))
        elapsed = time.perf_counter() - began
        await _close(reader, writer)
        return elapsed
    finally:
        writer.close()
