"""The /api/auth endpoints: good paths and every bad input, on SQLite and PostgreSQL."""
import time

import pytest

from tests.conftest import PASSWORD, Auth


def test_register_returns_the_user(client):
    response = client.post("/api/auth/register", json={"username": "Alice.B-1_x", "password": PASSWORD})
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"id", "username", "created_at"}
    assert body["username"] == "Alice.B-1_x"
    assert isinstance(body["id"], str) and body["id"].isdigit()
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == 24


def test_username_is_unique_regardless_of_case(client, auth):
    auth.register("Alice")
    response = client.post("/api/auth/register", json={"username": "aLICE", "password": PASSWORD})
    assert response.status_code == 409
    body = response.get_json()
    assert body["error"] == "username_taken" and body["field"] == "username"
    assert "aLICE" in body["message"]


@pytest.mark.parametrize(
    "payload, fields",
    [
        ({"password": PASSWORD}, {"username"}),
        ({"username": "alice"}, {"password"}),
        ({}, {"username", "password"}),
        ({"username": "ab", "password": PASSWORD}, {"username"}),
        ({"username": "a" * 33, "password": PASSWORD}, {"username"}),
        ({"username": "bad name", "password": PASSWORD}, {"username"}),
        ({"username": "émile", "password": PASSWORD}, {"username"}),
        ({"username": 12345, "password": PASSWORD}, {"username"}),
        ({"username": "alice", "password": "short"}, {"password"}),
        ({"username": "alice", "password": 12345678}, {"password"}),
        ({"username": "alice", "password": "x" * 257}, {"password"}),
        ({"username": "a", "password": "b"}, {"username", "password"}),
    ],
)
def test_register_rejects_each_invalid_field(client, payload, fields):
    response = client.post("/api/auth/register", json=payload)
    assert response.status_code == 400
    body = response.get_json()
    # One problem has its own code (a missing field, missing_field); several are invalid_field together.
    (only,) = fields if len(fields) == 1 else (None,)
    assert body["error"] == ("missing_field" if only and only not in payload else "invalid_field")
    assert set(body["fields"]) == fields
    for field in fields:
        assert field in body["message"]
    # Nothing was created: the same name can still be registered.
    assert client.post("/api/auth/register", json={"username": "alice", "password": PASSWORD}).status_code == 201


def test_login_returns_tokens_and_user(client, auth):
    user = auth.register("bob")
    response = client.post("/api/auth/login", json={"username": "BOB", "password": PASSWORD})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["user"] == user


def test_login_failures_look_the_same(client, auth):
    auth.register("carol")
    wrong_password = client.post("/api/auth/login", json={"username": "carol", "password": "not the password"})
    unknown_user = client.post("/api/auth/login", json={"username": "nobody", "password": PASSWORD})
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert wrong_password.get_json() == unknown_user.get_json()
    assert wrong_password.get_json()["message"] == "Invalid username or password"


def test_login_requires_both_fields(client):
    response = client.post("/api/auth/login", json={"username": "carol"})
    assert response.status_code == 400
    assert response.get_json()["fields"].keys() == {"password"}


def test_me_returns_the_user(client, auth):
    tokens = auth.login()
    response = client.get("/api/auth/me", headers=Auth.bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.get_json() == tokens["user"]


def test_refresh_gives_a_working_access_token(client, auth):
    tokens = auth.login()
    response = client.post("/api/auth/refresh", headers=Auth.bearer(tokens["refresh_token"]))
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert client.get("/api/auth/me", headers=Auth.bearer(body["access_token"])).status_code == 200


def test_refresh_token_is_not_an_access_token(client, auth):
    tokens = auth.login()
    for method, path in [("get", "/api/auth/me"), ("post", "/api/emotions"), ("get", "/api/emotions/current")]:
        response = getattr(client, method)(path, headers=Auth.bearer(tokens["refresh_token"]), json={"emotion": "sad"})
        assert response.status_code == 401, path
        assert response.get_json()["error"] == "wrong_token_type"


def test_access_token_does_not_refresh(client, auth):
    tokens = auth.login()
    response = client.post("/api/auth/refresh", headers=Auth.bearer(tokens["access_token"]))
    assert response.status_code == 401
    assert response.get_json()["error"] == "wrong_token_type"
    assert "refresh token" in response.get_json()["message"]


def test_logout_revokes_the_presented_token_only(client, auth):
    tokens = auth.login()
    other = auth.login(tokens["user"]["username"])
    response = client.post("/api/auth/logout", headers=Auth.bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.get_json() == {"revoked": True, "token_type": "access"}
    again = client.get("/api/auth/me", headers=Auth.bearer(tokens["access_token"]))
    assert again.status_code == 401 and again.get_json()["error"] == "token_revoked"
    assert client.get("/api/auth/me", headers=Auth.bearer(other["access_token"])).status_code == 200


def test_logout_with_a_refresh_token_revokes_it(client, auth):
    tokens = auth.login()
    assert client.post("/api/auth/logout", headers=Auth.bearer(tokens["refresh_token"])).status_code == 200
    response = client.post("/api/auth/refresh", headers=Auth.bearer(tokens["refresh_token"]))
    assert response.status_code == 401 and response.get_json()["error"] == "token_revoked"


def test_revocation_survives_a_restart(make_app):
    first = make_app()
    tokens = Auth(first.test_client()).login()
    assert first.test_client().post("/api/auth/logout", headers=Auth.bearer(tokens["access_token"])).status_code == 200
    # A new app on the same database stands for the restarted service: nothing is kept in memory.
    restarted = make_app().test_client()
    response = restarted.get("/api/auth/me", headers=Auth.bearer(tokens["access_token"]))
    assert response.status_code == 401 and response.get_json()["error"] == "token_revoked"


@pytest.mark.parametrize(
    "header, error",
    [
        (None, "missing_token"),
        ("Bearer", "invalid_token"),
        ("Bearer not.a.jwt", "invalid_token"),
        ("Bearer abc", "invalid_token"),
        ("Token abc", "invalid_token"),
    ],
)
def test_bad_authorization_headers(client, header, error):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/auth/me", headers=headers)
    assert response.status_code == 401
    body = response.get_json()
    assert body["error"] == error
    assert body["message"]


def test_token_signed_with_another_key_is_refused(make_app, client, auth):
    foreign = make_app(JWT_SECRET_KEY="some-other-key-entirely-0123456789")
    tokens = Auth(foreign.test_client()).login()
    response = client.get("/api/auth/me", headers=Auth.bearer(tokens["access_token"]))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_token"
    assert "Signature" in response.get_json()["message"]


def test_expired_token_is_refused(make_app):
    from datetime import timedelta

    app = make_app(JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=1))
    client = app.test_client()
    tokens = Auth(client).login()
    time.sleep(1.5)
    response = client.get("/api/auth/me", headers=Auth.bearer(tokens["access_token"]))
    assert response.status_code == 401
    assert response.get_json()["error"] == "token_expired"


def test_me_for_a_deleted_user(app, client, auth):
    import sqlalchemy as sa

    from emotion_app.extensions import db
    from emotion_app.models import User

    tokens = auth.login()
    with app.app_context():
        db.session.execute(sa.delete(User).where(User.id == int(tokens["user"]["id"])))
        db.session.commit()
    response = client.get("/api/auth/me", headers=Auth.bearer(tokens["access_token"]))
    assert response.status_code == 401 and response.get_json()["error"] == "unknown_user"
