"""Property-based fuzzing of the frame parser, of a live socket and of the HTTP JSON endpoints: whatever comes
in gets an answer documented in the README, never a 500 or a dropped socket, and never changes stored data
unless it was a valid request."""
import json
import re

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emotion_app import messages
from emotion_app.extensions import db
from tests.conftest import PASSWORD, ROOT, Auth, recv_json

README = (ROOT / "README.md").read_text()
DOCUMENTED_CODES = set(re.findall(r"`([a-z_]+)`", README))

EMOTIONS = ["happy", "sad", "neutral"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False),
    st.text(max_size=40), st.sampled_from(EMOTIONS + ["HAPPY ", "2023-05-09T14:45:00Z", "ping", "sync"]),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
frames_as_objects = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from(["emotion_update", "ping", "sync", "refresh", "pong", "", "EMOTION_UPDATE"]), json_values),
        "emotion": st.one_of(st.sampled_from(EMOTIONS), json_values),
        "timestamp": st.one_of(st.sampled_from(["2023-05-09T14:45:00.000Z", "yesterday", "2023-13-45T99:00:00"]), json_values),
        "client_msg_id": st.one_of(st.text(max_size=70), json_values),
        "since": st.one_of(st.integers(min_value=-5, max_value=2**64), st.text(max_size=25), json_values),
        "token": st.one_of(st.sampled_from(["", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.x"]), json_values),
    },
)
frame_texts = st.one_of(
    frames_as_objects.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.sampled_from(["[" * 200 + "]" * 200, '{"type": "ping"', "null", "{}", '{"type": null}']),
)


@settings(max_examples=400, deadline=None)
@given(frame_texts)
def test_the_frame_parser_accepts_or_names_a_documented_error(text):
    try:
        frame = messages.parse_frame(text, {"EMOTIONS": tuple(EMOTIONS), "DETECT_MAX_TEXT": 1000})
        if frame.type == "emotion_update":
            assert frame.emotion in EMOTIONS
        elif frame.type == "sync":
            assert frame.since >= 0
        elif frame.type == "refresh":
            assert isinstance(frame.token, str)
        else:
            assert frame.type == "ping"
    except messages.FrameError as exc:
        assert exc.code in DOCUMENTED_CODES, exc.code
        assert exc.message and len(exc.message) < 300


@pytest.fixture(scope="module")
def fuzz_server(server_factory):
    return server_factory(EMOTIONS=",".join(EMOTIONS))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(frame_texts, min_size=1, max_size=30))
def test_a_socket_survives_any_frames_and_stores_only_valid_updates(fuzz_server, frames):
    tokens = fuzz_server.login()
    bystander = fuzz_server.login()
    ws, _ = fuzz_server.device(tokens["access_token"])
    stored = set()  # ids of the events this socket was told were stored
    for n, text in enumerate(frames):
        ws.send(text)
        marker = f"marker-{n}"
        ws.send(json.dumps({"type": "ping", "timestamp": marker}))
        while True:  # every answer to the frame comes before the answer to the marker
            reply = recv_json(ws)
            if reply["type"] == "pong" and reply.get("client_timestamp") == marker:
                break
            assert reply["type"] in {"error", "emotion_update", "pong", "synced"}, reply
            if reply["type"] == "error":
                assert reply["code"] in DOCUMENTED_CODES, reply
            if reply["type"] == "emotion_update":
                assert reply["user_id"] == tokens["user"]["id"]
                stored.add(reply["id"])
    ws.close()
    status, body = fuzz_server.request("GET", "/api/emotions?limit=100", token=tokens["access_token"])
    assert status == 200 and {e["id"] for e in body["events"]} == stored
    assert all(e["emotion"] in EMOTIONS for e in body["events"])
    status, body = fuzz_server.request("GET", "/api/emotions?limit=100", token=bystander["access_token"])
    assert body["events"] == []


ENDPOINTS = [
    "/api/auth/register", "/api/auth/login", "/api/emotions", "/api/auth/password", "/api/auth/refresh", "/api/ws-ticket"
]
bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"[" * 3000 + b"]" * 3000, b'{"username": ' + b"{" * 50, b"\xff\xfe{}", b'"just a string"']),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "username": st.one_of(st.text(max_size=40), json_values),
            "password": st.one_of(st.text(max_size=40), json_values),
            "emotion": st.one_of(st.sampled_from(EMOTIONS), json_values),
            "timestamp": json_values,
            "client_msg_id": json_values,
            "device": st.one_of(st.text(max_size=80), json_values),
            "current_password": st.one_of(st.just(PASSWORD), json_values),
            "new_password": json_values,
        },
    ).map(lambda v: json.dumps(v).encode()),
)


def counts(app):
    with app.app_context():
        return {
            table: db.session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
            for table in ("users", "emotion_events", "revoked_tokens")
        } | {"hashes": db.session.execute(sa.text("SELECT count(DISTINCT password_hash) FROM users")).scalar()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies, content_type=st.sampled_from(["application/json", "text/plain", "application/json; charset=utf-8"]))
def test_http_json_endpoints_answer_any_body_with_a_documented_error(app, endpoint, body, content_type):
    client = app.test_client()
    if not hasattr(app, "fuzz_tokens"):
        app.fuzz_tokens = Auth(client).login()
    token = app.fuzz_tokens["refresh_token" if endpoint.endswith("refresh") else "access_token"]
    before = counts(app)
    response = client.post(endpoint, data=body, content_type=content_type, headers=Auth.bearer(token))
    payload = response.get_json()
    assert response.status_code != 500 and isinstance(payload, dict), (response.status_code, response.data[:200])
    if response.status_code >= 400:
        assert payload["status"] == response.status_code and payload["error"] in DOCUMENTED_CODES, payload
        assert counts(app) == before, "a refused request changed stored data"
    if endpoint == "/api/auth/password" and response.status_code == 200:
        app.fuzz_tokens = payload  # the old tokens are revoked now
