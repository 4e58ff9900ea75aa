"""The service as an attacker sees it: forged and stolen tokens, replayed tickets, floods, brute force,
hostile payloads and other sites' pages. Each test names the property it checks; each fails when that
property's enforcement is removed."""
import json
import threading
import time
import uuid

import jwt as pyjwt
import pytest
import websocket

from tests.conftest import PASSWORD, TEST_SECRETS, Auth, recv_close, recv_json

JWT_KEY = TEST_SECRETS["JWT_SECRET_KEY"]
# Routes anyone may call, and /metrics with its own scraper rule (test_metrics.py); every other route
# must refuse a request without a valid access token.
PUBLIC = {
    "/", "/static/<path:filename>", "/healthz", "/readyz", "/api/auth/register", "/api/auth/login", "/metrics",
    "/api/openapi.json", "/api/asyncapi.json", "/api/docs",
}


def claims_of(token):
    return pyjwt.decode(token, options={"verify_signature": False})


def forged_tokens(access, refresh):
    """Tokens an attacker could present, by what is wrong with them; none may be accepted."""
    claims = claims_of(access)
    header_only = lambda c: pyjwt.encode(c, JWT_KEY, algorithm="HS256")  # noqa: E731
    unsigned = (
        pyjwt.utils.base64url_encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).decode()
        + "."
        + pyjwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
        + "."
    )
    other_user = dict(claims, sub=str(int(claims["sub"]) + 1))
    tampered = access.split(".")
    tampered[1] = pyjwt.utils.base64url_encode(json.dumps(other_user).encode()).decode()
    return {
        "alg_none": unsigned,
        "wrong_key": pyjwt.encode(claims, "another-key-entirely-0123456789abcdef", algorithm="HS256"),
        "other_algorithm": pyjwt.encode(claims, JWT_KEY, algorithm="HS512"),
        "wrong_audience": header_only(dict(claims, aud="someone-else")),
        "no_audience": header_only({k: v for k, v in claims.items() if k != "aud"}),
        "wrong_issuer": header_only(dict(claims, iss="https://evil.example")),
        "expired": header_only(dict(claims, exp=int(time.time()) - 5, iat=int(time.time()) - 100)),
        "tampered_payload": ".".join(tampered),
        "refresh_for_access": refresh,
        # Signed with our key yet malformed inside: still a 401, never a crash.
        "subject_not_a_number": header_only(dict(claims, sub="1 " + access)),
        "version_not_a_number": header_only(dict(claims, ver="7")),
        "session_not_a_string": header_only(dict(claims, sid=["a", "b"])),
        "id_too_long": header_only(dict(claims, jti="j" * 100)),
        "garbage": "x" * 40,
    }


def refused_handshake(url, headers=None):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(url, header=headers or [], timeout=5)
    return info.value.status_code, json.loads(info.value.resp_body), info.value.resp_headers


# ---------------------------------------------------------------------------------------- tokens


def test_every_protected_route_refuses_every_forged_token(app, client, auth):
    tokens = auth.login()
    forged = forged_tokens(tokens["access_token"], tokens["refresh_token"])
    routes = [
        (rule.rule, sorted(rule.methods - {"HEAD", "OPTIONS"})[0])
        for rule in app.url_map.iter_rules()
        if rule.rule not in PUBLIC and not rule.websocket
    ]
    assert {"/api/auth/me", "/api/emotions", "/api/ws-ticket", "/api/auth/password"} <= {r for r, _ in routes}
    for path, method in routes:
        for name, token in forged.items():
            if path in ("/api/auth/refresh", "/api/auth/logout") and name == "refresh_for_access":
                continue  # routes that take a refresh token (an access token on refresh is tested below)
            response = client.open(path, method=method, headers=Auth.bearer(token), json={})
            body = response.get_json()
            assert response.status_code == 401, (path, name, body)
            assert body["error"] in {"invalid_token", "token_expired", "wrong_token_type"}, (path, name, body)
    response = client.post("/api/auth/refresh", headers=Auth.bearer(tokens["access_token"]))
    assert response.status_code == 401 and response.get_json()["error"] == "wrong_token_type"
    # The genuine token still works: the refusals above were about the forgeries.
    assert client.get("/api/auth/me", headers=Auth.bearer(tokens["access_token"])).status_code == 200


