"""/api/emotions over HTTP: set, current, history; on SQLite and PostgreSQL."""
import pytest

from tests.conftest import Auth


@pytest.fixture
def user(auth):
    tokens = auth.login()
    return {"headers": Auth.bearer(tokens["access_token"]), "id": tokens["user"]["id"]}


def test_current_is_null_before_any_update(client, user):
    response = client.get("/api/emotions/current", headers=user["headers"])
    assert response.status_code == 200
    assert response.get_json() == {
        "id": None, "seq": None, "user_id": user["id"], "emotion": None, "timestamp": None, "client_timestamp": None,
        "device": None,
    }


def test_post_stores_a_normalised_emotion(client, user):
    response = client.post(
        "/api/emotions", json={"emotion": "  HaPpY ", "timestamp": "2023-05-09T14:45:00.123456"}, headers=user["headers"]
    )
    assert response.status_code == 201
    event = response.get_json()
    assert event["emotion"] == "happy"
    assert event["user_id"] == user["id"]
    assert event["client_timestamp"] == "2023-05-09T14:45:00.123456"
    assert event["timestamp"].endswith("Z") and event["timestamp"] != event["client_timestamp"]
    assert client.get("/api/emotions/current", headers=user["headers"]).get_json() == event


def test_post_records_the_device_named_in_the_body(client, user):
    named = client.post(
        "/api/emotions", json={"emotion": "sad", "device": "  Work\u200b  laptop\n"}, headers=user["headers"]
    )
    assert named.status_code == 201 and named.get_json()["device"] == "Work laptop"
    html = client.post("/api/emotions", json={"emotion": "happy", "device": "<b>Mine</b>"}, headers=user["headers"])
    assert html.get_json()["device"] == "<b>Mine</b>"  # kept as given: escaping is for whoever shows it
    for body in ({"emotion": "angry"}, {"emotion": "angry", "device": None}, {"emotion": "angry", "device": " "}):
        unnamed = client.post("/api/emotions", json=body, headers=user["headers"])
        assert unnamed.status_code == 201 and unnamed.get_json()["device"] is None
    events = client.get("/api/emotions", headers=user["headers"]).get_json()["events"]
    assert [e["device"] for e in events] == [None, None, None, "<b>Mine</b>", "Work laptop"]
    assert client.get("/api/emotions/current", headers=user["headers"]).get_json() == events[0]


@pytest.mark.parametrize("device", ["x" * 65, 7, True, ["Pixel"], {"name": "Pixel"}])
def test_post_refuses_a_bad_device_and_stores_nothing(client, user, device):
    response = client.post("/api/emotions", json={"emotion": "sad", "device": device}, headers=user["headers"])
    assert response.status_code == 400
    body = response.get_json()
    assert (body["error"], body["field"]) == ("invalid_field", "device")
    assert client.get("/api/emotions", headers=user["headers"]).get_json()["events"] == []


def test_ids_increase_and_history_pages_newest_first(client, user):
    ids = [
        client.post("/api/emotions", json={"emotion": e}, headers=user["headers"]).get_json()["id"]
        for e in ["happy", "sad", "angry", "neutral", "fearful"]
    ]
    assert ids == sorted(ids) and len(set(ids)) == 5
    page = client.get("/api/emotions?limit=2", headers=user["headers"]).get_json()
    assert [e["emotion"] for e in page["events"]] == ["fearful", "neutral"]
    assert page["next_before"] == ids[3]
    page = client.get(f"/api/emotions?limit=2&before={page['next_before']}", headers=user["headers"]).get_json()
    assert [e["emotion"] for e in page["events"]] == ["angry", "sad"]
    page = client.get(f"/api/emotions?limit=2&before={page['next_before']}", headers=user["headers"]).get_json()
    assert [e["emotion"] for e in page["events"]] == ["happy"]
    assert page["next_before"] is None


def test_history_limit_is_capped(make_app):
    app = make_app(HISTORY_MAX_LIMIT=3)
    client = app.test_client()
    headers = Auth.bearer(Auth(client).login()["access_token"])
    for _ in range(5):
        client.post("/api/emotions", json={"emotion": "sad"}, headers=headers)
    page = client.get("/api/emotions?limit=1000", headers=headers).get_json()
    assert page["limit"] == 3 and len(page["events"]) == 3


@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "limit=abc", "before=x", "before=0", "limit=1.5"])
def test_history_rejects_bad_parameters(client, user, query):
    response = client.get(f"/api/emotions?{query}", headers=user["headers"])
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_parameter" and body["field"] in query


def test_users_see_only_their_own_emotions(client, auth, user):
    client.post("/api/emotions", json={"emotion": "sad"}, headers=user["headers"])
    other = Auth.bearer(auth.login()["access_token"])
    assert client.get("/api/emotions/current", headers=other).get_json()["emotion"] is None
    assert client.get("/api/emotions", headers=other).get_json()["events"] == []


@pytest.mark.parametrize(
    "body, error, field",
    [
        ({}, "missing_field", "emotion"),
        ({"emotion": None}, "missing_field", "emotion"),
        ({"emotion": 5}, "invalid_field", "emotion"),
        ({"emotion": ["sad"]}, "invalid_field", "emotion"),
        ({"emotion": "bored"}, "unknown_emotion", "emotion"),
        ({"emotion": ""}, "unknown_emotion", "emotion"),
        ({"emotion": "sad", "timestamp": "yesterday"}, "invalid_timestamp", "timestamp"),
        ({"emotion": "sad", "timestamp": 1683643500}, "invalid_timestamp", "timestamp"),
        ({"emotion": "sad", "timestamp": "2023-13-45T99:00:00Z"}, "invalid_timestamp", "timestamp"),
    ],
)
def test_post_rejects_bad_updates_and_stores_nothing(client, user, body, error, field):
    response = client.post("/api/emotions", json=body, headers=user["headers"])
    assert response.status_code == 400
    payload = response.get_json()
    assert payload["error"] == error and payload["field"] == field
    assert client.get("/api/emotions", headers=user["headers"]).get_json()["events"] == []


def test_unknown_emotion_lists_the_allowed_ones(client, user):
    message = client.post("/api/emotions", json={"emotion": "bored"}, headers=user["headers"]).get_json()["message"]
    for emotion in client.application.config["EMOTIONS"]:
        assert emotion in message


def test_vocabulary_is_configurable(make_app):
    app = make_app(EMOTIONS=("calm", "excited"))
    client = app.test_client()
    headers = Auth.bearer(Auth(client).login()["access_token"])
    assert client.post("/api/emotions", json={"emotion": "calm"}, headers=headers).status_code == 201
    assert client.post("/api/emotions", json={"emotion": "happy"}, headers=headers).status_code == 400


def test_emotion_endpoints_require_a_token(client):
    for method, path in [("get", "/api/emotions"), ("get", "/api/emotions/current"), ("post", "/api/emotions")]:
        response = getattr(client, method)(path, json={"emotion": "sad"})
        assert response.status_code == 401 and response.get_json()["error"] == "missing_token"
