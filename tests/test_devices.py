"""Device names on real servers: given with the handshake or the ticket, shown in presence, kept with events.

Each test runs on SQLite with the in-process broker and on PostgreSQL with Redis (the two insert paths of
the group committer, and both presence backends).
"""
import json
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
import websocket

from tests.conftest import recv_json
from tests.test_ws import assert_quiet, refused

SOCKET_ID = re.compile(r"^[0-9a-f]{16}$")
HTML = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module", params=["sqlite+memory", "postgresql+redis"])
def server(request, server_factory):
    if request.param == "sqlite+memory":
        return server_factory()
    return server_factory(
        DATABASE_URL=request.getfixturevalue("postgres_databases")(),
        REDIS_URL=request.getfixturevalue("redis_url"),
        BROKER_PREFIX=f"test_{uuid.uuid4().hex[:8]}",
    )


def ticket(server, token, body=None, **request):
    status, answer = server.request("POST", "/api/ws-ticket", body, token=token, **request)
    assert status == 200, answer
    return answer["ticket"]


def by_ticket(server, ticket_, device=None):
    """Open a socket with a ticket (and `device` in the URL, if given); return (socket, first frame)."""
    query = {"ticket": ticket_} | ({"device": device} if device is not None else {})
    ws = websocket.create_connection(f"{server.ws_url}?{urllib.parse.urlencode(query)}", timeout=5)
    first = recv_json(ws)
    assert first["type"] == "connection_established", first
    return ws, first


def online(server, token):
    status, body = server.request("GET", "/api/devices", token=token)
    assert status == 200, body
    return body


def send_update(ws, emotion, **extra):
    ws.send(json.dumps({"type": "emotion_update", "emotion": emotion, **extra}))


# ------------------------------------------------------------------------------------------- naming


def test_a_name_in_the_url_is_the_sockets_name(server):
    tokens = server.login()
    token = tokens["access_token"]
    ws, first = server.device(token, device="Pixel 8")
    assert SOCKET_ID.match(first["device"]["id"]) and first["device"]["name"] == "Pixel 8"
    assert first["online"] == [first["device"]] and first["devices"] == 1
    assert online(server, token) == {"user_id": tokens["user"]["id"], "devices": 1, "online": [first["device"]]}
    ws.close()


def test_names_are_normalised(server):
    token = server.login()["access_token"]
    raw = " \tPixel\u200b \n  8\x00 \u202e"  # controls, format characters and runs of whitespace
    ws, first = server.device(token, device=raw)
    assert first["device"]["name"] == "Pixel 8"
    blank, unnamed = server.device(token, device=" \u200b\t")  # nothing left: an unnamed device
    assert unnamed["device"]["name"] is None
    empty, also_unnamed = server.device(token, device="")
    assert also_unnamed["device"]["name"] is None
    for each in (ws, blank, empty):
        each.close()


def test_a_name_of_65_characters_is_refused_before_any_socket_exists(server):
    token = server.login()["access_token"]
    status, body = refused(server, f"{server.ws_url}?token={token}&device={'x' * 65}")
    assert status == 400 and (body["error"], body["field"]) == ("invalid_parameter", "device")
    assert "64" in body["message"]
    # The raw answer is a plain HTTP 400, not an upgrade.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(
            f"GET /api/ws?token={token}&device={'y' * 65} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        answer = raw.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 400") and "Sec-WebSocket-Accept" not in answer
    assert online(server, token)["devices"] == 0
    ws, first = server.device(token, device="x" * 64)  # 64 is fine
    assert first["device"]["name"] == "x" * 64
    ws.close()


def test_a_ticket_carries_the_name(server):
    token = server.login()["access_token"]
    ws, first = by_ticket(server, ticket(server, token, {"device": "  iPad \t Pro "}))
    assert first["device"]["name"] == "iPad Pro"
    assert online(server, token)["online"] == [first["device"]]
    ws.close()


