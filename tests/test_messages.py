"""The wire format: parsing client frames and building server frames."""
import json
import re
from datetime import datetime, timezone

import pytest

from emotion_app import messages
from emotion_app.contract.bodies import TicketRequest
from emotion_app.contract.validation import check
from emotion_app.messages import FrameError

VOCAB = ("happy", "sad", "angry", "surprised", "fearful", "disgusted", "neutral")
SETTINGS = {"EMOTIONS": VOCAB, "DETECT_MAX_TEXT": 1000}
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def parse_frame(raw):
    return messages.parse_frame(raw, SETTINGS)


def validate_update(fields):
    """(emotion, timestamp, client_msg_id) of an emotion_update frame with `fields`."""
    frame = parse_frame(json.dumps({"type": "emotion_update", **fields}))
    return frame.emotion, frame.timestamp, frame.client_msg_id


def parse_since(value):
    return parse_frame(json.dumps({"type": "sync", "since": value})).since


def parse_refresh(fields):
    return parse_frame(json.dumps(fields)).token


def device_name(raw):
    return check(TicketRequest, {"device": raw}, SETTINGS).device


@pytest.mark.parametrize("raw", ["", "nope", "[1,2]", '"ping"', "42", "null", "{", '{"type": "ping"'])
def test_invalid_format(raw):
    with pytest.raises(FrameError) as info:
        parse_frame(raw)
    assert info.value.code == "invalid_format"
    assert info.value.message == "Invalid message format"


def test_binary_frames_are_refused():
    with pytest.raises(FrameError) as info:
        parse_frame(b'{"type": "ping"}')
    assert info.value.code == "binary_not_supported"


def test_missing_type_names_it():
    with pytest.raises(FrameError) as info:
        parse_frame('{"emotion": "sad"}')
    assert info.value.code == "missing_type" and "'type'" in info.value.message


@pytest.mark.parametrize("kind", ["hello", "PING", 5, True, {"a": 1}])
def test_unknown_type_names_it(kind):
    with pytest.raises(FrameError) as info:
        parse_frame(json.dumps({"type": kind}))
    assert info.value.code == "unknown_type"
    assert "emotion_update" in info.value.message and "ping" in info.value.message
    if isinstance(kind, str):
        assert repr(kind) in info.value.message


def test_huge_unknown_type_is_not_echoed():
    with pytest.raises(FrameError) as info:
        parse_frame(json.dumps({"type": "x" * 1000}))
    assert "x" * 100 not in info.value.message


@pytest.mark.parametrize(
    "stamp",
    [
        "2023-05-09T14:45:00.000Z",
        "2023-05-09T14:45:00Z",
        "2023-05-09T14:45:00.123456",  # Dart's DateTime.now().toIso8601String()
        "2023-05-09T16:45:00+02:00",
        "2023-05-09T14:45:00.123-05:30",
    ],
)
def test_accepted_client_timestamps(stamp):
    assert validate_update({"emotion": "sad", "timestamp": stamp}) == ("sad", stamp, None)


def test_emotion_is_trimmed_and_lowercased():
    assert validate_update({"emotion": "\tSURPRISED \n"}) == ("surprised", None, None)


def test_client_msg_id():
    assert validate_update({"emotion": "sad", "client_msg_id": "a1"}) == ("sad", None, "a1")
    for bad in ["", "x" * 65, 5, ["a"]]:
        with pytest.raises(FrameError) as info:
            validate_update({"emotion": "sad", "client_msg_id": bad})
        assert info.value.field == "client_msg_id"


@pytest.mark.parametrize("value, expected", [(0, 0), (17, 17), ("42", 42)])
def test_since_accepts_event_ids(value, expected):
    assert parse_since(value) == expected


@pytest.mark.parametrize("value", [-1, "abc", "", True, 1.5, "1e3", 2**63, [], "9" * 20, "99999999999999999999"])
def test_since_rejects_everything_else(value):
    with pytest.raises(FrameError) as info:
        parse_since(value)
    assert info.value.code == "invalid_since"


@pytest.mark.parametrize("stamp", ["", "now", "2023-05-09 nonsense", "x" * 65, 123, [], {}])
def test_rejected_client_timestamps(stamp):
    with pytest.raises(FrameError) as info:
        validate_update({"emotion": "sad", "timestamp": stamp})
    assert info.value.code == "invalid_timestamp" and info.value.field == "timestamp"


def test_connection_established_keeps_the_contract_fields_and_adds_the_state():
    current = {"id": 9, "seq": 3, "user_id": "123", "emotion": "sad", "timestamp": "2023-05-09T14:45:00.000Z"}
    me = {"id": "a" * 16, "name": "Pixel 8"}
    online = [{"id": "b" * 16, "name": None}, me]
    frame = json.loads(messages.connection_established(123, current, 9, me, online))
    assert frame.keys() == {
        "type", "message", "timestamp", "user_id", "current", "last_event_id", "devices", "device", "online"
    }
    assert (frame["current"], frame["last_event_id"], frame["devices"]) == (current, 9, 2)
    assert (frame["device"], frame["online"]) == (me, online)
    assert frame["type"] == "connection_established"
    assert frame["message"] == "Connected to emotion detection WebSocket server"
    assert frame["user_id"] == "123"
    assert STAMP.match(frame["timestamp"])


