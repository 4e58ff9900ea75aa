"""In-band token refresh on /api/ws: `token_expiring` before the token expires, `refresh` to move the
socket onto a newer token, and every way a `refresh` is refused. Real gunicorn servers whose access
tokens live 3 seconds, with a notice 2 seconds before expiry."""
import json
import re
import time
import uuid
from datetime import datetime
from types import SimpleNamespace

import jwt as pyjwt
import pytest

from tests.conftest import PASSWORD, TEST_SECRETS, recv_close, recv_json

TTL, NOTICE = 3, 2
SHORT = {"ACCESS_TOKEN_TTL": TTL, "WS_TOKEN_NOTICE": NOTICE}
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JWT_KEY = TEST_SECRETS["JWT_SECRET_KEY"]


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory(**SHORT)


def expiry(token):
    """The `exp` of a token (epoch seconds)."""
    return pyjwt.decode(token, options={"verify_signature": False})["exp"]


def http_refresh(server, tokens):
    """A new access token of the same login, from POST /api/auth/refresh."""
    status, body = server.request("POST", "/api/auth/refresh", token=tokens["refresh_token"])
    assert status == 200, body
    return body["access_token"]


def refresh(ws, token):
    """Send `refresh` with `token`; return the answer (notices and presence passed over)."""
    ws.send(json.dumps({"type": "refresh", "token": token}))
    return recv_json(ws, skip=("presence", "token_expiring"))


def wait_for_notice(ws, timeout=TTL + 1):
    frame = recv_json(ws, timeout=timeout)
    assert frame["type"] == "token_expiring", frame
    return frame


def assert_open(ws):
    ws.send(json.dumps({"type": "ping"}))
    assert recv_json(ws, skip=("presence", "token_expiring"))["type"] == "pong"


def assert_expires_at(ws, deadline):
    """The socket is closed with 4401 after an error `token_expired`, at `deadline`; return its last frames."""
    got, _, frames = recv_close(ws, timeout=max(1.0, deadline - time.time() + 2))
    closed = time.time()
    assert got == 4401, (got, frames)
    assert frames and frames[-1]["type"] == "error" and frames[-1]["code"] == "token_expired", frames
    # A deadline moved by a refresh would be at least a second later.
    assert deadline - 0.2 <= closed <= deadline + 0.8, (closed, deadline)
    return frames


def assert_revoked(ws):
    """The socket is closed at once with 4403 after an error `token_revoked`."""
    got, _, frames = recv_close(ws, timeout=3)
    assert got == 4403, (got, frames)
    assert frames and frames[-1]["type"] == "error" and frames[-1]["code"] == "token_revoked", frames


# ------------------------------------------------------------------------------------------- notice


def test_the_notice_comes_once_per_token_and_a_client_that_never_refreshes_is_closed_as_before(server):
    tokens = server.login()
    deadline = expiry(tokens["access_token"])
    ws, _ = server.device(tokens["access_token"])
    notice = wait_for_notice(ws)
    left = deadline - time.time()
    assert isinstance(notice["expires_in"], int) and 0 <= notice["expires_in"] <= NOTICE
    assert abs(left - notice["expires_in"]) < 1.2 and left <= NOTICE + 0.2, (left, notice)
    # Nothing more until the expiry: the error, then 4401, on time.
    frames = assert_expires_at(ws, deadline)
    assert frames == [frames[-1]], frames


def test_a_late_connection_is_told_at_once_after_its_replay(server):
    tokens = server.login()
    deadline = expiry(tokens["access_token"])
    for emotion in ("happy", "sad"):
        assert server.request("POST", "/api/emotions", {"emotion": emotion}, token=tokens["access_token"])[0] == 201
    time.sleep(max(0.0, deadline - NOTICE + 0.1 - time.time()))  # less than the notice left
    resumed, _ = server.device(tokens["access_token"], since=0)
    kinds = [recv_json(resumed)["type"] for _ in range(4)]
    assert kinds == ["emotion_update", "emotion_update", "synced", "token_expiring"]
    fresh, _ = server.device(tokens["access_token"])
    assert recv_json(fresh)["type"] == "token_expiring"
    for ws in (resumed, fresh):
        ws.close()


# ------------------------------------------------------------------------------------------- refresh


