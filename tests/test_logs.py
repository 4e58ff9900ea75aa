"""No token, ticket or password in any log line: the app's, gunicorn's access log or its error log."""
import io
import json
import logging
import socket

import websocket

from emotion_app.logs import RedactSecrets, configure_logging, redact
from tests.conftest import PASSWORD, recv_json


def raw_request(server, text):
    """Send `text` as is and return what the server answers (or b"" if it just closes)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(text.encode())
        try:
            return raw.recv(4096)
        except OSError:
            return b""


def test_no_secret_reaches_any_log_line(server_factory):
    server = server_factory(LOG_LEVEL="debug", WS_TICKET_TTL=30)
    password = "a very secret password 42"
    name = "logged_user"
    assert server.request("POST", "/api/auth/register", {"username": name, "password": password})[0] == 201
    tokens = server.login(name, password)
    server.request("POST", "/api/auth/login", {"username": name, "password": "wrong " + password})
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    secrets = {"access": access, "refresh": refresh, "password": password}

    # A socket that works, with the token in the URL and in a header.
    for url, header in ((f"{server.ws_url}?token={access}", []), (server.ws_url, [f"Authorization: Bearer {access}"])):
        ws = websocket.create_connection(url, header=header, timeout=5)
        assert recv_json(ws)["type"] == "connection_established"
        ws.close()
    # Tickets: used, replayed, made up.
    status, body = server.request("POST", "/api/ws-ticket", token=access)
    secrets["ticket"] = ticket = body["ticket"]
    ws = websocket.create_connection(f"{server.ws_url}?ticket={ticket}", timeout=5)
    ws.close()
    for url in (f"{server.ws_url}?ticket={ticket}", f"{server.ws_url}?ticket={ticket[::-1]}"):
        try:
            websocket.create_connection(url, timeout=5)
        except websocket.WebSocketBadStatusException as exc:
            assert exc.status_code == 401
    # Refused: a tampered token, a bad since, a refresh token, another origin.
    for query in (f"token={access[:-4]}AAAA", f"token={access}&since=x", f"token={refresh}"):
        try:
            websocket.create_connection(f"{server.ws_url}?{query}", timeout=5)
        except websocket.WebSocketBadStatusException as exc:
            assert exc.status_code in (400, 401)
    # Malformed: a broken handshake and a broken request line, both carrying the token.
    raw_request(server, f"GET /api/ws?token={access} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    raw_request(server, f"GET /api/ws?token={access} HTTP/1.1 extra\r\n\r\n")
    raw_request(server, f"GET /api/ws?ticket={ticket} HTTP/9.9\r\n\r\n")
    # HTTP with the token in the header, a refresh, a logout.
    server.request("GET", "/api/auth/me", token=access)
    server.request("POST", "/api/auth/refresh", token=refresh)
    server.request("POST", "/api/auth/logout", token=access)
    server.request("GET", "/api/auth/me", token=access)  # now revoked

    server.stop()
    log = server.log()
    assert "[DEBUG] GET /api/ws" in log and '" 401' in log, "the scan needs a verbose log"
    for what, value in secrets.items():
        for part in (value, value[-24:]):  # whole, or a recognisable tail
            assert part not in log, f"the {what} appears in the server log"
    assert "token=" not in log.replace("token=[redacted]", "")


def test_the_filter_masks_crash_reports_and_arguments():
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets())
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            raise ValueError(f"cannot handle /api/ws?token={token}&since=3")
        except ValueError:
            # What gunicorn's worker logs when a request crashes: the URL as an argument, and a traceback.
            log.exception("Error handling request %s", f"/api/ws?ticket=T1CKETvalue123456&token={token}")
        log.warning("headers %s", {"Authorization": f"Bearer {token}"})
        log.warning('body {"password": "hunter22", "new_password": "x"}')
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "ValueError" in text and "Error handling request /api/ws?ticket=[redacted]&token=[redacted]" in text
    for secret in (token, "c2lnbmF0dXJl", "T1CKETvalue123456", "hunter22"):
        assert secret not in text, secret


def test_redact_leaves_ordinary_text_alone():
    line = '127.0.0.1 "GET /api/ws HTTP/1.1" 101 0 0.5s "websocat"'
    assert redact(line) == line
    assert redact("user 7 set emotion happy") == "user 7 set emotion happy"


def test_configure_logging_redacts_the_server_handlers(app):
    for name in ("gunicorn.error", "gunicorn.access"):
        logger = logging.getLogger(name)
        handler = logging.StreamHandler(io.StringIO())
        logger.addHandler(handler)
        try:
            configure_logging(app)
            assert any(isinstance(f, RedactSecrets) for f in handler.filters), name
        finally:
            logger.removeHandler(handler)


def test_json_logs_carry_request_id_and_user_and_parse_line_by_line(server_factory):
    server = server_factory(LOG_FORMAT="json", LOG_LEVEL="info")
    tokens = server.login()
    user_id = tokens["user"]["id"]
    ws = websocket.create_connection(
        f"{server.ws_url}?token={tokens['access_token']}", header=["X-Request-ID: phone-7f3a"], timeout=5
    )
    assert recv_json(ws)["type"] == "connection_established"
    ws.send(json.dumps({"type": "emotion_update", "emotion": "happy"}))
    recv_json(ws)
    ws.close()
    status, _ = server.request("GET", "/api/auth/me", token=tokens["access_token"], headers={"X-Request-ID": "web-1"})
    assert status == 200
    server.request("GET", "/api/auth/me", headers={"X-Request-ID": "bad id with spaces"})
    server.stop()

    lines = [line for line in server.log().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line, the master's included
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    socket_lines = [e for e in entries if e.get("request_id") == "phone-7f3a"]
    messages = [e["message"] for e in socket_lines]
    assert any(m.startswith("socket open") for m in messages), messages
    assert any(m == "socket closed: code 1000" for m in messages), messages
    assert all(e["user_id"] == user_id for e in socket_lines if e["message"].startswith("socket"))
    access = [e for e in entries if e.get("request_id") == "web-1" and "/api/auth/me" in e["message"]]
    assert access and access[0]["user_id"] == user_id and access[0]["logger"] == "gunicorn.access"
    generated = [e for e in entries if "/api/auth/me" in e["message"] and " 401 " in e["message"]]
    assert generated and generated[0]["request_id"] != "bad id with spaces" and len(generated[0]["request_id"]) == 16
    text = "\n".join(lines)
    assert tokens["access_token"] not in text and tokens["refresh_token"] not in text and PASSWORD not in text
