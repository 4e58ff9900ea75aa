"""The socket's frames against its AsyncAPI document, as a live server serves it (GET /api/asyncapi.json): every
frame of a realistic session validates against the document's message of its type, and frames generated to
violate the document's client schemas are each refused with one error frame of a documented code, on a socket
that stays open."""
import itertools
import json
import time

import jwt as pyjwt
import pytest
import websocket
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from emotion_app.contract.frames import CLIENT_FRAMES, SERVER_FRAMES

DOC_URI = "urn:emotion-app:asyncapi"
TIMESTAMP = "2023-05-09T14:45:00.000Z"
HAPPY = "I am so happy today"
# Large enough for a `refresh` token one character over its maxLength (4096), so that bound can be tested.
MAX_MESSAGE_BYTES = 65536
# Longer than any access token lives: every socket is told `token_expiring` at once, and again after a refresh.
NOTICE = 10**6
# Codes that say a frame passed validation and failed later: never the answer to a frame the document refuses.
AFTER_VALIDATION = {
    "detection_disabled", "detection_unavailable", "missing_input", "rate_limited", "database_unavailable",
    "token_not_newer", "token_wrong_user", "token_revoked", "since_too_old", "internal_error", "replay_failed",
}


# ----------------------------------------------------------------------------------------- the document


class Contract:
    """The AsyncAPI document of a live server, with a JSON Schema validator per message id."""

    def __init__(self, document):
        self.document = document
        self.registry = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(document))
        self._validators = {}

    @classmethod
    def of(cls, server):
        status, document = server.request("GET", "/api/asyncapi.json")
        assert status == 200, document
        assert document["asyncapi"].startswith("3."), document.get("asyncapi")
        return cls(document)

    def messages(self, direction):
        prefix = f"{direction}_"
        return {name[len(prefix):] for name in self.document["components"]["messages"] if name.startswith(prefix)}

    def validator(self, message_id):
        """A Draft 2020-12 validator (formats not checked) of the payload of `message_id`."""
        if message_id not in self._validators:
            assert message_id in self.document["components"]["messages"], f"no message {message_id} in the document"
            schema = {"$ref": f"{DOC_URI}#/components/messages/{message_id}/payload"}
            self._validators[message_id] = Draft202012Validator(schema, registry=self.registry)
        return self._validators[message_id]

    def errors(self, message_id, frame):
        """Why `frame` does not validate against `message_id` (an empty list when it does)."""
        return [
            f"{'/'.join(map(str, error.absolute_path)) or '(frame)'}: {error.message}"
            for error in self.validator(message_id).iter_errors(frame)
        ]

    def payload(self, message_id):
        """The payload schema of `message_id`, its $refs followed."""
        resolver = self.registry.resolver(DOC_URI)
        resolved = resolver.lookup(f"#/components/messages/{message_id}/payload")
        while "$ref" in resolved.contents:
            resolved = resolved.resolver.lookup(resolved.contents["$ref"])
        return resolved.contents

    def error_codes(self):
        return set(self.payload("server_error")["properties"]["code"]["enum"])


@pytest.fixture(scope="module")
def contract_server(server_factory):
    """A server (rate limits off, as for every test server) that warns of token expiry at once and takes
    frames of up to MAX_MESSAGE_BYTES."""
    return server_factory(WS_TOKEN_NOTICE=NOTICE, WS_MAX_MESSAGE_BYTES=MAX_MESSAGE_BYTES)


@pytest.fixture(scope="module")
def contract(contract_server):
    return Contract.of(contract_server)


def test_the_document_has_a_message_per_frame_type(contract):
    assert contract.messages("client") == set(CLIENT_FRAMES)
    assert contract.messages("server") == set(SERVER_FRAMES)
    for direction in ("client", "server"):
        for kind in contract.messages(direction):
            Draft202012Validator.check_schema(contract.payload(f"{direction}_{kind}"))


# ----------------------------------------------------------------------------------------- a live session


