"""The frames of `/api/ws`: what a client sends (validated with these models) and what the server sends
(documented by them, and checked against them by the tests)."""
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, StrictInt, StrictStr, model_validator

from .bodies import DetectText, ErrorCode
from .fields import (
    TIMESTAMP_EXAMPLE,
    ApplyFrame,
    Detection,
    Device,
    DeviceName,
    Emotion,
    Event,
    OptionalClientMsgId,
    OptionalRequestId,
    OptionalTimestamp,
    Shape,
)
from .validation import Must, refuse

# Event ids are SQL BIGINTs; a decimal string of one is taken too (query strings carry nothing else).
MAX_EVENT_ID = 2**63 - 1
JWT_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$"


def _event_id(value):
    value = int(value)
    if value > MAX_EVENT_ID:
        raise refuse("invalid_since", "'since' must be the id of the last event seen (a whole number >= 0)")
    return value


Since = Annotated[
    Annotated[StrictInt, Field(ge=0, le=MAX_EVENT_ID)] | Annotated[StrictStr, Field(pattern=r"^[0-9]{1,19}$")],
    Must(
        "the id of the last event seen (a whole number >= 0)", code="invalid_since",
        doc="The id of the last event this device has (a whole number >= 0, or its decimal string).",
    ),
    AfterValidator(_event_id),
]


# ------------------------------------------------------------------------------- client -> server


class EmotionUpdate(Shape):
    """Set the user's current emotion. It is stored, then sent to every device of the user, this one too
    (that is the acknowledgement); a repeat of a `client_msg_id` is answered with the original event."""

    type: Literal["emotion_update"]
    emotion: Emotion
    timestamp: OptionalTimestamp = None
    client_msg_id: OptionalClientMsgId = None


class Ping(Shape):
    """Keep the connection alive; answered with `pong`."""

    type: Literal["ping"]
    timestamp: Annotated[
        StrictStr | None,
        Field(max_length=64, examples=[TIMESTAMP_EXAMPLE]),
        Must("a string of at most 64 characters", doc="Echoed in the pong as `client_timestamp`."),
    ] = None


class Sync(Shape):
    """Send again every event after `since` (answered with those events, then `synced`)."""

    type: Literal["sync"]
    since: Since


class Refresh(Shape):
    """Move the socket onto a newer access token of the same user (answered with `refreshed`)."""

    type: Literal["refresh"]
    token: Annotated[
        StrictStr,
        Field(max_length=4096, pattern=JWT_PATTERN),
        Must("an access token (a string)", code="token_invalid", doc="A newer access token (from POST /api/auth/refresh)."),
    ]


def _no_image_field(schema):
    schema["not"] = {"required": ["image"]}  # the one field a detect frame may not have


class Detect(Shape):
    """Detect the emotion of a text (answered with `detected`); photos go to POST /api/emotions/detect."""

    model_config = ConfigDict(json_schema_extra=_no_image_field)

    type: Literal["detect"]
    text: DetectText = None
    apply: ApplyFrame = None
    client_msg_id: OptionalClientMsgId = None
    request_id: OptionalRequestId = None

    @model_validator(mode="before")
    @classmethod
    def _no_image(cls, data):
        if isinstance(data, dict) and "image" in data:
            raise refuse("invalid_field", "A detect frame takes a 'text': send photos to POST /api/emotions/detect")
        return data


def _by_type(*models):
    return {model.model_fields["type"].annotation.__args__[0]: model for model in models}


CLIENT_FRAMES = _by_type(EmotionUpdate, Ping, Sync, Refresh, Detect)


class SocketQuery(Shape):
    """The query string of the WebSocket handshake (`/api/ws?...`)."""

    token: str | None = Field(
        None, description="An access token, when the request has no `Authorization: Bearer` header."
    )
    ticket: str | None = Field(None, description="A single-use ticket from POST /api/ws-ticket, instead of a token.")
    since: Since | None = None
    device: DeviceName = None


# ------------------------------------------------------------------------------- server -> client


class ConnectionEstablished(Shape):
    """The first frame on every socket: the user's state, so that a fresh device is in sync at once."""

    type: Literal["connection_established"]
    message: Literal["Connected to emotion detection WebSocket server"]
    timestamp: str = Field(examples=[TIMESTAMP_EXAMPLE])
    user_id: str = Field(examples=["123"])
    current: Event | None = Field(description="The user's latest event; null while they have none.")
    last_event_id: int | None = Field(description="Its id.")
    devices: int | None = Field(description="How many sockets the user has open (null while presence is unknown).")
    device: Device = Field(description="This socket.")
    online: list[Device] | None = Field(description="The user's open sockets, this one included.")


class EmotionUpdated(Event):
    """An emotion change of the user, made on any device (this one included)."""

    type: Literal["emotion_update"]


class Pong(Shape):
    type: Literal["pong"]
    timestamp: str = Field(examples=[TIMESTAMP_EXAMPLE])
    client_timestamp: str | None = Field(None, description="The ping's `timestamp`, when it had one.")


class Synced(Shape):
    """Ends a replay (after `sync`, or after connecting with `since`)."""

    type: Literal["synced"]
    since: int
    count: int = Field(description="Events sent.")
    last_id: int | None = Field(description="The id of the last event sent.")
    has_more: bool = Field(description="More remain: send `sync` again with `since` = `last_id`.")


class Presence(Shape):
    """Another device of the user connected or disconnected."""

    type: Literal["presence"]
    user_id: str
    devices: int | None
    change: Literal["connected", "disconnected"]
    device: Device
    online: list[Device] | None


class TokenExpiring(Shape):
    """The socket's access token expires soon (WS_TOKEN_NOTICE): send `refresh` with a new one."""

    type: Literal["token_expiring"]
    expires_in: int = Field(description="Whole seconds left.")


class Refreshed(Shape):
    type: Literal["refreshed"]
    expires_at: str = Field(examples=[TIMESTAMP_EXAMPLE])
    expires_in: int


class Detected(Detection):
    """The answer to `detect`: the same body as POST /api/emotions/detect."""

    type: Literal["detected"]
    request_id: str | int | None = Field(None, description="The `detect` frame's `request_id`.")


class ErrorFrame(Shape):
    """A frame that was refused, or a failure of the socket; the socket stays open unless a close follows."""

    type: Literal["error"]
    message: str
    code: ErrorCode
    field: str | None = None
    retry_after: float | None = Field(None, description="With `rate_limited`: seconds to wait.")
    request_id: str | int | None = Field(None, description="The `request_id` of the `detect` frame refused.")


SERVER_FRAMES = _by_type(
    ConnectionEstablished, EmotionUpdated, Pong, Synced, Presence, TokenExpiring, Refreshed, Detected, ErrorFrame
)