def test_refreshing_in_band_keeps_a_socket_open_for_many_token_lifetimes(server):
    tokens = server.login()
    ws, _ = server.device(tokens["access_token"])
    deadline = expiry(tokens["access_token"])
    # The first token was made less than a second after exp - TTL: three of its lifetimes end before this.
    three_lifetimes = deadline + 2 * TTL + 1
    refreshes, sent, received = 0, [], []
    waiting = False  # a refresh was sent and not answered yet: no second notice may come meanwhile
    for _ in range(200):
        if time.time() > three_lifetimes and len(received) == len(sent) and not waiting:
            break
        frame = recv_json(ws, timeout=TTL)
        if frame["type"] == "token_expiring":
            assert not waiting, "two notices for one token"
            assert 0 <= frame["expires_in"] <= NOTICE and time.time() < deadline
            token = http_refresh(server, tokens)
            ws.send(json.dumps({"type": "refresh", "token": token}))
            waiting = True
        elif frame["type"] == "refreshed":
            assert waiting
            waiting = False
            refreshes += 1
            assert STAMP.match(frame["expires_at"])
            assert datetime.fromisoformat(frame["expires_at"]).timestamp() == expiry(token) > deadline
            assert TTL - 2 <= frame["expires_in"] <= TTL
            deadline = expiry(token)
            # Updates keep flowing to the refreshed socket.
            status, event = server.request("POST", "/api/emotions", {"emotion": "happy"}, token=token)
            assert status == 201
            sent.append(event["id"])
        else:
            assert frame["type"] == "emotion_update", frame
            received.append(frame["id"])
    assert time.time() > three_lifetimes and refreshes >= 3
    assert received == sent
    assert_open(ws)
    ws.close()


def send_refresh(ws, token):
    ws.send(json.dumps({"type": "refresh", **({"token": token} if token is not None else {})}))
    return recv_json(ws, skip=("presence", "token_expiring"))


def test_refusals_leave_the_old_deadline(server):
    first_login = server.login()
    user = first_login["user"]["username"]
    older = first_login["access_token"]
    # Logins made now (hashing is slow) whose tokens are refreshed over HTTP later, when needed.
    stranger = server.login()
    ended = server.login(user)
    # The socket's token, as soon as it expires later than `older` (which then has about 2 s left).
    time.sleep(max(0.0, expiry(older) - TTL + 1 + 0.02 - time.time()))
    current = http_refresh(server, first_login)
    deadline = expiry(current)
    assert expiry(older) < deadline
    claims = pyjwt.decode(current, options={"verify_signature": False})
    later = dict(claims, exp=deadline + 60)
    sign = lambda c, key=JWT_KEY: pyjwt.encode(c, key, algorithm="HS256")  # noqa: E731
    now = {
        "missing": (None, "missing_field"),
        "not_a_string": (12345, "token_invalid"),
        "garbage": ("not-a-jwt", "token_invalid"),
        "refresh_token": (first_login["refresh_token"], "token_invalid"),
        "expired": (sign(dict(claims, exp=int(time.time()) - 5)), "token_invalid"),
        "other_key": (sign(later, "another-key-entirely-0123456789abcdef"), "token_invalid"),
        "other_audience": (sign(dict(later, aud="someone-else")), "token_invalid"),
        "other_issuer": (sign(dict(later, iss="https://evil.example")), "token_invalid"),
        "older": (older, "token_not_newer"),
        "same": (current, "token_not_newer"),
    }
    sockets = []
    for case, (token, code) in now.items():
        ws, _ = server.device(current)
        answer = send_refresh(ws, token)
        assert answer["type"] == "error" and answer["code"] == code and answer["message"], (case, answer)
        assert_open(ws)
        sockets.append(ws)
    # Tokens made from here on expire later than the sockets' token: only a refusal keeps them out.
    time.sleep(max(0.0, deadline - NOTICE - time.time()))
    status, body = server.request("POST", "/api/ws-ticket", token=current)
    assert status == 200
    revoked = http_refresh(server, ended)
    assert server.request("POST", "/api/auth/logout", token=ended["refresh_token"])[0] == 200
    late = {
        "ticket": (body["ticket"], "token_invalid"),
        "other_user": (http_refresh(server, stranger), "token_wrong_user"),
        "logged_out": (revoked, "token_revoked"),
    }
    assert expiry(revoked) > deadline
    for case, (token, code) in late.items():
        ws, _ = server.device(current)
        answer = send_refresh(ws, token)
        assert answer["type"] == "error" and answer["code"] == code and answer["message"], (case, answer)
        assert_open(ws)
        sockets.append(ws)
    for ws in sockets:
        assert_expires_at(ws, deadline)


