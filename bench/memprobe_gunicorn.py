"""gunicorn's configuration for `bench/memprobe.py`: the service's own (gunicorn.conf.py), with the worker
probed (allocations traced, snapshots taken on request). Never used to serve."""
import os as _os
import runpy as _runpy

_here = _os.path.dirname(_os.path.abspath(__file__))
globals().update({k: v for k, v in _runpy.run_path(_os.path.join(_here, "..", "gunicorn.conf.py")).items()
                  if not k.startswith("__")})
_serve_post_worker_init = post_worker_init  # noqa: F821 - defined by gunicorn.conf.py, just above


def post_worker_init(worker):
    """The service's own hook, then the probe."""
    _serve_post_worker_init(worker)
    import sys

    sys.path.insert(0, _os.path.join(_here, ".."))
    from bench import memprobe

    memprobe.install()
