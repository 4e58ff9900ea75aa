"""The field types and shapes that HTTP bodies and socket frames share: an emotion, a client's timestamp and
message id, a device name, an event, a detection answer."""
import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from .validation import Must, Setting, refuse

# The length of the `device` column of emotion_events.
MAX_DEVICE_NAME = 64
TIMESTAMP_EXAMPLE = "2023-05-09T14:45:00.000Z"
# ISO 8601 as devices send it: a date, optionally a time (with seconds and a fraction or not), optionally an
# offset or Z. Dart's `DateTime.now().toIso8601String()` has microseconds and no offset. The server keeps the
# text as sent and never reads the time in it, so the pattern is the whole rule.
ISO_8601 = (
    "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    "([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.,][0-9]{1,9})?)?(Z|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])?)?$"
)


class Shape(BaseModel):
    """A JSON object of the contract: fields it does not name are ignored, as clients of older and newer
    releases send them."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def _known_emotion(value, info):
    emotion = value.strip().lower()
    vocabulary = info.context["EMOTIONS"]
    if emotion not in vocabulary:
        shown = emotion if len(emotion) <= 32 else emotion[:32] + "..."
        raise refuse("unknown_emotion", f"Unknown emotion {shown!r}: allowed emotions are {', '.join(vocabulary)}")
    return emotion


def normalise_device_name(raw):
    """The name a device gave itself, normalised (None for none or a blank one), or raise ValueError.

    Control and format characters are dropped (whitespace ones count as spaces), runs of whitespace become
    one space, and the ends are trimmed. Nothing is escaped: names are shown by whoever reads them.
    """
    kept = "".join(ch for ch in raw if ch.isspace() or not unicodedata.category(ch).startswith("C"))
    name = " ".join(kept.split())
    if len(name) > MAX_DEVICE_NAME:
        raise ValueError(f"Field 'device' must be at most {MAX_DEVICE_NAME} characters")
    return name or None


def _device_name(value):
    try:
        return normalise_device_name(value) if value is not None else None
    except ValueError as exc:
        raise refuse("invalid_field", str(exc)) from None


TIMESTAMP_RULE = f"an ISO-8601 date and time, e.g. {TIMESTAMP_EXAMPLE}"
# An emotion of the server's vocabulary; case and surrounding spaces do not matter.
Emotion = Annotated[
    StrictStr,
    Setting("EMOTIONS", "enum"),
    Must("a string: one of the server's emotions (EMOTIONS), in any case"),
    AfterValidator(_known_emotion),
    Field(examples=["happy"]),
]
ClientTimestamp = Annotated[StrictStr, Field(pattern=ISO_8601, max_length=64, examples=[TIMESTAMP_EXAMPLE])]
ClientMsgId = Annotated[StrictStr, Field(min_length=1, max_length=64, examples=["a1b2c3"])]
DeviceName = Annotated[
    StrictStr | None,
    Must(
        f"a string (the device's name, at most {MAX_DEVICE_NAME} characters once control characters are "
        "dropped and spaces collapsed) or null"
    ),
    AfterValidator(_device_name),
    Field(examples=["Pixel 8"]),
]

RequestId = Annotated[StrictStr, Field(min_length=1, max_length=64)] | Annotated[
    StrictInt, Field(gt=-(2**53), lt=2**53)
]

# The optional fields of an emotion change, as HTTP bodies and frames take them.
OptionalTimestamp = Annotated[
    ClientTimestamp | None,
    Must(TIMESTAMP_RULE, code="invalid_timestamp", doc="When the change happened on the device (kept as sent)."),
]
OptionalClientMsgId = Annotated[
    ClientMsgId | None,
    Must(
        "a string of 1-64 characters",
        doc="The client's id for this change (1-64 characters): a repeat is answered with the original "
        "event, marked `duplicate`, and stores nothing.",
    ),
]
OptionalRequestId = Annotated[
    RequestId | None,
    Must("a string of 1-64 characters or a whole number", doc="Echoed in the answer, to match it to this frame."),
]


class Device(Shape):
    """One open socket of the user."""

    id: str = Field(description="The socket's id, unique while it is open.")
    name: str | None = Field(description="The name the device gave itself, if any.")


class Event(Shape):
    """A stored emotion change, as every device of its user and HTTP clients see it."""

    id: int = Field(description="The event's id: increases with every event stored; resume from it with `since`.")
    seq: int = Field(description="The event's number among its user's events (1, 2, 3 ...).")
    user_id: str = Field(examples=["123"])
    emotion: str = Field(examples=["happy"])
    timestamp: str = Field(description="When the server stored it (UTC, milliseconds).", examples=[TIMESTAMP_EXAMPLE])
    client_timestamp: str | None = Field(description="The device's `timestamp`, as sent.")
    device: str | None = Field(description="The name of the device that made the change.")
    client_msg_id: str | None = Field(None, description="The change's `client_msg_id`, when it had one.")
    source: str | None = Field(
        None, description="Only on detected emotions: `detected:text`, `detected:face` or `detected:text+face`."
    )
    confidence: float | None = Field(None, description="Only on detected emotions: the detection's confidence.")
    duplicate: bool | None = Field(
        None, description="True when this answers a repeat of a `client_msg_id`: nothing new was stored."
    )


Scores = dict[str, float]


class Summary(Shape):
    """The top emotion of a set of scores, its score, and every emotion's score."""

    emotion: str
    confidence: float
    scores: Scores


class Box(Shape):
    x: int
    y: int
    width: int
    height: int


class Face(Summary):
    """One face found in the photo (largest first) and its emotion."""

    box: Box


class Detection(Shape):
    """A detection's answer: the emotion of the text, the photo's largest face, or both together."""

    emotion: str = Field(description="The emotion of the server's vocabulary that scored highest.")
    confidence: float
    uncertain: bool = Field(description="True when no emotion scored `threshold` or more.")
    threshold: float
    scores: Scores = Field(description="The score of every emotion of the vocabulary.")
    based_on: Literal["text", "face", "text+face"]
    text: Summary | None = Field(None, description="The text's own result, when a text was sent.")
    faces: list[Face] | None = Field(None, description="Every face found, when a photo was sent.")
    models: dict[str, str] = Field(description="The name and version of each model used (`text`, `face`).")
    applied: bool = Field(description="Whether the emotion was stored as the user's current one.")
    event: Event | None = Field(None, description="The stored event, when applied.")
    not_applied: Literal["uncertain"] | None = Field(
        None, description="Why an apply was asked for but not done: the result was uncertain."
    )
    elapsed_ms: float


ApplyFrame = Annotated[
    StrictBool | Literal["always"] | None,
    Must(
        'true, false or "always"',
        doc='Store the result as the current emotion: true (unless uncertain), "always", or false.',
    ),
]