def test_tokens_carry_issuer_audience_unique_id_and_session(auth):
    one, two = auth.login(), auth.login()
    access, refresh = claims_of(one["access_token"]), claims_of(one["refresh_token"])
    assert access["iss"] == refresh["iss"] == "emotion_app" and access["aud"] == refresh["aud"] == "emotion_app"
    assert access["jti"] != refresh["jti"] != claims_of(two["access_token"])["jti"]
    assert access["sid"] == refresh["jti"] == refresh["sid"]
    assert pyjwt.get_unverified_header(one["access_token"])["alg"] == "HS256"
    assert access["exp"] - access["iat"] == 900  # short-lived by default


def test_the_socket_refuses_every_forged_token(server_factory):
    server = server_factory()
    tokens = server.login()
    for name, token in forged_tokens(tokens["access_token"], tokens["refresh_token"]).items():
        for url, headers in ((f"{server.ws_url}?token={token}", None), (server.ws_url, [f"Authorization: Bearer {token}"])):
            status, body, _ = refused_handshake(url, headers)
            assert status == 401 and body["error"] in {"invalid_token", "token_expired", "wrong_token_type"}, (name, body)


def test_logout_with_either_token_ends_the_whole_session(server_factory):
    server = server_factory()
    for presented in ("access_token", "refresh_token"):
        tokens = server.login()
        other_session = server.login(tokens["user"]["username"])
        ws, _ = server.device(tokens["access_token"])
        status, body = server.request("POST", "/api/auth/logout", token=tokens[presented])
        assert status == 200 and body["revoked"] is True
        code, _, frames = recv_close(ws)
        assert code == 4403 and frames[-1]["code"] == "token_revoked"
        for kind in ("access_token", "refresh_token"):
            path = "/api/auth/refresh" if kind == "refresh_token" else "/api/auth/me"
            status, body = server.request("POST" if kind == "refresh_token" else "GET", path, token=tokens[kind])
            assert status == 401 and body["error"] == "token_revoked", (presented, kind, body)
        # Another login of the same user is another session, untouched.
        assert server.request("GET", "/api/auth/me", token=other_session["access_token"])[0] == 200


def test_a_refreshed_access_token_dies_with_its_session(server_factory):
    server = server_factory()
    tokens = server.login()
    status, refreshed = server.request("POST", "/api/auth/refresh", token=tokens["refresh_token"])
    assert status == 200
    assert server.request("POST", "/api/auth/logout", token=tokens["refresh_token"])[0] == 200
    status, body = server.request("GET", "/api/auth/me", token=refreshed["access_token"])
    assert status == 401 and body["error"] == "token_revoked"


def test_password_change_revokes_every_token_and_closes_every_socket(server_factory):
    server = server_factory()
    first = server.login()
    name = first["user"]["username"]
    second = server.login(name)
    sockets = [server.device(first["access_token"])[0], server.device(second["access_token"])[0]]
    stranger = server.login()
    stranger_ws, _ = server.device(stranger["access_token"])

    status, body = server.request(
        "POST", "/api/auth/password", {"current_password": "wrong password", "new_password": "a new password 1"},
        token=first["access_token"],
    )
    assert status == 403 and body["error"] == "invalid_credentials"
    status, fresh = server.request(
        "POST", "/api/auth/password", {"current_password": PASSWORD, "new_password": "a new password 1"},
        token=first["access_token"],
    )
    assert status == 200 and fresh["access_token"]
    for ws in sockets:
        code, _, frames = recv_close(ws)
        assert code == 4403 and frames[-1]["code"] == "token_revoked"
    for token in (first["access_token"], second["access_token"]):
        status, body = server.request("GET", "/api/auth/me", token=token)
        assert status == 401 and body["error"] == "token_revoked" and "password" in body["message"]
    for token in (first["refresh_token"], second["refresh_token"]):
        assert server.request("POST", "/api/auth/refresh", token=token)[0] == 401
    assert server.request("GET", "/api/auth/me", token=fresh["access_token"])[0] == 200
    assert server.request("POST", "/api/auth/login", {"username": name, "password": PASSWORD})[0] == 401
    assert server.request("POST", "/api/auth/login", {"username": name, "password": "a new password 1"})[0] == 200
    # Nobody else was touched.
    stranger_ws.send(json.dumps({"type": "ping"}))
    assert recv_json(stranger_ws)["type"] == "pong"


