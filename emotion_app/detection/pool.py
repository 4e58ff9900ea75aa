"""A pool of real OS threads for model work, so that the gevent event loop never runs inference.

Under a gevent worker the pool is gevent's native ThreadPool: the calling greenlet waits for the result and
every other greenlet (sockets, HTTP requests) keeps running; numpy, OpenCV and LiteRT release the GIL while
they compute. Elsewhere (the Flask test client, `flask` commands) it is a plain ThreadPoolExecutor.
The threads are created on first use, in the process that uses them: never at import, never before a fork.

Each pool thread lowers its own CPU priority (nice NICENESS, Linux threads only): when the cores are busy,
the event loop thread gets one first, so sockets keep answering within milliseconds while detections wait.
"""
import logging
import os
import threading

log = logging.getLogger(__name__)

# Added to a pool thread's nice value: at +10 a thread weighs about a tenth of a normal one with the scheduler.
# Measured on 2 busy cores (ten photo detections at once, other processes competing): the event loop's p99 delay
# 7-30 ms with it, 9-42 ms without; SCHED_BATCH did no better.
NICENESS = 10


class ModelThreads:
    """`run(func, *args)` runs `func` in one of `size` OS threads and returns its result (or raises its error)."""

    def __init__(self, size):
        self.size = size
        self._pool = None
        self._gevent = False
        self._nice = None  # the pool threads' nice value
        self._lock = threading.Lock()

    def run(self, func, *args):
        """Call `func(*args)` in a pool thread; the caller waits, the event loop does not."""
        pool = self._pool or self._start()
        if not self._gevent:
            return pool.submit(_in_pool_thread, self._nice, func, args).result()
        # An error comes back as a value: raised inside gevent's pool it would also be printed, with its
        # traceback, as if the worker had crashed (a refused upload is no crash).
        succeeded, outcome = pool.apply(_outcome, (self._nice, func, args))
        if not succeeded:
            raise outcome
        return outcome

    def _start(self):
        with self._lock:
            if self._pool is None:
                self._nice = _nice_of_this_thread() + NICENESS
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


def _in_pool_thread(nice, func, args):
    _lower_priority(nice)
    return func(*args)


def _outcome(nice, func, args):
    try:
        return True, _in_pool_thread(nice, func, args)
    except Exception as exc:  # noqa: BLE001 - handed to the caller, who raises it
        return False, exc


def _nice_of_this_thread():
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        return 0


def _lower_priority(nice):
    """Give this OS thread the nice value `nice` unless it has it already (on Linux, a thread id names the
    thread alone; checked on every task, because the pool replaces idle threads)."""
    tid = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: the threads still work
        log.debug("detection threads keep their priority: %s", exc)
