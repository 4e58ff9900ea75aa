"""Seeding a user's events with chosen server times (the API stamps its own clock)."""
from datetime import datetime, timezone

from sqlalchemy import insert, select, update

from emotion_app.extensions import db
from emotion_app.models import EmotionEvent, User

_users, _events = User.__table__, EmotionEvent.__table__


def utc(text):
    """'2026-11-26T08:00' (or a datetime) as an aware UTC datetime."""
    if isinstance(text, datetime):
        return text.astimezone(timezone.utc)
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def seed_events(app, user_id, events):
    """Insert `events` for `user_id` with consecutive seqs after the user's last one; return their rows.

    Each event is (time, emotion) or a dict with `created_at`, `emotion` and any other column.
    """
    rows = [e if isinstance(e, dict) else {"created_at": e[0], "emotion": e[1]} for e in events]
    with app.app_context():
        last = db.session.scalar(select(_users.c.last_seq).where(_users.c.id == int(user_id)))
        values = [
            {"client_timestamp": None, "client_msg_id": None, "device": None, **row,
             "created_at": utc(row["created_at"]), "user_id": int(user_id), "seq": last + i}
            for i, row in enumerate(rows, start=1)
        ]
        if values:
            db.session.execute(insert(_events), values)
        db.session.execute(update(_users).where(_users.c.id == int(user_id)).values(last_seq=last + len(values)))
        db.session.commit()
        stored = db.session.execute(
            select(_events).where(_events.c.user_id == int(user_id), _events.c.seq > last).order_by(_events.c.seq)
        ).all()
        db.session.commit()
    return stored
