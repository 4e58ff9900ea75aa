"""HTTP request and response bodies, and query strings."""
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, StrictStr, WithJsonSchema

from .codes import ERROR_CODES
from .fields import (
    ISO_8601,
    Detection,
    Device,
    DeviceName,
    Emotion,
    Event,
    OptionalClientMsgId,
    OptionalTimestamp,
    Shape,
)
from .validation import Must, Setting, refuse

PASSWORD_MIN, PASSWORD_MAX = 8, 256
BUCKETS = ("hour", "day", "week")
EXPORT_FORMATS = ("csv", "json")
USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,32}$"
TIME_PARAMETER = Annotated[
    str | None,
    # A `+` left unencoded in a query string arrives as a space: "10:00 02:00" means "10:00+02:00".
    Field(max_length=64, pattern=ISO_8601.replace("[+-]", "[+ -]"), examples=["2026-03-29"]),
    Must(
        "an ISO 8601 date or time",
        doc="An ISO 8601 date or time: `2026-03-29`, `2026-03-29T10:00` (a wall time in `tz`) or "
        "`2026-03-29T08:00:00Z`; between the years 1900 and 9000.",
    ),
]
ZONE_PARAMETER = Annotated[
    str,
    Field(max_length=64, examples=["Europe/Paris"]),
    Must("an IANA time zone name", doc="The IANA time zone the buckets and wall times are in."),
]

NewPassword = Annotated[
    StrictStr,
    Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX),
    Must(f"a string of {PASSWORD_MIN}-{PASSWORD_MAX} characters"),
]
GivenPassword = Annotated[
    StrictStr, Field(min_length=1, max_length=PASSWORD_MAX), Must(f"a string of 1-{PASSWORD_MAX} characters")
]


# ------------------------------------------------------------------------------------------- requests


class Registration(Shape):
    username: Annotated[
        StrictStr,
        Field(pattern=USERNAME_PATTERN, examples=["alice"]),
        Must("3-32 characters: letters, digits, '_', '.' or '-'"),
    ]
    password: Annotated[NewPassword, Field(examples=["correct horse battery"])]


class Credentials(Shape):
    username: Annotated[
        StrictStr,
        Field(min_length=1, max_length=64, examples=["alice"]),
        Must("a string of 1-64 characters", doc="Compared case-insensitively."),
    ]
    password: Annotated[GivenPassword, Field(examples=["correct horse battery"])]


class PasswordChange(Shape):
    current_password: GivenPassword
    new_password: NewPassword


class EmotionChange(Shape):
    """An emotion change, as `POST /api/emotions` takes it (the socket's `emotion_update` without `type`)."""

    emotion: Emotion
    timestamp: OptionalTimestamp = None
    client_msg_id: OptionalClientMsgId = None
    device: DeviceName = None


class TicketRequest(Shape):
    device: DeviceName = None


def _text_within(value, info):
    if value is None:
        return None
    text = value.strip() or None
    limit = info.context["DETECT_MAX_TEXT"]
    if text is not None and len(text) > limit:
        raise refuse("text_too_long", f"Field 'text' may be at most {limit} characters, got {len(text)}")
    return text


DetectText = Annotated[
    StrictStr | None,
    Setting("DETECT_MAX_TEXT", "maxLength"),
    Must("a string", doc="The text to read (surrounding spaces do not count towards its length)."),
    Field(examples=["What a wonderful day!"]),
    AfterValidator(_text_within),
]


class DetectBody(Shape):
    """What to detect the emotion of: a text (JSON or form), a photo (multipart), or both."""

    text: DetectText = None
    client_msg_id: OptionalClientMsgId = None
    device: DeviceName = None


def _no_default_image(schema):
    schema["properties"]["image"].pop("default", None)  # a form leaves a field out; it never sends null


class DetectForm(DetectBody):
    """The multipart form: the fields of the JSON body, and a photo."""

    model_config = ConfigDict(json_schema_extra=_no_default_image)

    image: Annotated[
        bytes | None,
        WithJsonSchema({
            "type": "string", "format": "binary",
            "description": "A JPEG, PNG or WebP photo with a face (at most DETECT_MAX_IMAGE_BYTES).",
        }),
    ] = None


# ------------------------------------------------------------------------------------------- queries


