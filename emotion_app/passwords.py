"""Password hashing that never blocks the other connections of a gevent worker.

Hashing (scrypt) costs ~0.15 s of CPU. Under gevent that would freeze every socket of the worker, so
the work runs in the gevent hub's native threadpool; the calling greenlet waits, the others run.
"""
from werkzeug.security import check_password_hash, generate_password_hash

# Verified against when the username is unknown, so both failures take the same time.
_DUMMY_HASH = None


def _offload(func, *args):
    try:
        from gevent import get_hub, monkey
    except ImportError:  # pragma: no cover - gevent is a hard dependency; this keeps tools importable
        return func(*args)
    if not monkey.is_module_patched("socket"):
        # Not under a gevent server (e.g. Flask's test client): nothing to protect.
        return func(*args)
    return get_hub().threadpool.apply(func, args)


def hash_password(password):
    """Return a salted hash of `password`."""
    return _offload(generate_password_hash, password)


def check_password(pw_hash, password):
    """Check `password` against `pw_hash`; with `pw_hash=None`, spend the same time and return False."""
    global _DUMMY_HASH
    if pw_hash is None:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = _offload(generate_password_hash, "not-a-real-password")
        _offload(check_password_hash, _DUMMY_HASH, password)
        return False
    return _offload(check_password_hash, pw_hash, password)
