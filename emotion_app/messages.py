"""The wire format, in one place: parsing and validating client frames, building server frames."""
import json

from .timeutil import isoformat, parse_client_timestamp, utcnow

CLIENT_TYPES = ("emotion_update", "ping")
WELCOME = "Connected to emotion detection WebSocket server"


class FrameError(Exception):
    """A client frame or body that cannot be accepted; `message` is what the client is told."""

    def __init__(self, code, message, field=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def parse_frame(data):
    """Decode one client frame into a dict with a known `type`, or raise FrameError."""
    if not isinstance(data, str):
        raise FrameError("binary_not_supported", "Binary frames are not supported: send JSON as text frames")
    try:
        frame = json.loads(data)
    except ValueError:
        frame = None
    if not isinstance(frame, dict):
        raise FrameError("invalid_format", "Invalid message format")
    kind = frame.get("type")
    if kind is None:
        raise FrameError("missing_type", f"Missing message type: 'type' must be one of {', '.join(CLIENT_TYPES)}")
    if kind not in CLIENT_TYPES:
        shown = kind if isinstance(kind, str) and len(kind) <= 64 else "(not a known type)"
        raise FrameError(
            "unknown_type", f"Unknown message type {shown!r}: expected one of {', '.join(CLIENT_TYPES)}"
        )
    return frame


def validate_update(body, vocabulary):
    """Return (emotion, client_timestamp) from an update's fields, or raise FrameError naming the field."""
    emotion = body.get("emotion")
    if emotion is None:
        raise FrameError("missing_field", "Missing field 'emotion'", field="emotion")
    if not isinstance(emotion, str):
        raise FrameError("invalid_field", "Field 'emotion' must be a string", field="emotion")
    emotion = emotion.strip().lower()
    if emotion not in vocabulary:
        shown = emotion if len(emotion) <= 32 else emotion[:32] + "..."
        raise FrameError(
            "unknown_emotion",
            f"Unknown emotion {shown!r}: allowed emotions are {', '.join(vocabulary)}",
            field="emotion",
        )
    client_timestamp = body.get("timestamp")
    if client_timestamp is not None and parse_client_timestamp(client_timestamp) is None:
        raise FrameError(
            "invalid_timestamp",
            "Field 'timestamp' must be an ISO-8601 date and time, e.g. 2023-05-09T14:45:00.000Z",
            field="timestamp",
        )
    return emotion, client_timestamp


def encode(frame):
    """Serialise a server frame (compact JSON text)."""
    return json.dumps(frame, separators=(",", ":"))


def connection_established(user_id):
    """The first frame on every socket, exactly the contract's fields."""
    return encode(
        {"type": "connection_established", "message": WELCOME, "timestamp": isoformat(utcnow()), "user_id": str(user_id)}
    )


def pong(client_timestamp=None):
    """The answer to a client `ping`."""
    frame = {"type": "pong", "timestamp": isoformat(utcnow())}
    if isinstance(client_timestamp, str) and len(client_timestamp) <= 64:
        frame["client_timestamp"] = client_timestamp
    return encode(frame)


def emotion_update(event):
    """An emotion change as pushed to every device of its user."""
    return encode({"type": "emotion_update", **event})


def error(message, code=None, **extra):
    """An error frame; `message` keeps the contract's wording, `code` is stable for programs."""
    frame = {"type": "error", "message": message}
    if code:
        frame["code"] = code
    frame.update(extra)
    return encode(frame)
