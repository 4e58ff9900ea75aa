"""The wire format, in one place: parsing and validating client frames, building server frames."""
import json

from pydantic import TypeAdapter, ValidationError

from .contract.fields import RequestId
from .contract.frames import CLIENT_FRAMES
from .contract.validation import FrameError, check
from .timeutil import isoformat, utcnow

CLIENT_TYPES = tuple(CLIENT_FRAMES)
REQUEST_ID = TypeAdapter(RequestId)
WELCOME = "Connected to emotion detection WebSocket server"
# Codes of frames refused before their type was known.
UNPARSED = ("binary_not_supported", "invalid_format", "too_deep", "missing_type", "unknown_type")
# Our messages are flat; deeper JSON is refused before it can cost stack or memory.
MAX_DEPTH = 8


def loads(data):
    """Decode JSON text (str or bytes) nested at most MAX_DEPTH deep; raise ValueError or FrameError(too_deep)."""
    try:
        value = json.loads(data)
    except RecursionError:
        value = None  # deeper than the interpreter's stack allows: far too deep
    else:
        # Counting brackets is cheap and bounds the depth from above: most bodies skip the walk.
        brackets = data.count(b"[" if isinstance(data, bytes) else "[") + data.count(b"{" if isinstance(data, bytes) else "{")
        if brackets <= MAX_DEPTH or _depth(value) <= MAX_DEPTH:
            return value
    raise FrameError("too_deep", f"JSON is nested too deeply: at most {MAX_DEPTH} levels of objects and arrays")


def _depth(value):
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_frame(data, settings):
    """Decode one client frame into its model (contract/frames.py), or raise FrameError.

    `settings` (the app's config) holds the bounds that are settings, such as the vocabulary.
    """
    if not isinstance(data, str):
        raise FrameError("binary_not_supported", "Binary frames are not supported: send JSON as text frames")
    try:
        frame = loads(data)
    except ValueError:
        frame = None
    if not isinstance(frame, dict):
        raise FrameError("invalid_format", "Invalid message format")
    kind = frame.get("type")
    if kind is None:
        raise FrameError("missing_type", f"Missing message type: 'type' must be one of {', '.join(CLIENT_TYPES)}")
    model = CLIENT_FRAMES.get(kind) if isinstance(kind, str) else None
    if model is None:
        shown = kind if isinstance(kind, str) and len(kind) <= 64 else "(not a known type)"
        raise FrameError(
            "unknown_type", f"Unknown message type {shown!r}: expected one of {', '.join(CLIENT_TYPES)}"
        )
    try:
        return check(model, frame, settings)
    except FrameError as exc:
        exc.request_id = _request_id(model, frame)  # an answer to a refused `detect` still names its request
        raise


def _request_id(model, frame):
    """The frame's `request_id` if its type takes one and it is valid, else None: the error that refuses a
    frame never echoes what the client sent unchecked."""
    if "request_id" not in model.model_fields:
        return None
    try:
        return REQUEST_ID.validate_python(frame.get("request_id"))
    except ValidationError:
        return None


def encode(frame):
    """Serialise a server frame (compact JSON text)."""
    return json.dumps(frame, separators=(",", ":"))


def connection_established(user_id, current=None, last_event_id=None, device=None, online=None):
    """The first frame on every socket: the contract's fields, then the user's state.

    `current` is the latest event (or None), `last_event_id` its id, `device` this socket (`{"id",
    "name"}`), `online` the user's open sockets (this one included; None while presence is unknown)
    and `devices` how many they are, so a fresh device is in sync at once.
    """
    return encode(
        {
            "type": "connection_established",
            "message": WELCOME,
            "timestamp": isoformat(utcnow()),
            "user_id": str(user_id),
            "current": current,
            "last_event_id": last_event_id,
            "devices": len(online) if online is not None else None,
            "device": device,
            "online": online,
        }
    )


def pong(client_timestamp=None):
    """The answer to a client `ping`."""
    frame = {"type": "pong", "timestamp": isoformat(utcnow())}
    if client_timestamp is not None:
        frame["client_timestamp"] = client_timestamp
    return encode(frame)


def emotion_update(event):
    """An emotion change as pushed to every device of its user."""
    return encode({"type": "emotion_update", **event})


def synced(since, count, last_id, has_more):
    """Closes a replay: `count` events after `since` were sent; with `has_more`, ask again from `last_id`."""
    return encode({"type": "synced", "since": since, "count": count, "last_id": last_id, "has_more": has_more})


def presence(user_id, change, device, online):
    """Another device of the user (`device`: `{"id", "name"}`) connected or disconnected; `online` lists
    the user's open sockets now (None while presence is unknown), `devices` counts them."""
    return encode(
        {
            "type": "presence",
            "user_id": str(user_id),
            "devices": len(online) if online is not None else None,
            "change": change,
            "device": device,
            "online": online,
        }
    )


def token_expiring(expires_in):
    """The socket's access token expires in `expires_in` whole seconds: send `refresh` with a new one."""
    return encode({"type": "token_expiring", "expires_in": expires_in})


def refreshed(expires_at, expires_in):
    """A `refresh` was accepted: the socket now lasts until `expires_at` (a datetime), `expires_in` s from now."""
    return encode({"type": "refreshed", "expires_at": isoformat(expires_at), "expires_in": expires_in})


def detected(answer, request_id=None):
    """The answer to a `detect` frame: the same body as POST /api/emotions/detect, and the frame's request_id."""
    frame = {"type": "detected", **answer}
    if request_id is not None:
        frame["request_id"] = request_id
    return encode(frame)


def error(message, code=None, **extra):
    """An error frame; `message` keeps the contract's wording, `code` is stable for programs."""
    frame = {"type": "error", "message": message}
    if code:
        frame["code"] = code
    frame.update(extra)
    return encode(frame)
