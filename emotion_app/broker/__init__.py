"""Message brokers: how an event reaches the sockets of every worker. Chosen by URL."""
from .memory import MemoryBroker


def create_broker(url):
    """Return the broker for `url` (`memory://` is the in-process broker)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else url.lower()
    if scheme == "memory":
        return MemoryBroker()
    raise ValueError(f"Unsupported broker URL scheme {scheme!r}: use memory://")