def test_the_urls_name_wins_over_the_tickets(server):
    token = server.login()["access_token"]
    ws, first = by_ticket(server, ticket(server, token, {"device": "Old name"}), device="New name")
    assert first["device"]["name"] == "New name"
    ws.close()


def test_tickets_without_a_name_still_work(server):
    token = server.login()["access_token"]
    cases = [
        ticket(server, token),  # no body, no Content-Type: as before names existed
        ticket(server, token, headers={"Content-Type": "application/json"}),  # an empty JSON body
        ticket(server, token, {}),
        ticket(server, token, {"device": None}),
        ticket(server, token, {"device": " "}),
    ]
    for each in cases:
        ws, first = by_ticket(server, each)
        assert first["device"]["name"] is None
        ws.close()


@pytest.mark.parametrize(
    "body, content_type, status, error",
    [
        (b'{"device": ', "application/json", 400, "malformed_json"),
        (b"[1]", "application/json", 400, "malformed_json"),
        (b'{"device": 8}', "application/json", 400, "invalid_field"),
        (b'{"device": ["Pixel"]}', "application/json", 400, "invalid_field"),
        (json.dumps({"device": "x" * 65}).encode(), "application/json", 400, "invalid_field"),
        (b"device=Pixel", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
def test_bad_ticket_bodies_are_refused(live_server, body, content_type, status, error):
    token = live_server.login()["access_token"]
    answer = live_server.request("POST", "/api/ws-ticket", token=token, headers={"Content-Type": content_type})
    assert answer[0] == 200  # the same request without the body
    request = urllib.request.Request(
        live_server.url + "/api/ws-ticket", data=body, method="POST",
        headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    payload = json.loads(info.value.read())
    assert (info.value.code, payload["error"]) == (status, error)
    if error == "invalid_field":
        assert payload["field"] == "device"


def test_html_in_a_name_is_kept_verbatim(server):
    token = server.login()["access_token"]
    ws, first = server.device(token, device=HTML)
    assert first["device"]["name"] == HTML
    watcher, _ = server.device(token)
    send_update(ws, "happy")
    event = recv_json(ws)
    assert event["device"] == HTML and recv_json(watcher) == event
    assert HTML in [d["name"] for d in online(server, token)["online"]]
    status, history = server.request("GET", "/api/emotions", token=token)
    assert history["events"][0]["device"] == HTML
    ws.close()
    watcher.close()


# ------------------------------------------------------------------------------------------- presence


def test_presence_frames_and_the_list_carry_the_names(server):
    tokens = server.login()
    token, user_id = tokens["access_token"], tokens["user"]["id"]
    phone, hello = server.device(token, device="Phone")
    anonymous, _ = server.device(token)  # an unnamed device is counted and listed, with a null name
    joined = recv_json(phone, skip=())
    assert joined["change"] == "connected" and joined["device"]["name"] is None
    unnamed = joined["device"]
    laptop, welcome = server.device(token, device="Laptop")
    expected = [unnamed, welcome["device"], hello["device"]]  # unnamed first, then by name
    assert welcome["online"] == expected and welcome["devices"] == 3
    for ws in (phone, anonymous):
        frame = recv_json(ws, skip=())
        assert frame == {
            "type": "presence", "user_id": user_id, "devices": 3, "change": "connected",
            "device": welcome["device"], "online": expected,
        }
    assert online(server, token) == {"user_id": user_id, "devices": 3, "online": expected}
    laptop.close()
    for ws in (phone, anonymous):
        frame = recv_json(ws, skip=())
        assert (frame["change"], frame["device"], frame["online"]) == ("disconnected", welcome["device"], [unnamed, hello["device"]])
        assert frame["devices"] == 2
    assert_quiet(phone)
    phone.close()
    anonymous.close()


def test_servers_sharing_redis_see_each_others_named_devices(server_factory, postgres_databases, redis_url):
    shared = {"DATABASE_URL": postgres_databases(), "REDIS_URL": redis_url, "BROKER_PREFIX": f"t{uuid.uuid4().hex[:8]}"}
    host_a, host_b = server_factory(**shared), server_factory(**shared)
    token = host_a.login()["access_token"]
    phone, hello = host_a.device(token, device="Phone")
    tablet, welcome = host_b.device(token, device="Android tablet")
    both = [welcome["device"], hello["device"]]
    assert welcome["online"] == both
    joined = recv_json(phone, skip=())
    assert (joined["change"], joined["device"], joined["online"]) == ("connected", welcome["device"], both)
    for host in (host_a, host_b):
        assert online(host, token)["online"] == both
    send_update(tablet, "sad")
    assert recv_json(phone)["device"] == "Android tablet"
    tablet.close()
    left = recv_json(phone, skip=())
    assert (left["change"], left["device"], left["online"]) == ("disconnected", welcome["device"], [hello["device"]])
    phone.close()


def test_presence_is_published_only_when_another_device_of_the_user_is_online(server_factory, postgres_databases, redis_url):
    import redis

    prefix = f"t{uuid.uuid4().hex[:8]}"
    host = server_factory(DATABASE_URL=postgres_databases(), REDIS_URL=redis_url, BROKER_PREFIX=prefix)
    listener = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(f"{prefix}:broadcast")

    def published():
        kinds = []
        while (message := listener.get_message(timeout=0.5)) is not None:
            body = json.loads(message["data"].split(b" ", 1)[1])  # "<origin> <json>"
            if body.get("kind") == "presence":
                kinds.append((body["change"], body["devices"]))
        return kinds

    token = host.login()["access_token"]
    alone, _ = host.device(token, device="Phone")
    alone.close()
    assert published() == []  # nobody else to tell, on any worker
    phone, _ = host.device(token, device="Phone")
    tablet, _ = host.device(token, device="Tablet")
    assert recv_json(phone, skip=())["change"] == "connected"
    tablet.close()
    assert recv_json(phone, skip=())["change"] == "disconnected"
    phone.close()
    assert published() == [("connected", 2), ("disconnected", 1)]
    listener.close()


# ------------------------------------------------------------------------------------------- events


def test_events_record_the_device_that_set_them(server):
    token = server.login()["access_token"]
    phone, _ = server.device(token, device="Phone")
    unnamed, _ = server.device(token)
    send_update(phone, "happy", client_msg_id="p-1")
    from_phone = recv_json(phone)
    assert from_phone["device"] == "Phone" and recv_json(unnamed) == from_phone
    send_update(unnamed, "sad")
    from_unnamed = recv_json(unnamed)
    assert from_unnamed["device"] is None and recv_json(phone) == from_unnamed
    status, from_http = server.request("POST", "/api/emotions", {"emotion": "angry", "device": " Web\tpage "}, token=token)
    assert status == 201 and from_http["device"] == "Web page"
    status, without = server.request("POST", "/api/emotions", {"emotion": "neutral"}, token=token)
    assert status == 201 and without["device"] is None
    for ws in (phone, unnamed):
        assert [recv_json(ws) for _ in range(2)] == [
            {"type": "emotion_update", **from_http}, {"type": "emotion_update", **without}
        ]
    # A repeat answers with the original event, device included, whoever repeats it.
    send_update(unnamed, "happy", client_msg_id="p-1")
    assert recv_json(unnamed) == {**from_phone, "duplicate": True}

    events = [{k: v for k, v in f.items() if k != "type"} for f in (from_phone, from_unnamed)] + [from_http, without]
    status, history = server.request("GET", "/api/emotions", token=token)
    assert history["events"] == events[::-1]
    assert server.request("GET", "/api/emotions/current", token=token)[1] == without
    # Replays and the state on connect carry it too.
    late, first = server.device(token, since=0)
    assert first["current"] == without
    replayed = [recv_json(late) for _ in range(4)]
    assert replayed == [{"type": "emotion_update", **e} for e in events]
    assert recv_json(late)["type"] == "synced"
    for ws in (phone, unnamed, late):
        ws.close()
