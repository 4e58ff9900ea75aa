"""`GET /metrics`: Prometheus text covering every worker, counters that follow a scripted session, and
access for the scraper only."""
import json
import uuid

import pytest
import websocket
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import recv_json


def scrape(server, token=None):
    """{(sample name, frozenset of labels): value} from one GET /metrics."""
    status, text = server.request("GET", "/metrics", token=token)
    assert status == 200, text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def two_workers(server_factory, postgres_databases, redis_url):
    return server_factory(
        DATABASE_URL=postgres_databases(), REDIS_URL=redis_url, BROKER_PREFIX=f"m{uuid.uuid4().hex[:8]}",
        WEB_CONCURRENCY=2, RATE_LIMIT_AUTH="1000 per minute",
    )


def test_metrics_follow_a_scripted_session_across_workers(two_workers):
    server = two_workers
    before = scrape(server)
    tokens = server.login()
    devices = [server.device(tokens["access_token"])[0] for _ in range(3)]
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(f"{server.ws_url}?token=not-a-token", timeout=5)
    sender = devices[0]
    for emotion in ("happy", "sad", "angry"):
        sender.send(json.dumps({"type": "emotion_update", "emotion": emotion}))
        for ws in devices:
            assert recv_json(ws)["emotion"] == emotion
    sender.send("not json")
    assert recv_json(sender)["code"] == "invalid_format"
    sender.send(json.dumps({"type": "ping"}))
    assert recv_json(sender)["type"] == "pong"

    # Whichever worker answers, the figures are those of both.
    scrapes = [scrape(server) for _ in range(6)]
    for after in scrapes:
        def moved(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        assert value(after, "emotion_app_sockets_open") == 3
        assert moved("emotion_app_handshakes_total", result="accepted") == 3
        assert moved("emotion_app_handshakes_total", result="invalid_token") == 1
        assert moved("emotion_app_frames_total", type="emotion_update") == 3
        assert moved("emotion_app_frames_total", type="invalid") == 1
        assert moved("emotion_app_frames_total", type="ping") == 1
        assert moved("emotion_app_updates_stored_total") == 3
        assert moved("emotion_app_delivery_seconds_count") == 9
        assert moved("emotion_app_delivery_seconds_bucket", le="+Inf") == 9
    assert len(two_workers.worker_pids()) == 2
    for ws in devices:
        ws.close()


def test_rate_limit_refusals_are_counted(server_factory):
    server = server_factory(RATE_LIMIT_AUTH="1 per minute")
    before = scrape(server)
    for _ in range(3):
        server.request("POST", "/api/auth/login", {"username": "nobody", "password": "guess"})
    after = scrape(server)
    assert value(after, "emotion_app_rate_limited_total", limit="auth.login") - value(
        before, "emotion_app_rate_limited_total", limit="auth.login"
    ) == 2


def test_metrics_need_the_token_when_one_is_set(server_factory):
    server = server_factory(METRICS_TOKEN="scrape-secret-123")
    status, body = server.request("GET", "/metrics")
    assert status == 401 and body["error"] == "invalid_token"
    assert server.request("GET", "/metrics", token="wrong")[0] == 401
    assert "emotion_app_sockets_open" in server.request("GET", "/metrics", token="scrape-secret-123")[1]


def test_metrics_refuse_public_addresses_without_a_token(client):
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": "93.184.216.34"})
    assert response.status_code == 403 and response.get_json()["error"] == "forbidden"
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
