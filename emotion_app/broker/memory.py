"""The in-process broker: the default, for a single worker."""
from .base import Broker


class MemoryBroker(Broker):
    """Delivers to this process only; messages still go through JSON, exactly as over Redis."""

    shared = False

    def __init__(self):
        super().__init__()
        self._present = {}

    def presence_join(self, user_id, member):
        self._present.setdefault(str(user_id), set()).add(member)
        return self.presence_count(user_id)

    def presence_leave(self, user_id, member):
        members = self._present.get(str(user_id), set())
        members.discard(member)
        if not members:
            self._present.pop(str(user_id), None)
        return self.presence_count(user_id)

    def presence_count(self, user_id):
        return len(self._present.get(str(user_id), ()))
