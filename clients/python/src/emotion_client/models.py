"""What the service returns, as frozen dataclasses: events, devices, and the items `watch()` yields."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Union


def parse_time(value: str) -> datetime:
    """Parse the server's ISO 8601 UTC timestamp (`2023-05-09T14:45:00.123Z`) into an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Event:
    """One stored change of the user's emotion.

    `id` grows with every stored event (of any user), `seq` counts this user's events without gaps,
    `timestamp` is the server's clock, `client_timestamp` the device's own timestamp exactly as sent.
    """

    id: int
    seq: int
    user_id: str
    emotion: str
    timestamp: datetime
    client_timestamp: str | None = None
    device: str | None = None
    client_msg_id: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        """Build an event from its JSON object (extra keys such as `type` are ignored)."""
        return cls(
            id=int(data["id"]),
            seq=int(data["seq"]),
            user_id=str(data["user_id"]),
            emotion=str(data["emotion"]),
            timestamp=parse_time(data["timestamp"]),
            client_timestamp=data.get("client_timestamp"),
            device=data.get("device"),
            client_msg_id=data.get("client_msg_id"),
        )

    def to_json(self) -> dict[str, Any]:
        """The event as the server's JSON object (timestamp in UTC with milliseconds and `Z`)."""
        data: dict[str, Any] = {
            "id": self.id,
            "seq": self.seq,
            "user_id": self.user_id,
            "emotion": self.emotion,
            "timestamp": self.timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "client_timestamp": self.client_timestamp,
            "device": self.device,
        }
        if self.client_msg_id is not None:
            data["client_msg_id"] = self.client_msg_id
        return data


@dataclass(frozen=True)
class User:
    """An account: its id, username and when it was created."""

    id: str
    username: str
    created_at: datetime | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> User:
        """Build from `{"id", "username", "created_at"}`."""
        created = data.get("created_at")
        return cls(
            id=str(data["id"]), username=str(data["username"]), created_at=parse_time(created) if created else None
        )


@dataclass(frozen=True)
class Device:
    """One open socket of the user: its id and the name it gave (None if unnamed)."""

    id: str
    name: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Device:
        """Build a device from `{"id", "name"}`."""
        return cls(id=str(data["id"]), name=data.get("name"))


def _devices(items: Any) -> tuple[Device, ...] | None:
    return None if items is None else tuple(Device.from_json(item) for item in items)


@dataclass(frozen=True)
class EmotionUpdate:
    """A new event, seen by `watch()` once and in id order."""

    event: Event


@dataclass(frozen=True)
class Presence:
    """Another device of the user connected or disconnected (`change`); `online` is who is online now
    (None while the server cannot tell)."""

    change: str
    device: Device | None
    online: tuple[Device, ...] | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Presence:
        """Build from a `presence` frame."""
        device = data.get("device")
        return cls(
            change=str(data.get("change")),
            device=Device.from_json(device) if device else None,
            online=_devices(data.get("online")),
        )


@dataclass(frozen=True)
class Connected:
    """The socket is (again) connected: how many devices are online, which, and the current event."""

    devices: int | None
    online: tuple[Device, ...] | None
    current: Event | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Connected:
        """Build from a `connection_established` frame."""
        current = data.get("current")
        return cls(
            devices=data.get("devices"),
            online=_devices(data.get("online")),
            current=Event.from_json(current) if current else None,
        )


@dataclass(frozen=True)
class Disconnected:
    """The socket closed or could not be opened: the close code (1006 when the connection was lost
    without one, or the HTTP status of a refused handshake such as 429 or 503), why, and the seconds
    until the next attempt (0: at once, as after a server restart, 1012; the failed attempts that follow
    a 1012 wait at most `Backoff.restart_cap` for `Backoff.restart_window` seconds)."""

    code: int | None
    reason: str
    retry_in: float


@dataclass(frozen=True)
class Resynced:
    """Catching up after a reconnect is done: `count` missed events after `since` were delivered,
    the last being `last_id`."""

    count: int
    since: int
    last_id: int | None


WatchEvent = Union[EmotionUpdate, Presence, Connected, Disconnected, Resynced]
