"""The in-process broker: the default, for a single worker."""
from .base import Broker


class MemoryBroker(Broker):
    """Delivers to this process only; messages still go through JSON, exactly as over Redis."""

    shared = False