def test_password_change_checks_its_fields(client, auth):
    tokens = auth.login()
    response = client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": "short"},
        headers=Auth.bearer(tokens["access_token"]),
    )
    body = response.get_json()
    assert response.status_code == 400 and body["error"] == "invalid_field" and body["field"] == "new_password"
    assert client.get("/api/auth/me", headers=Auth.bearer(tokens["access_token"])).status_code == 200


# ---------------------------------------------------------------------------------------- tickets


def ticket_for(server, token):
    status, body = server.request("POST", "/api/ws-ticket", token=token)
    assert status == 200 and body["expires_in"] == int(server.env.get("WS_TICKET_TTL", 30)), body
    return body["ticket"]


@pytest.fixture(scope="module")
def ticket_server(server_factory):
    return server_factory(WS_TICKET_TTL=2)


def test_a_ticket_opens_one_socket_once(ticket_server):
    tokens = ticket_server.login()
    ticket = ticket_for(ticket_server, tokens["access_token"])
    ws = websocket.create_connection(f"{ticket_server.ws_url}?ticket={ticket}", timeout=5)
    first = recv_json(ws)
    assert first["type"] == "connection_established" and first["user_id"] == tokens["user"]["id"]
    ws.send(json.dumps({"type": "emotion_update", "emotion": "happy"}))
    assert recv_json(ws)["emotion"] == "happy"
    status, body, _ = refused_handshake(f"{ticket_server.ws_url}?ticket={ticket}")
    assert status == 401 and body["error"] == "invalid_ticket"
    ws.close()


def test_an_expired_ticket_is_refused(ticket_server):
    tokens = ticket_server.login()
    ticket = ticket_for(ticket_server, tokens["access_token"])
    time.sleep(2.5)
    status, body, _ = refused_handshake(f"{ticket_server.ws_url}?ticket={ticket}")
    assert status == 401 and body["error"] == "invalid_ticket"


def test_a_ticket_is_bound_to_its_user(ticket_server):
    alice, mallory = ticket_server.login(), ticket_server.login()
    ticket = ticket_for(ticket_server, alice["access_token"])
    status, body, _ = refused_handshake(
        f"{ticket_server.ws_url}?ticket={ticket}", [f"Authorization: Bearer {mallory['access_token']}"]
    )
    assert status == 401 and body["error"] == "invalid_ticket" and "another user" in body["message"]
    # Presenting it burnt it: nobody can use it afterwards.
    status, body, _ = refused_handshake(f"{ticket_server.ws_url}?ticket={ticket}")
    assert status == 401 and body["error"] == "invalid_ticket"


def test_a_ticket_of_a_revoked_token_is_refused(ticket_server):
    tokens = ticket_server.login()
    ticket = ticket_for(ticket_server, tokens["access_token"])
    assert ticket_server.request("POST", "/api/auth/logout", token=tokens["access_token"])[0] == 200
    status, body, _ = refused_handshake(f"{ticket_server.ws_url}?ticket={ticket}")
    assert status == 401 and body["error"] == "token_revoked"


def test_made_up_tickets_are_refused(ticket_server):
    for ticket in ("short", "A" * 43, "A" * 500, "%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00"):
        status, body, _ = refused_handshake(f"{ticket_server.ws_url}?ticket={ticket}")
        assert status == 401 and body["error"] == "invalid_ticket", ticket


