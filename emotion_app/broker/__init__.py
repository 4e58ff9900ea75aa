"""Message brokers: how an event reaches the sockets of every worker. Chosen by URL."""
from .memory import MemoryBroker


def create_broker(url, prefix="emotion_app"):
    """Return the broker for `url`: None or `memory://` for in-process, `redis://`/`rediss://` for Redis."""
    scheme = (url or "memory://").split("://", 1)[0].lower()
    if scheme == "memory":
        return MemoryBroker()
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisBroker

        return RedisBroker(url, prefix)
    raise ValueError(f"Unsupported broker URL scheme {scheme!r}: use redis:// or leave REDIS_URL unset")
