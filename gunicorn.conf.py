"""gunicorn settings: gevent workers, no preload.

No application code is imported here: psycopg and the app must be imported after the gevent worker
has patched the standard library, which happens in each worker after fork. Only config.py (plain
environment parsing) is read.
"""
import importlib.util as _importlib_util
import os as _os
import shutil as _shutil
import signal as _signal

from gunicorn import glogging as _glogging

import config as _config  # "config" itself is a gunicorn setting name

_server = _config.server_settings()
# numpy's BLAS on one thread per call: detection already runs in a pool of OS threads, and BLAS's own threads
# would only fight it for the cores (emotion_app/detection/minilm.py). Read by numpy at import, in the workers.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# gevent records the stack of the greenlet that spawns each greenlet (for its debugging tools, which the
# service does not use). Reading it turns the spawner's frames into objects that live as long as those
# frames run: for a socket's handler, as long as the socket. Read by gevent in the workers.
_os.environ.setdefault("GEVENT_TRACK_GREENLET_TREE", "false")
# Every worker writes its metrics here and /metrics sums them; set before any worker imports
# prometheus_client, which reads it once.
_os.environ["PROMETHEUS_MULTIPROC_DIR"] = _server["metrics_dir"]

bind = _server["bind"]
workers = _server["workers"]
worker_class = "gevent"
worker_connections = _server["worker_connections"]
preload_app = False
loglevel = _server["log_level"]
accesslog = "-"
errorlog = "-"
# Sockets are long-lived: a worker's "timeout" is about its heartbeat, which gevent keeps beating.
timeout = 30
graceful_timeout = 10
keepalive = 5
# The access log shows the path without the query string, so a ?token= never lands in a log file.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)ss "%(a)s"'
# Several instances may run on one host (behind one proxy); none uses gunicorn's control socket.
control_socket_disable = True


def _install_logging():
    """Redact (and, with LOG_FORMAT=json, JSON-format) this process's gunicorn log lines.

    emotion_app/logs.py uses the standard library only; it is loaded by its path so that the app package
    (and psycopg with it) stays out of this master process, as the module docstring explains. Workers
    install it again through the app.
    """
    path = _os.path.join(_config.BASE_DIR, "emotion_app", "logs.py")
    spec = _importlib_util.spec_from_file_location("emotion_app_server_logs", path)
    module = _importlib_util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.install(_server["log_format"])


class _Logger(_glogging.Logger):
    """gunicorn's logger, with our redaction (and JSON lines) on every handler it sets up."""

    def setup(self, cfg):
        super().setup(cfg)
        _install_logging()


logger_class = _Logger


def on_starting(server):
    """Empty the metrics directory: the figures of an earlier run must not add to this one's."""
    _shutil.rmtree(_server["metrics_dir"], ignore_errors=True)
    _os.makedirs(_server["metrics_dir"], exist_ok=True)


def child_exit(server, worker):
    """Drop a dead worker's live gauges (its counters still count)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def when_ready(server):
    """Say how the service runs, once, when the arbiter is listening."""
    if _server["broker"] == "redis":
        how = "Redis broker (devices may be on any worker or host)"
    else:
        how = "in-process broker (one worker holds every socket; set REDIS_URL to run more)"
    server.log.info("emotion_app ready on %s: %d gevent worker(s), %s", bind, workers, how)


def post_worker_init(worker):
    """Tell the app its worker serves (so DETECTION_LOAD=startup loads the models now) and beside how many
    others (so the revocation cache knows whether its broker hears them all), and make SIGTERM (a
    stop, or a reload replacing this worker) drain the app at once.

    gunicorn alone would stop accepting, wait `graceful_timeout` for the sockets to end by themselves,
    and then drop them without a word. Here the app also refuses new handshakes (503) and closes every
    socket with 1012, so devices reconnect to a live worker and resume at once; HTTP requests in flight
    finish, and the worker exits as soon as they have.
    """
    extensions = getattr(worker.wsgi, "extensions", {})
    started = extensions.get("emotion_worker_started")
    if started is not None:
        started()
    workers = extensions.get("emotion_workers")
    if workers is not None:
        # The real count: gunicorn's --workers on the command line overrides WEB_CONCURRENCY and its checks.
        workers(worker.cfg.workers)
    drain = extensions.get("emotion_drain")
    if drain is None:
        return

    def on_sigterm(sig, frame):
        worker.handle_exit(sig, frame)
        import gevent  # the worker's own event loop; imported here, after the worker patched the stdlib

        gevent.spawn(drain)  # out of the signal handler: closing sockets waits on I/O

    _signal.signal(_signal.SIGTERM, on_sigterm)