def test_tickets_work_across_workers_through_redis(server_factory, postgres_databases, redis_url):
    server = server_factory(
        DATABASE_URL=postgres_databases(), REDIS_URL=redis_url, BROKER_PREFIX=f"t{uuid.uuid4().hex[:8]}",
        WEB_CONCURRENCY=2,
    )
    tokens = server.login()
    # A ticket made by one worker opens a socket on whichever worker takes the connection, once.
    for _ in range(8):
        ticket = ticket_for(server, tokens["access_token"])
        ws = websocket.create_connection(f"{server.ws_url}?ticket={ticket}", timeout=5)
        assert recv_json(ws)["type"] == "connection_established"
        ws.close()
        status, body, _ = refused_handshake(f"{server.ws_url}?ticket={ticket}")
        assert status == 401 and body["error"] == "invalid_ticket"


# ---------------------------------------------------------------------------------------- origins and headers


def test_another_sites_page_cannot_open_a_socket(server_factory):
    server = server_factory(ALLOWED_ORIGINS="https://app.example.com")
    tokens = server.login()
    url = f"{server.ws_url}?token={tokens['access_token']}"
    status, body, _ = refused_handshake(url, ["Origin: https://evil.example"])
    assert status == 403 and body["error"] == "origin_not_allowed"
    status, body, _ = refused_handshake(url, ["Origin: null"])
    assert status == 403
    for origin in ("https://app.example.com", f"http://127.0.0.1:{server.port}", None):
        ws = websocket.create_connection(url, timeout=5, **({"origin": origin} if origin else {"suppress_origin": True}))
        assert recv_json(ws)["type"] == "connection_established", origin
        ws.close()


