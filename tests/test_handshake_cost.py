"""What each handshake is spared (the rate limiter while its limit is off, decoding the token more than
once, counting every socket of the worker, the per-socket frame encoder) without changing what devices
get."""
import json
from types import SimpleNamespace

import flask_limiter
from websockets.sync.client import connect

from emotion_app.hub import Connection, Hub

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "x" * 24}


def test_the_limiter_skips_sockets_only_while_their_limit_is_off(make_app, monkeypatch):
    checked = []
    original = flask_limiter.Limiter._check_request_limit

    def spy(self, *args, **kwargs):
        from flask import request

        checked.append(request.blueprint)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(flask_limiter.Limiter, "_check_request_limit", spy)
    off = make_app(RATE_LIMIT_AUTH="100 per minute").test_client()
    assert off.get("/api/ws", headers=UPGRADE).status_code == 401
    off.post("/api/auth/login", json={"username": "nobody", "password": "wrong password"})
    assert "ws" not in checked and "auth" in checked  # the other limits are still checked

    checked.clear()
    on = make_app(RATE_LIMIT_HANDSHAKE="3 per minute").test_client()
    statuses = [on.get("/api/ws", headers=UPGRADE).status_code for _ in range(4)]
    assert checked and set(checked) == {"ws"}
    assert statuses == [401, 401, 401, 429], statuses
    refused = on.get("/api/ws", headers=UPGRADE)
    assert refused.get_json()["error"] == "too_many_requests" and int(refused.headers["Retry-After"]) >= 1


def test_the_hub_counts_each_socket_once():
    hub = Hub()
    conns = [
        Connection(SimpleNamespace(sock=None), user, "jti", 8, 1.0, fetch=None, replay_limit=1)
        for user in (1, 1, 2)
    ]
    for conn in conns + conns[:1]:
        hub.attach(conn)
    assert hub.count() == 3
    for conn in conns[:2] + conns[:2]:
        hub.detach(conn)
    assert hub.count() == 1 and hub.connections(1) == [] and hub.connections(2) == [conns[2]]


def test_a_compressed_socket_reads_the_first_frame_and_events(server_factory):
    server = server_factory(WS_COMPRESSION="on")
    token = server.login()["access_token"]
    with connect(f"{server.ws_url}?token={token}", compression="deflate", open_timeout=5) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions", "").startswith("permessage-deflate")
        first = json.loads(ws.recv(timeout=5))
        assert first["type"] == "connection_established" and first["devices"] == 1, first
        ws.send(json.dumps({"type": "emotion_update", "emotion": "happy"}))
        update = json.loads(ws.recv(timeout=5))
        assert update["type"] == "emotion_update" and update["emotion"] == "happy", update


def test_a_token_is_verified_once_per_worker_and_still_expires_and_is_revoked(make_app, monkeypatch):
    import time
    from datetime import timedelta

    import jwt as pyjwt
    from flask_jwt_extended import create_access_token

    decodes = []
    original = pyjwt.api_jwt.PyJWT.decode_complete

    def spy(self, token, *args, **kwargs):
        decodes.append(token)
        return original(self, token, *args, **kwargs)

    monkeypatch.setattr(pyjwt.api_jwt.PyJWT, "decode_complete", spy)
    app = make_app()
    client = app.test_client()
    body = {"username": "once", "password": "a long enough password"}
    client.post("/api/auth/register", json=body)
    tokens = client.post("/api/auth/login", json=body).get_json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    decodes.clear()
    assert client.get("/api/auth/me", headers=bearer).status_code == 200
    assert len(decodes) == 1  # verified once: not also decoded unverified first
    assert client.get("/api/auth/me", headers=bearer).status_code == 200
    assert len(decodes) == 1  # and not again: this worker verified it already

    # Another app (another key) verifies for itself, and refuses what its key did not sign.
    other = make_app(JWT_SECRET_KEY="another key of at least thirty-two bytes!").test_client()
    refused = other.get("/api/auth/me", headers=bearer)
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_token", refused.get_json()

    user_id = client.get("/api/auth/me", headers=bearer).get_json()["id"]
    with app.app_context():
        brief = create_access_token(user_id, expires_delta=timedelta(seconds=2))
    # Verified and kept (a token without the login's session is otherwise like any access token).
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {brief}"}).status_code == 200
    time.sleep(2.1)
    refused = client.get("/api/auth/me", headers={"Authorization": f"Bearer {brief}"})
    assert refused.status_code == 401 and refused.get_json()["error"] == "token_expired", refused.get_json()
    forged = tokens["access_token"][:-4] + ("AAAA" if not tokens["access_token"].endswith("AAAA") else "BBBB")
    refused = client.get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_token", refused.get_json()

    # A kept token is still checked for revocation on every use.
    assert client.post("/api/auth/logout", headers=bearer).status_code == 200
    refused = client.get("/api/auth/me", headers=bearer)
    assert refused.status_code == 401 and refused.get_json()["error"] == "token_revoked", refused.get_json()
