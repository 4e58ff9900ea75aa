"""A pool of real OS threads for model work, so that the gevent event loop never runs inference.

Under a gevent worker the pool is gevent's native ThreadPool: the calling greenlet waits for the result and
every other greenlet (sockets, HTTP requests) keeps running; numpy, OpenCV and LiteRT release the GIL while
they compute. Elsewhere (the Flask test client, `flask` commands) it is a plain ThreadPoolExecutor.
The threads are created on first use, in the process that uses them: never at import, never before a fork.
"""
import threading


class ModelThreads:
    """`run(func, *args)` runs `func` in one of `size` OS threads and returns its result (or raises its error)."""

    def __init__(self, size):
        self.size = size
        self._pool = None
        self._gevent = False
        self._lock = threading.Lock()

    def run(self, func, *args):
        """Call `func(*args)` in a pool thread; the caller waits, the event loop does not."""
        pool = self._pool or self._start()
        if self._gevent:
            return pool.apply(func, args)
        return pool.submit(func, *args).result()

    def _start(self):
        with self._lock:
            if self._pool is None:
                try:
                    from gevent import monkey
                    from gevent.threadpool import ThreadPool
                except ImportError:  # pragma: no cover - gevent is a hard dependency
                    monkey = None
                if monkey is not None and monkey.is_module_patched("threading"):
                    self._gevent = True
                    self._pool = ThreadPool(self.size)
                else:
                    from concurrent.futures import ThreadPoolExecutor

                    self._pool = ThreadPoolExecutor(self.size, thread_name_prefix="detection")
        return self._pool