def test_cors_answers_allowed_origins_only(make_app):
    client = make_app(ALLOWED_ORIGINS=("https://app.example.com",)).test_client()
    preflight = client.options(
        "/api/auth/login",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    evil = client.options("/api/auth/login", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in evil.headers
    default = make_app().test_client().get("/api/emotions/current", headers={"Origin": "https://app.example.com"})
    assert "Access-Control-Allow-Origin" not in default.headers


def test_the_page_forbids_inline_script_framing_and_sniffing(client):
    response = client.get("/")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy and "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    api = client.get("/healthz")
    assert api.headers["X-Content-Type-Options"] == "nosniff" and "Content-Security-Policy" not in api.headers


# ---------------------------------------------------------------------------------------- rate limits


def register_and_login(server, username, password=PASSWORD, headers=None):
    return server.request("POST", "/api/auth/login", {"username": username, "password": password}, headers=headers)


def test_login_brute_force_on_one_username_is_stopped(server_factory):
    server = server_factory(RATE_LIMIT_LOGIN_FAILURES="3 per minute")
    victim = server.login()["user"]["username"]
    for _ in range(3):
        assert register_and_login(server, victim, "guess-" + uuid.uuid4().hex)[0] == 401
    status, body = register_and_login(server, victim)  # even the right password, now
    assert status == 429 and body["error"] == "too_many_requests" and 1 <= body["retry_after"] <= 61
    status, body = register_and_login(server, victim.upper(), "guess")  # the same account, another spelling
    assert status == 429
    # Other accounts from the same address are not locked out.
    assert server.login()["access_token"]


def test_login_and_register_are_limited_per_address(server_factory):
    server = server_factory(RATE_LIMIT_AUTH="4 per minute")
    statuses = [register_and_login(server, f"nobody{i}", "guess")[0] for i in range(4)]
    assert statuses == [401] * 4
    status, body = server.request("POST", "/api/auth/register", {"username": "newcomer", "password": PASSWORD})
    assert status == 429 and body["retry_after"] >= 1
    # X-Forwarded-For is not believed without trusted proxies: a forged one does not get a new budget.
    status, _ = register_and_login(server, "nobody", "guess", headers={"X-Forwarded-For": "203.0.113.9"})
    assert status == 429


def test_behind_a_trusted_proxy_the_client_address_counts(server_factory):
    server = server_factory(RATE_LIMIT_AUTH="2 per minute", TRUSTED_PROXIES=1)
    one = {"X-Forwarded-For": "203.0.113.1"}
    assert [register_and_login(server, "x", "guess", headers=one)[0] for _ in range(3)] == [401, 401, 429]
    assert register_and_login(server, "x", "guess", headers={"X-Forwarded-For": "203.0.113.2"})[0] == 401
    # A client cannot pick its address by prepending to the header: the proxy's entry is the one used.
    spoofed = {"X-Forwarded-For": "198.51.100.7, 203.0.113.1"}
    assert register_and_login(server, "x", "guess", headers=spoofed)[0] == 429


def test_limits_are_shared_by_workers_through_redis(server_factory, postgres_databases, redis_url):
    server = server_factory(
        DATABASE_URL=postgres_databases(), REDIS_URL=redis_url, BROKER_PREFIX=f"t{uuid.uuid4().hex[:8]}",
        WEB_CONCURRENCY=2, RATE_LIMIT_AUTH="4 per minute",
    )
    statuses = [register_and_login(server, "nobody", "guess")[0] for _ in range(12)]
    assert statuses.count(401) == 4 and statuses.count(429) == 8, statuses


def test_handshakes_are_limited_per_address(server_factory):
    server = server_factory(RATE_LIMIT_HANDSHAKE="3 per minute")
    tokens = server.login()
    sockets = [server.device(tokens["access_token"])[0] for _ in range(3)]
    status, body, headers = refused_handshake(f"{server.ws_url}?token={tokens['access_token']}")
    assert status == 429 and body["error"] == "too_many_requests" and int(headers["retry-after"]) >= 1
    for ws in sockets:
        ws.close()


def test_sockets_per_user_are_capped(server_factory):
    server = server_factory(WS_MAX_SOCKETS_PER_USER=2)
    tokens, other = server.login(), server.login()
    first, _ = server.device(tokens["access_token"])
    second, _ = server.device(tokens["access_token"])
    status, body, _ = refused_handshake(f"{server.ws_url}?token={tokens['access_token']}")
    assert status == 429 and body["error"] == "too_many_sockets"
    other_ws, _ = server.device(other["access_token"])  # the cap is per user
    first.close()
    deadline = time.monotonic() + 5
    while True:  # the closed socket stops counting as soon as the server sees the close
        try:
            third, _ = server.device(tokens["access_token"])
            break
        except websocket.WebSocketBadStatusException:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    for ws in (second, third, other_ws):
        ws.close()


def test_a_full_worker_refuses_sockets_but_still_serves_http(server_factory):
    server = server_factory(WS_MAX_SOCKETS=2)
    tokens = server.login()
    sockets = [server.device(tokens["access_token"])[0] for _ in range(2)]
    status, body, _ = refused_handshake(f"{server.ws_url}?token={tokens['access_token']}")
    assert status == 503 and body["error"] == "server_full"
    assert server.request("GET", "/api/auth/me", token=tokens["access_token"])[0] == 200
    for ws in sockets:
        ws.close()


def test_a_flooding_socket_is_refused_then_closed_while_others_are_served(server_factory):
    server = server_factory(WS_FRAME_RATE=10, WS_FRAME_BURST=5)
    flooder, victim = server.login(), server.login()
    ws, _ = server.device(flooder["access_token"])
    watcher, _ = server.device(victim["access_token"])
    sender, _ = server.device(victim["access_token"])
    victim_latencies = []

    def victim_updates():
        for emotion in ("happy", "sad", "angry"):
            started = time.monotonic()
            sender.send(json.dumps({"type": "emotion_update", "emotion": emotion}))
            frame = recv_json(watcher, timeout=2)
            assert frame["emotion"] == emotion
            victim_latencies.append(time.monotonic() - started)
            time.sleep(0.05)

    # Slightly over the burst: the extra frames are refused (and not stored), the socket stays open.
    for _ in range(8):
        ws.send(json.dumps({"type": "emotion_update", "emotion": "happy"}))
    replies = [recv_json(ws) for _ in range(8)]
    refused = [r for r in replies if r["type"] == "error"]
    assert len(refused) == 3 and all(r["code"] == "rate_limited" and r["retry_after"] > 0 for r in refused)
    assert sum(r["type"] == "emotion_update" for r in replies) == 5
    # Keeps flooding: closed with 1008, while the other user's updates go through.
    other = threading.Thread(target=victim_updates)
    other.start()
    try:
        for _ in range(200):
            ws.send(json.dumps({"type": "emotion_update", "emotion": "sad"}))
    except (websocket.WebSocketException, OSError):
        pass  # the server closed it mid-flood
    code, _, frames = recv_close(ws)
    other.join()
    assert code == 1008 and frames[-1]["code"] == "rate_limited"
    assert len(victim_latencies) == 3
    status, body = server.request("GET", "/api/emotions?limit=100", token=flooder["access_token"])
    accepted = [e for e in body["events"]]
    assert status == 200 and 5 <= len(accepted) < 20, len(accepted)  # the burst, plus what the rate refilled


# ---------------------------------------------------------------------------------------- hostile payloads


def test_deeply_nested_json_is_refused_over_http(client, auth):
    tokens = auth.login()
    for body in ("[" * 5000 + "]" * 5000, '{"emotion": ' + "[" * 20 + "]" * 20 + "}"):
        response = client.post("/api/emotions", data=body, content_type="application/json",
                               headers=Auth.bearer(tokens["access_token"]))
        payload = response.get_json()
        assert response.status_code == 400 and payload["error"] in {"too_deep", "malformed_json"}, payload
    response = client.get("/api/emotions", headers=Auth.bearer(tokens["access_token"]))
    assert response.get_json()["events"] == []
    login = client.post("/api/auth/login", data='{"username": ' + "[" * 3000 + "]" * 3000 + "}",
                        content_type="application/json")
    assert login.status_code == 400 and login.get_json()["error"] == "too_deep"


def test_oversized_http_bodies_get_413(client, auth):
    tokens = auth.login()
    response = client.post("/api/emotions", data='{"emotion": "' + "a" * 20000 + '"}',
                           content_type="application/json", headers=Auth.bearer(tokens["access_token"]))
    assert response.status_code == 413 and response.get_json()["error"] == "payload_too_large"


def test_deeply_nested_frames_get_an_error_and_keep_the_socket(live_server):
    tokens = live_server.login()
    ws, _ = live_server.device(tokens["access_token"])
    for frame in ("[" * 2000 + "]" * 2000, '{"type": "ping", "x": ' + "{\"a\":" * 50 + "1" + "}" * 50 + "}"):
        ws.send(frame)
        reply = recv_json(ws)
        assert reply["type"] == "error" and reply["code"] in {"too_deep", "invalid_format"}, reply
    ws.send(json.dumps({"type": "ping"}))
    assert recv_json(ws)["type"] == "pong"
    ws.close()


def test_a_handshake_missing_websocket_headers_is_a_clear_400(live_server):
    import socket

    tokens = live_server.login()
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as raw:
        raw.sendall(
            f"GET /api/ws?token={tokens['access_token']} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\n\r\n".encode()
        )
        answer = b""
        while not answer.rstrip().endswith(b"}"):
            chunk = raw.recv(4096)
            if not chunk:
                break
            answer += chunk
    head, body = answer.decode(errors="replace").split("\r\n\r\n", 1)
    assert head.startswith("HTTP/1.1 400") and json.loads(body)["error"] == "invalid_handshake"


def test_limits_keep_working_without_redis(server_factory, postgres_databases, private_redis):
    server = server_factory(
        DATABASE_URL=postgres_databases(), REDIS_URL=private_redis.url, RATE_LIMIT_AUTH="3 per minute",
        RATE_LIMIT_HANDSHAKE="50 per minute", WS_MAX_SOCKETS_PER_USER=5, WEB_CONCURRENCY=1,
    )
    tokens = server.login()
    private_redis.stop()
    # Counted in each worker's memory meanwhile (one worker here): still limited, never a 500.
    statuses = [register_and_login(server, "nobody", "guess")[0] for _ in range(4)]
    assert statuses == [401, 401, 401, 429], statuses
    ws, first = server.device(tokens["access_token"])  # presence is unknown, the socket is still served
    assert first["type"] == "connection_established"
    status, body = server.request("POST", "/api/ws-ticket", token=tokens["access_token"])
    assert status == 503 and body["error"] == "broker_unavailable"
    ws.close()