class HistoryQuery(Shape):
    limit: Annotated[
        int | None,
        Field(ge=1, le=2**62),
        Must("a positive whole number", doc="Events per page (default 50, at most HISTORY_MAX_LIMIT)."),
    ] = None
    before: Annotated[
        int | None,
        Field(ge=1, le=2**62),
        Must("a positive whole number", doc="Only events with a smaller id (the `next_before` of the page before)."),
    ] = None


class StatsQuery(Shape):
    from_: Annotated[TIME_PARAMETER, Field(alias="from")] = None
    to: TIME_PARAMETER = None
    tz: ZONE_PARAMETER = "UTC"
    bucket: Annotated[Literal[BUCKETS], Must("hour, day or week")] = "day"


class ExportQuery(Shape):
    format: Annotated[Literal[EXPORT_FORMATS], Must("csv or json")] = "csv"
    from_: Annotated[TIME_PARAMETER, Field(alias="from")] = None
    to: TIME_PARAMETER = None
    tz: ZONE_PARAMETER = "UTC"


class DetectQuery(Shape):
    apply: Annotated[
        Literal["false", "true", "always"],
        Must(
            "false, true or always",
            doc="Store the result as the current emotion: `true` (unless uncertain), `always`, or `false`.",
        ),
    ] = "false"


# ------------------------------------------------------------------------------------------- responses


class User(Shape):
    id: str = Field(examples=["123"])
    username: str = Field(examples=["alice"])
    created_at: str


class AccessToken(Shape):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="Seconds until the access token expires.")


class Session(AccessToken):
    """A new login: an access token, the refresh token to get more, and the user."""

    refresh_token: str
    user: User


class LoggedOut(Shape):
    revoked: Literal[True]
    token_type: Literal["access", "refresh"]


class CurrentEmotion(Shape):
    """The latest event; every field is null while the user has none."""

    id: int | None
    seq: int | None
    user_id: str
    emotion: str | None
    timestamp: str | None
    client_timestamp: str | None
    device: str | None
    client_msg_id: str | None = None
    source: str | None = None
    confidence: float | None = None


class History(Shape):
    events: list[Event] = Field(description="Newest first.")
    limit: int
    next_before: int | None = Field(description="Ask for the next page with `before` set to this; null on the last.")


class Ticket(Shape):
    ticket: str = Field(description="Open the socket with `/api/ws?ticket=...` (once).")
    expires_in: int


class OnlineDevices(Shape):
    user_id: str
    devices: int
    online: list[Device]


class Tally(Shape):
    count: int = Field(description="Changes to this emotion.")
    seconds: float = Field(description="Seconds spent in it.")


class Stretch(Shape):
    seconds: float
    start: str
    end: str


class Total(Tally):
    share: float = Field(description="Its share of the tracked time (0-1).")
    longest: Stretch


class Bucket(Shape):
    start: str = Field(description="Where the bucket begins, in local time with its offset.")
    label: str
    emotions: dict[str, Tally]


class Stats(Shape):
    from_: str = Field(alias="from")
    to: str
    bucket: Literal[BUCKETS]
    tz: str
    emotions: list[str]
    buckets: list[Bucket]
    totals: dict[str, Total]
    tracked_seconds: float


class Health(Shape):
    status: Literal["ok"]


class Ready(Shape):
    status: Literal["ready"]
    database: Literal["ok"]
    broker: Literal["ok"]
    draining: Literal["ok"]
    detection: str = Field(description="`off`, `not_loaded`, `ready` or `unavailable: <why>`.")


ErrorCode = Literal[tuple(ERROR_CODES)]


class Error(Shape):
    """Every HTTP error has this shape."""

    status: int = Field(description="The HTTP status, repeated.")
    error: ErrorCode = Field(description="A stable code for programs (see the table of codes).")
    message: str = Field(description="A sentence for people.")
    field: str | None = Field(None, description="The invalid field or parameter, if one is.")
    fields: dict[str, str] | None = Field(None, description="Every invalid field, with what is wrong with it.")
    retry_after: int | None = Field(None, description="With 429 and 503: seconds to wait before trying again.")
    checks: dict[str, str] | None = Field(None, description="/readyz: each check, `ok` or what is wrong.")
    detection: str | None = Field(None, description="/readyz: how detection stands.")

