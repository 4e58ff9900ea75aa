"""Retention: the prune command, the mark it leaves, and the migration that numbers old events."""
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from emotion_app import store
from emotion_app.extensions import db
from emotion_app.models import EmotionEvent, RevokedToken
from tests.conftest import Auth


def _age(app, ids, when):
    with app.app_context():
        db.session.execute(sa.update(EmotionEvent).where(EmotionEvent.id.in_(ids)).values(created_at=when))
        db.session.commit()


def test_prune_command_deletes_old_events_and_expired_revocations(app, client, auth):
    tokens = auth.login()
    headers = Auth.bearer(tokens["access_token"])
    ids = [client.post("/api/emotions", json={"emotion": e}, headers=headers).get_json()["id"] for e in ("happy", "sad", "angry")]
    _age(app, ids[:2], datetime.now(timezone.utc) - timedelta(days=40))
    client.post("/api/auth/logout", headers=Auth.bearer(tokens["refresh_token"]))
    with app.app_context():
        db.session.execute(sa.update(RevokedToken).values(expires_at=datetime(2000, 1, 1)))
        db.session.commit()

    result = app.test_cli_runner().invoke(args=["prune", "--days", "30"])
    assert result.exit_code == 0, result.output
    assert "deleted 2 events older than 30 days and 1 expired revocations" in result.output
    remaining = client.get("/api/emotions", headers=headers).get_json()["events"]
    assert [e["id"] for e in remaining] == [ids[2]]
    with app.app_context():
        assert store.pruned_through() == ids[1]
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RevokedToken)) == 0


def test_default_retention_keeps_events_forever(app, client, auth):
    headers = Auth.bearer(auth.login()["access_token"])
    event = client.post("/api/emotions", json={"emotion": "sad"}, headers=headers).get_json()
    _age(app, [event["id"]], datetime(2000, 1, 1))
    result = app.test_cli_runner().invoke(args=["prune"])
    assert result.exit_code == 0 and "kept forever" in result.output
    assert len(client.get("/api/emotions", headers=headers).get_json()["events"]) == 1
    with app.app_context():
        assert store.pruned_through() == 0


def test_configured_retention_is_the_default(make_app):
    app = make_app(RETENTION_DAYS=1)
    client = app.test_client()
    headers = Auth.bearer(Auth(client).login()["access_token"])
    event = client.post("/api/emotions", json={"emotion": "sad"}, headers=headers).get_json()
    _age(app, [event["id"]], datetime.now(timezone.utc) - timedelta(days=2))
    assert "deleted 1 events older than 1 days" in app.test_cli_runner().invoke(args=["prune"]).output


def test_migration_numbers_existing_events_per_user(app):
    with app.app_context():
        downgrade(revision="0001_initial")
        conn = db.session.connection()
        for name in ("ann", "bob"):
            conn.execute(
                sa.text("INSERT INTO users (username, username_key, password_hash, created_at) VALUES (:n, :n, 'x', :t)"),
                {"n": name, "t": datetime(2024, 1, 1)},
            )
        users = dict(conn.execute(sa.text("SELECT username, id FROM users")).all())
        for name in ("ann", "bob", "ann", "ann", "bob"):
            conn.execute(
                sa.text("INSERT INTO emotion_events (user_id, emotion, created_at) VALUES (:u, 'sad', :t)"),
                {"u": users[name], "t": datetime(2024, 1, 1)},
            )
        db.session.commit()
        upgrade()
        rows = db.session.execute(sa.text("SELECT user_id, seq FROM emotion_events ORDER BY id")).all()
        assert [(r.user_id, r.seq) for r in rows] == [
            (users["ann"], 1), (users["bob"], 1), (users["ann"], 2), (users["ann"], 3), (users["bob"], 2)
        ]
        last = dict(db.session.execute(sa.text("SELECT username, last_seq FROM users")).all())
        assert last == {"ann": 3, "bob": 2}
        db.session.commit()


def test_ids_are_never_reused_after_pruning(app, client, auth):
    headers = Auth.bearer(auth.login()["access_token"])
    ids = [client.post("/api/emotions", json={"emotion": "sad"}, headers=headers).get_json()["id"] for _ in range(3)]
    _age(app, ids, datetime(2000, 1, 1))
    assert "deleted 3 events" in app.test_cli_runner().invoke(args=["prune", "--days", "1"]).output
    # Every event is gone; the next one still gets a larger id than any before it.
    new = client.post("/api/emotions", json={"emotion": "happy"}, headers=headers).get_json()
    assert new["id"] > ids[-1]
    assert new["seq"] == 4