def test_pong_and_error_frames():
    pong = json.loads(messages.pong("2023-05-09T14:40:00.000Z"))
    assert pong["type"] == "pong" and STAMP.match(pong["timestamp"])
    assert pong["client_timestamp"] == "2023-05-09T14:40:00.000Z"
    error = json.loads(messages.error("Invalid message format", code="invalid_format"))
    assert error == {"type": "error", "message": "Invalid message format", "code": "invalid_format"}


def test_refresh_frames_carry_a_token():
    assert parse_refresh({"type": "refresh", "token": "a.b.c"}) == "a.b.c"
    with pytest.raises(FrameError) as info:
        parse_refresh({"type": "refresh"})
    assert (info.value.code, info.value.field) == ("missing_field", "token") and "'token'" in info.value.message
    for token in (5, True, ["a.b.c"], {"t": 1}, "caf\u00e9.b.c", "\ud800"):
        with pytest.raises(FrameError) as info:
            parse_refresh({"type": "refresh", "token": token})
        assert info.value.code == "token_invalid", token


def test_token_frames():
    assert json.loads(messages.token_expiring(42)) == {"type": "token_expiring", "expires_in": 42}
    moment = datetime(2026, 3, 29, 8, 0, 5, tzinfo=timezone.utc)
    assert json.loads(messages.refreshed(moment, 900)) == {
        "type": "refreshed", "expires_at": "2026-03-29T08:00:05.000Z", "expires_in": 900
    }


def test_presence_frames_count_and_list_the_devices():
    laptop = {"id": "c" * 16, "name": "Laptop"}
    frame = json.loads(messages.presence(123, "connected", laptop, [laptop]))
    assert frame == {
        "type": "presence", "user_id": "123", "devices": 1, "change": "connected", "device": laptop, "online": [laptop]
    }
    unknown = json.loads(messages.presence(123, "disconnected", laptop, None))
    assert (unknown["devices"], unknown["online"]) == (None, None)
    established = json.loads(messages.connection_established(123, device=laptop, online=None))
    assert (established["devices"], established["online"], established["device"]) == (None, None, laptop)


@pytest.mark.parametrize(
    "raw, name",
    [
        (None, None),
        ("Pixel 8", "Pixel 8"),
        ("  Pixel   8  ", "Pixel 8"),
        ("Pixel\t\n 8", "Pixel 8"),  # whitespace controls separate words
        ("Pi\x00xel\x1b 8\x7f", "Pixel 8"),  # other controls are dropped
        ("Pix\u200bel\u202e 8\ufeff", "Pixel 8"),  # format characters: zero width, bidi override, BOM
        ("Pixel\u00a0\u2003 8", "Pixel 8"),  # every kind of space collapses
        ("\ud800Pixel", "Pixel"),  # a lone surrogate (JSON can carry one) is no character
        ("", None),
        ("  \t\u200b ", None),
        ("<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>"),  # stored as given: escaping is the page's job
        ("Émilie's iPhone 📱", "Émilie's iPhone 📱"),
        ("x" * 64, "x" * 64),
        (" " + "x" * 64 + "\u200b ", "x" * 64),  # the limit counts what is kept
    ],
)
def test_device_names_are_normalised(raw, name):
    assert device_name(raw) == name


@pytest.mark.parametrize("raw", ["x" * 65, "a " * 40, 5, True, ["Pixel"], {"name": "Pixel"}])
def test_bad_device_names_are_refused(raw):
    with pytest.raises(FrameError) as info:
        device_name(raw)
    assert (info.value.code, info.value.field) == ("invalid_field", "device")


@pytest.mark.parametrize(
    "frame, request_id",
    [
        ({"type": "detect", "text": 7, "request_id": "r1"}, "r1"),  # a refused detect names its request
        ({"type": "detect", "text": "hi", "image": "aGk=", "request_id": 7}, 7),
        # Only a valid request_id of a frame that takes one is echoed back: never the client's raw value.
        ({"type": "detect", "text": "hi", "image": "aGk=", "request_id": {"x": ["y"] * 3}}, None),
        ({"type": "detect", "text": "hi", "image": "aGk=", "request_id": "x" * 65}, None),
        ({"type": "emotion_update", "emotion": 5, "request_id": {"x": 1}}, None),
        ({"type": "emotion_update", "emotion": 5, "request_id": "r1"}, None),
    ],
)
def test_a_refused_frame_names_only_a_valid_request_id(frame, request_id):
    with pytest.raises(FrameError) as info:
        parse_frame(json.dumps(frame))
    assert info.value.request_id == request_id