class Session:
    """Sends client frames and reads server frames on any number of sockets, checking each against the
    document; what does not match is noted in `problems`."""

    def __init__(self, contract):
        self.contract = contract
        self.problems = []
        self.seen = set()  # server frame types received
        self.markers = itertools.count()

    def check_server_frame(self, frame, where):
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind not in SERVER_FRAMES:
            self.problems.append(f"{where}: a server frame of no documented type: {frame!r}")
            return
        self.seen.add(kind)
        for error in self.contract.errors(f"server_{kind}", frame):
            self.problems.append(f"{where}: server_{kind} {frame!r}: {error}")

    def send(self, ws, frame, valid=True):
        """Send `frame` (a dict, JSON-encoded, or raw text). A valid one must validate against its client
        message; one sent as invalid (valid=False) must not."""
        if isinstance(frame, dict):
            kind = frame.get("type")
            if kind in CLIENT_FRAMES and valid is not None:
                errors = self.contract.errors(f"client_{kind}", frame)
                if valid and errors:
                    self.problems.append(f"client_{kind} {frame!r} was sent as valid but: {errors}")
                if not valid and not errors:
                    self.problems.append(f"client_{kind} {frame!r} is refused by the server yet valid in the document")
            ws.send(json.dumps(frame))
        else:
            ws.send(frame)

    def receive(self, ws, timeout=5):
        ws.settimeout(timeout)
        raw = ws.recv()
        try:
            frame = json.loads(raw)
        except ValueError:
            self.problems.append(f"a server frame that is not JSON: {raw!r}")
            raise
        self.check_server_frame(frame, "received")
        return frame

    def until(self, ws, predicate, timeout=10):
        """Read frames until one satisfies `predicate`; return (that frame, the frames before it)."""
        before = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; frames so far: {before}"
            frame = self.receive(ws, timeout=remaining)
            if predicate(frame):
                return frame, before
            before.append(frame)

    def ask(self, ws, frame, kind, valid=True, timeout=10):
        """Send `frame`; return the first answer of type `kind` and the frames before it."""
        self.send(ws, frame, valid)
        return self.until(ws, lambda f: f.get("type") == kind, timeout)

    def flush(self, ws):
        """Everything `ws` has been sent so far: the frames before the answer to a ping with a fresh marker."""
        marker = f"flush-{next(self.markers)}"
        _, before = self.ask(ws, {"type": "ping", "timestamp": marker}, "pong")
        # An earlier pong could only answer a ping whose answer was already read.
        assert all(f.get("type") != "pong" for f in before), before
        return before


def connect(server, session, token, **kwargs):
    ws = server.connect(token, **kwargs)
    first = session.receive(ws)
    assert first["type"] == "connection_established", first
    return ws, first


def expiry(token):
    return pyjwt.decode(token, options={"verify_signature": False})["exp"]


def newer_access_token(server, tokens):
    """An access token of the same login that expires later than the login's (POST /api/auth/refresh; `exp` is
    in whole seconds, so within a second of the login it may not be later yet)."""
    deadline = time.monotonic() + 3
    while True:
        status, body = server.request("POST", "/api/auth/refresh", token=tokens["refresh_token"])
        assert status == 200, body
        if expiry(body["access_token"]) > expiry(tokens["access_token"]):
            return body["access_token"]
        assert time.monotonic() < deadline, "no newer access token"
        time.sleep(0.1)


