"""One JSON error shape for every HTTP error, never an HTML page or a traceback."""
import pytest
from flask import Blueprint

from tests.conftest import PASSWORD


def assert_error_shape(response, status, error):
    assert response.status_code == status
    assert response.content_type == "application/json"
    body = response.get_json()
    assert body["status"] == status
    assert body["error"] == error
    assert isinstance(body["message"], str) and body["message"]
    return body


def test_unknown_route(client):
    assert_error_shape(client.get("/api/nothing-here"), 404, "not_found")


def test_wrong_method(client):
    response = client.get("/api/auth/login")
    assert_error_shape(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_wrong_content_type(client):
    response = client.post("/api/auth/register", data="username=alice", content_type="application/x-www-form-urlencoded")
    body = assert_error_shape(response, 415, "unsupported_media_type")
    assert "application/json" in body["message"]


@pytest.mark.parametrize("raw", ["{", "not json", '{"username": "a",}', ""])
def test_malformed_json(client, raw):
    response = client.post("/api/auth/register", data=raw, content_type="application/json")
    assert_error_shape(response, 400, "malformed_json")


@pytest.mark.parametrize("raw", ["[]", '"text"', "42", "null"])
def test_json_that_is_not_an_object(client, raw):
    response = client.post("/api/auth/login", data=raw, content_type="application/json")
    body = assert_error_shape(response, 400, "malformed_json")
    assert "object" in body["message"] or "not valid" in body["message"]


def test_body_too_large(client):
    big = '{"username": "alice", "password": "' + "x" * 20000 + '"}'
    body = assert_error_shape(client.post("/api/auth/register", data=big, content_type="application/json"), 413, "payload_too_large")
    assert "16384" in body["message"]


def test_plain_get_on_the_socket_path(client):
    body = assert_error_shape(client.get("/api/ws"), 400, "websocket_required")
    assert "WebSocket" in body["message"]


def test_unexpected_error_is_a_json_500_and_rolls_back(make_app):
    app = make_app()
    boom = Blueprint("boom", __name__)

    @boom.get("/boom")
    def explode():
        from emotion_app.extensions import db
        from emotion_app.models import User

        db.session.add(User(username="ghost", username_key="ghost", password_hash="x"))
        db.session.flush()
        raise RuntimeError("secret internals")

    app.register_blueprint(boom)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    response = client.get("/boom")
    body = assert_error_shape(response, 500, "internal_error")
    assert "secret internals" not in response.get_data(as_text=True)
    assert body["message"] == "Internal server error"
    # The half-done insert was rolled back: the name is free.
    assert client.post("/api/auth/register", json={"username": "ghost", "password": PASSWORD}).status_code == 201
