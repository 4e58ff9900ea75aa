"""The in-process broker: the default for a single worker."""
import json
import logging

log = logging.getLogger(__name__)


class MemoryBroker:
    """Delivers each published message to this process's handler, synchronously.

    Messages go through JSON exactly as they would over Redis, so the wire format is exercised the
    same way. Delivery is synchronous because the handler (the hub) only queues and never blocks.
    """

    shared = False  # reaches this process only

    def __init__(self):
        self._handler = None

    def subscribe(self, handler):
        """Register the function that receives every published message."""
        self._handler = handler

    def publish(self, message):
        """Hand `message` (a JSON-serialisable dict) to the subscriber."""
        data = json.dumps(message, separators=(",", ":"))
        if self._handler is None:
            return
        try:
            self._handler(json.loads(data))
        except Exception:
            # A bug in delivery must not turn into a failed store for the sender.
            log.exception("broker handler failed")