def test_a_live_session_matches_the_asyncapi_document(contract_server, contract):
    server, session = contract_server, Session(contract)
    tokens = server.login()
    token = tokens["access_token"]
    emotions = contract.payload("client_emotion_update")["properties"]["emotion"]["enum"]
    assert {"happy", "sad"} <= set(emotions), emotions

    # connection_established, then token_expiring (the notice is longer than the token lives).
    phone, first = connect(server, session, token, device="phone")
    assert first["current"] is None and first["device"]["name"] == "phone"
    assert [f["type"] for f in session.flush(phone)] == ["token_expiring"]

    # A second device: its own welcome, and presence on the first.
    laptop, first = connect(server, session, token, device="laptop")
    assert first["devices"] == 2
    assert [f["type"] for f in session.flush(laptop)] == ["token_expiring"]
    arrived, _ = session.until(phone, lambda f: f["type"] == "presence")
    assert arrived["change"] == "connected" and arrived["device"]["name"] == "laptop"

    # emotion_update reaches both devices; a repeat of its client_msg_id is answered as a duplicate.
    update = {"type": "emotion_update", "emotion": "happy", "timestamp": TIMESTAMP, "client_msg_id": "m-1"}
    stored, _ = session.ask(phone, update, "emotion_update")
    assert stored["emotion"] == "happy" and stored["client_msg_id"] == "m-1" and stored["device"] == "phone"
    pushed, _ = session.until(laptop, lambda f: f["type"] == "emotion_update")
    assert pushed["id"] == stored["id"]
    again, _ = session.ask(phone, update, "emotion_update")
    assert again["duplicate"] is True and again["id"] == stored["id"]
    second, _ = session.ask(laptop, {"type": "emotion_update", "emotion": "sad"}, "emotion_update")
    assert second["emotion"] == "sad" and second["client_timestamp"] is None
    pushed, _ = session.until(phone, lambda f: f["type"] == "emotion_update")
    assert pushed["id"] == second["id"]

    # pong, with and without the ping's timestamp.
    pong, _ = session.ask(phone, {"type": "ping", "timestamp": TIMESTAMP}, "pong")
    assert pong["client_timestamp"] == TIMESTAMP
    pong, _ = session.ask(phone, {"type": "ping"}, "pong")
    assert "client_timestamp" not in pong or pong["client_timestamp"] is None

    # sync: the events after `since`, then synced (since as a number and as its decimal string).
    synced, replay = session.ask(phone, {"type": "sync", "since": 0}, "synced")
    assert [f["id"] for f in replay] == [stored["id"], second["id"]] and synced["count"] == 2
    synced, replay = session.ask(phone, {"type": "sync", "since": str(stored["id"])}, "synced")
    assert [f["id"] for f in replay] == [second["id"]] and synced["has_more"] is False

    # Error frames. valid=False: the document refuses the frame too; None: it is no JSON object of a client
    # type, or its fault is one the schema keywords cannot state (a timestamp of the right length).
    refusals = [
        ("{not json", None, "invalid_format"),
        ("[1, 2]", None, "invalid_format"),
        ({}, None, "missing_type"),
        ({"type": "dance"}, None, "unknown_type"),
        ({"type": "emotion_update", "emotion": "bored"}, False, "unknown_emotion"),
        ({"type": "emotion_update"}, False, "missing_field"),
        ({"type": "emotion_update", "emotion": "happy", "timestamp": "not a time at all"}, None, "invalid_timestamp"),
        ({"type": "emotion_update", "emotion": "happy", "client_msg_id": ""}, False, "invalid_field"),
        ({"type": "sync", "since": -1}, False, "invalid_since"),
        ({"type": "sync", "since": "yesterday"}, False, "invalid_since"),
        ({"type": "sync"}, False, "missing_field"),
        ({"type": "ping", "timestamp": 12}, False, "invalid_field"),
        ({"type": "refresh", "token": "garbage"}, False, "token_invalid"),
        ({"type": "refresh", "token": "a.b.c"}, True, "token_invalid"),
        ({"type": "detect", "text": "a" * 1001, "request_id": "too-long"}, False, "text_too_long"),
        ({"type": "detect", "text": HAPPY, "apply": "yes", "request_id": 7}, False, "invalid_field"),
    ]
    for frame, valid, code in refusals:
        error, before = session.ask(phone, frame, "error", valid=valid)
        assert error["code"] == code and before == [], (frame, error, before)
    phone.send_binary(b"\x00\x01")
    error, _ = session.until(phone, lambda f: f["type"] == "error")
    assert error["code"] == "binary_not_supported", error
    assert session.flush(phone) == []

    # refresh: a newer token moves the socket (and, the notice being long, is announced expiring too).
    refreshed, _ = session.ask(phone, {"type": "refresh", "token": newer_access_token(server, tokens)}, "refreshed")
    assert refreshed["expires_in"] > 0
    session.until(phone, lambda f: f["type"] == "token_expiring")

    # detected: the detection of a text, applied, and pushed to the other device as an emotion_update.
    detected, _ = session.ask(
        phone, {"type": "detect", "text": HAPPY, "apply": "always", "client_msg_id": "d-1", "request_id": "r-1"},
        "detected", timeout=60,
    )
    assert detected["request_id"] == "r-1" and detected["applied"] is True, detected
    pushed, _ = session.until(laptop, lambda f: f["type"] == "emotion_update")
    assert pushed["id"] == detected["event"]["id"] and pushed["source"] == "detected:text"

    # presence: the laptop leaves.
    laptop.close()
    left, _ = session.until(phone, lambda f: f["type"] == "presence")
    assert left["change"] == "disconnected" and left["device"]["name"] == "laptop"

    # A device that connects with `since`: its welcome, the events after it, then synced.
    tablet, first = connect(server, session, token, since=0)
    assert first["current"]["id"] == detected["event"]["id"]
    synced, replay = session.until(tablet, lambda f: f["type"] == "synced")
    assert [f["type"] for f in replay] == ["emotion_update"] * 3 and synced["count"] == 3
    assert [f["type"] for f in session.flush(tablet)] == ["token_expiring"]
    arrived, _ = session.until(phone, lambda f: f["type"] == "presence")
    assert arrived["change"] == "connected"
    tablet.close()
    session.until(phone, lambda f: f["type"] == "presence")
    assert session.flush(phone) == []
    phone.close()

    assert session.problems == [], "\n".join(session.problems)
    assert session.seen == set(SERVER_FRAMES), f"not seen: {set(SERVER_FRAMES) - session.seen}"