def test_logging_out_the_new_login_closes_a_refreshed_socket(server):
    first = server.login()
    ws, _ = server.device(first["access_token"])
    old_deadline = expiry(first["access_token"])
    wait_for_notice(ws)
    second = server.login(first["user"]["username"])  # another login of the same user
    answer = refresh(ws, second["access_token"])
    assert answer["type"] == "refreshed", answer
    # The socket now lives on the second login: ending the first one leaves it open, past the old expiry.
    assert server.request("POST", "/api/auth/logout", token=first["refresh_token"])[0] == 200
    time.sleep(max(0.0, old_deadline + 0.3 - time.time()))
    assert_open(ws)
    # Ending the second login, with its refresh token (another token of that session), closes it.
    assert server.request("POST", "/api/auth/logout", token=second["refresh_token"])[0] == 200
    assert_revoked(ws)


def test_a_password_change_closes_a_refreshed_socket(server):
    tokens = server.login()
    ws, _ = server.device(tokens["access_token"])
    wait_for_notice(ws)
    token = http_refresh(server, tokens)
    assert refresh(ws, token)["type"] == "refreshed"
    status, _ = server.request(
        "POST", "/api/auth/password", {"current_password": PASSWORD, "new_password": "a new password 1"}, token=token
    )
    assert status == 200
    assert_revoked(ws)


def test_a_logout_on_another_server_closes_a_refreshed_socket(server_factory, postgres_databases, redis_url):
    shared = dict(SHORT, DATABASE_URL=postgres_databases(), REDIS_URL=redis_url, BROKER_PREFIX=f"r{uuid.uuid4().hex[:8]}")
    a, b = server_factory(**shared), server_factory(**shared)
    first = a.login()
    ws, _ = a.device(first["access_token"])
    wait_for_notice(ws)
    second = b.login(first["user"]["username"])
    assert refresh(ws, second["access_token"])["type"] == "refreshed"
    status, event = b.request("POST", "/api/emotions", {"emotion": "sad"}, token=second["access_token"])
    assert status == 201 and recv_json(ws, skip=("presence", "token_expiring"))["id"] == event["id"]
    assert b.request("POST", "/api/auth/logout", token=second["refresh_token"])[0] == 200
    assert_revoked(ws)


def test_refresh_frames_are_rate_limited_like_any_other(server_factory):
    server = server_factory(WS_FRAME_RATE=1, WS_FRAME_BURST=2, **SHORT)
    tokens = server.login()
    ws, _ = server.device(tokens["access_token"])
    wait_for_notice(ws)
    token = http_refresh(server, tokens)
    for _ in range(2):  # the burst
        ws.send(json.dumps({"type": "ping"}))
    ws.send(json.dumps({"type": "refresh", "token": token}))
    answers = [recv_json(ws, skip=("presence", "token_expiring")) for _ in range(3)]
    assert [a["type"] for a in answers] == ["pong", "pong", "error"], answers
    answer = answers[-1]
    assert answer["code"] == "rate_limited" and answer["retry_after"] > 0, answer
    # Not acted on: sent again once allowed, the same token is accepted (it would be token_not_newer otherwise).
    time.sleep(answer["retry_after"])
    assert refresh(ws, token)["type"] == "refreshed"
    ws.close()


# ------------------------------------------------------------------------------------------- in process


def test_a_revocation_that_arrives_during_the_check_refuses_the_new_token(app, monkeypatch):
    from flask_jwt_extended import create_access_token

    from emotion_app import ws as ws_module
    from emotion_app.hub import Connection, Hub

    hub = Hub()
    conn = Connection(
        SimpleNamespace(sock=None), 1, "old-jti", 8, 1.0, fetch=None, replay_limit=1, sid="old-sid",
        expires_at=int(time.time()) + 1,
    )
    hub.attach(conn)
    with app.app_context():
        token = create_access_token(identity="1", additional_claims={"sid": "new-sid", "ver": 0})

        # The new login is logged out on another server while this one reads the database.
        def logged_out_meanwhile(claims):
            hub.dispatch({"kind": "revoke", "user_id": "1", "jti": "new-refresh", "sid": "new-sid"})
            return None

        monkeypatch.setattr(ws_module, "revocation", logged_out_meanwhile)
        answer = json.loads(ws_module._refresh(conn, token))
        assert answer.get("code") == "token_revoked" and not conn.closing, answer
        assert (conn.jti, conn.sid) == ("old-jti", "old-sid")
        # Without that revocation the socket moves onto the new login, and its logout closes the socket.
        monkeypatch.setattr(ws_module, "revocation", lambda claims: None)
        assert json.loads(ws_module._refresh(conn, token))["type"] == "refreshed"
    hub.dispatch({"kind": "revoke", "user_id": "1", "jti": "old-jti", "sid": "old-sid"})
    assert not conn.closing
    hub.dispatch({"kind": "revoke", "user_id": "1", "jti": "new-refresh", "sid": "new-sid"})
    assert conn.closing and conn.close_code == 4403
