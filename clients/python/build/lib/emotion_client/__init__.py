"""Python client of the emotion_app service: HTTP calls, a live stream that never misses an event,
and the `emotion` command line."""
__version__ = "0.1.0"

from .backoff import Backoff  # noqa: E402
from .client import Client  # noqa: E402
from .errors import ApiError, AuthError, EmotionError, Revoked, Unreachable  # noqa: E402
from .models import (  # noqa: E402
    Connected,
    Device,
    Disconnected,
    EmotionUpdate,
    Event,
    Presence,
    Resynced,
    User,
    WatchEvent,
)
from .tokens import Tokens  # noqa: E402
from .watch import Watch  # noqa: E402

__all__ = [
    "ApiError",
    "AuthError",
    "Backoff",
    "Client",
    "Connected",
    "Device",
    "Disconnected",
    "EmotionError",
    "EmotionUpdate",
    "Event",
    "Presence",
    "Resynced",
    "Revoked",
    "Tokens",
    "Unreachable",
    "User",
    "Watch",
    "WatchEvent",
]
