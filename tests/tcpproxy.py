"""A small TCP proxy for tests: sits between a client and a server on 127.0.0.1, and can cut every
connection, stall them (nothing forwarded, nothing closed), swallow the server's answers, switch to
another server, or go away and come back on the same port, as a network, a load balancer or a
crashed database might."""
import socket
import threading


class TcpProxy:
    """Forward connections on `port` to 127.0.0.1:`upstream_port` (changeable with `upstream`)."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.listener = None
        self.port = None
        self.flowing = threading.Event()
        self.flowing.set()
        self.swallow = False  # forward requests, but drop the answers and hang up
        self.sent = bytearray()  # everything clients sent upstream, to inspect
        self._lock = threading.Lock()
        self._pairs = set()
        self.start()

    def start(self):
        """Listen (again, on the same port after `stop`); return the proxy."""
        if self.listener is None:
            self.listener = socket.create_server(("127.0.0.1", self.port or 0))  # SO_REUSEADDR: same port again
            self.port = self.listener.getsockname()[1]
            threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()
        return self

    def stop(self):
        """Refuse new connections and cut the open ones, as a crash would; `start` brings it back."""
        listener, self.listener = self.listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close() alone would not
            except OSError:
                pass
            listener.close()
        self.cut()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=2)
                server.settimeout(None)
            except OSError:
                client.close()  # the server is down: the client sees its connection closed
                continue
            pair = (client, server)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(client, server, pair, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, pair, False), daemon=True).start()

    def _pump(self, src, dst, pair, upstream):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while not self.flowing.wait(0.05):  # stalled: hold the data, close nothing
                    if pair not in self._pairs:
                        return
                if pair not in self._pairs:
                    return
                if upstream:
                    with self._lock:
                        self.sent += data
                elif self.swallow:
                    break  # the answer never arrives: the client sees the connection drop
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(pair)

    def _drop(self, pair):
        with self._lock:
            self._pairs.discard(pair)
        for sock in pair:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def count(self, needle):
        """How often `needle` (bytes) occurs in what clients sent so far."""
        with self._lock:
            return bytes(self.sent).count(needle)

    def connections(self):
        with self._lock:
            return len(self._pairs)

    def cut(self):
        """Drop every open connection at once (new ones are still accepted)."""
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._drop(pair)

    def stall(self):
        """Stop forwarding in both directions, closing nothing: a network that went silent."""
        self.flowing.clear()

    def resume(self):
        self.flowing.set()

    def close(self):
        self.stop()