# ----------------------------------------------------------------------------------------- invalid frames

# Valid frames of each client type, with every property the document names; mutated into invalid ones.
VALID = {
    "emotion_update": {"type": "emotion_update", "emotion": "happy", "timestamp": TIMESTAMP, "client_msg_id": "c-1"},
    "ping": {"type": "ping", "timestamp": TIMESTAMP},
    "sync": {"type": "sync", "since": 0},
    "refresh": {"type": "refresh", "token": "aaaa.bbbb.cccc"},
    "detect": {"type": "detect", "text": HAPPY, "apply": False, "client_msg_id": "d-1", "request_id": "r-1"},
}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
)
any_json = st.one_of(
    scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=6), scalars, max_size=3),
)


def too_long(limit):
    """Strings longer than `limit` characters (a short piece repeated, so the frame stays small)."""
    piece = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=4)
    return st.tuples(piece, st.integers(min_value=1, max_value=40)).map(
        lambda t: (t[0] * (limit // len(t[0]) + 41))[: limit + t[1]]
    )


def out_of_bounds(prop):
    """Values that break one of the bounds of the property schema `prop` (or of its anyOf branches)."""
    found = []
    for branch in [prop, *prop.get("anyOf", ())]:
        if "maxLength" in branch:
            found.append(too_long(branch["maxLength"]))
        if branch.get("minLength", 0) > 0:
            found.append(st.text(max_size=branch["minLength"] - 1))
        if "pattern" in branch:
            near = ["", "a.b", "a.b.c.d", "a b.c.d", "a.b.c=", "-1", "1.5", " 1", "1 ", "0x10", "1" * 20, "١٢"]
            found.append(st.sampled_from(near) | st.text(max_size=30))
        if "enum" in branch or "const" in branch:
            allowed = branch.get("enum", [branch.get("const")])
            near = [f"{value}s" for value in allowed if isinstance(value, str)] + ["", "joy", "hap py", "😀"]
            found.append(st.sampled_from(near) | st.text(max_size=20))
        for key, step in (("minimum", 1), ("exclusiveMinimum", 0)):
            if key in branch:
                found.append(st.integers(min_value=branch[key] - step - 2**64, max_value=branch[key] - step))
        for key, step in (("maximum", 1), ("exclusiveMaximum", 0)):
            if key in branch:
                found.append(st.integers(min_value=branch[key] + step, max_value=branch[key] + step + 2**64))
    return found


@st.composite
def invalid_frames(draw, contract, kind):
    """(how, property, frame): a valid frame of `kind` with a required property dropped, a property of a
    wrong JSON type, or a value out of the property's bounds."""
    schema = contract.payload(f"client_{kind}")
    frame = dict(VALID[kind])
    # A property first (`type` as often as any other), then what to do to it.
    name = draw(st.sampled_from(sorted(schema["properties"])))
    options = [("drop", None)] if name in schema.get("required", ()) else []
    options += [("wrong_type", any_json)] + [("bounds", values) for values in out_of_bounds(schema["properties"][name])]
    how, values = draw(st.sampled_from(options))
    if how == "drop":
        del frame[name]
    else:
        frame[name] = draw(values)
    return how, name, frame


def lenient(contract, frame):
    """Whether `frame` is valid once normalised the way the document describes in words (beyond its schema
    keywords): an emotion in any case, with spaces around; a detect text whose surrounding spaces do not count
    towards its length."""
    kind, normalised = frame.get("type"), dict(frame)
    if kind == "emotion_update" and isinstance(frame.get("emotion"), str):
        normalised["emotion"] = frame["emotion"].strip().lower()
    elif kind == "detect" and isinstance(frame.get("text"), str):
        normalised["text"] = frame["text"].strip()
    return normalised != frame and not contract.errors(f"client_{kind}", normalised)


@pytest.fixture
def fuzzing_socket(contract_server, contract):
    """One socket for every generated frame, its first frames read."""
    for kind, frame in VALID.items():
        assert contract.errors(f"client_{kind}", frame) == [], (kind, frame)
    session = Session(contract)
    ws, _ = connect(contract_server, session, contract_server.login()["access_token"])
    assert [f["type"] for f in session.flush(ws)] == ["token_expiring"]
    yield ws, session
    assert session.flush(ws) == []  # still open, nothing left unanswered
    ws.close()
    assert session.problems == [], "\n".join(session.problems)


MARKERS = itertools.count()


@settings(
    max_examples=80, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_generated_invalid_frames_get_a_documented_error_and_the_socket_stays_open(fuzzing_socket, contract, data):
    ws, session = fuzzing_socket
    kind = data.draw(st.sampled_from(sorted(CLIENT_FRAMES)), label="kind")
    how, name, frame = data.draw(invalid_frames(contract, kind), label="mutation")
    # Invalid against every client message (a changed `type` could make it another type's valid frame).
    assume(all(contract.errors(f"client_{other}", frame) for other in CLIENT_FRAMES))
    assume(not lenient(contract, frame))
    text = json.dumps(frame)
    assume(len(text.encode()) <= MAX_MESSAGE_BYTES)

    ws.send(text)
    marker = f"marker-{next(MARKERS)}"
    ws.send(json.dumps({"type": "ping", "timestamp": marker}))
    replies = []
    while True:
        try:
            reply = session.receive(ws, timeout=10)
        except (websocket.WebSocketException, OSError) as exc:
            pytest.fail(f"the socket did not answer after {text[:300]!r} ({how} {name}): {exc!r}; got {replies}")
        if reply.get("type") == "pong" and reply.get("client_timestamp") == marker:
            break
        replies.append(reply)

    context = f"{how} {name!r} of {kind}: {text[:300]}"
    assert [r.get("type") for r in replies] == ["error"], f"{context} was answered with {replies}"
    error = replies[0]
    assert contract.errors("server_error", error) == [], (context, error)
    assert error["code"] in contract.error_codes(), (context, error)
    assert error["code"] not in AFTER_VALIDATION, f"{context} was not refused for its invalidity: {error}"
    assert session.problems == [], "\n".join(session.problems)
    event(f"{kind}: {how} {name} -> {error['code']}")
