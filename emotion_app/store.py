"""The only writer of emotions, and the reads that go with it.

Every write is one short transaction committed before the event is announced: SQL is the source of
truth, the broker only rings the doorbell.
"""
import logging

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from .errors import ApiError
from .extensions import db
from .models import EmotionEvent

log = logging.getLogger(__name__)


def record_emotion(user_id, emotion, client_timestamp=None):
    """Store an emotion change for `user_id`, then publish it; return the stored event as a dict.

    Raises ApiError(503) when the database cannot store it: nothing is then stored or announced.
    """
    event = EmotionEvent(user_id=user_id, emotion=emotion, client_timestamp=client_timestamp)
    try:
        db.session.add(event)
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.exception("could not store an emotion event for user %s", user_id)
        raise ApiError(503, "database_unavailable", "Could not store the update, try again") from None
    payload = event.to_dict()
    current_app.extensions["emotion_broker"].publish({"kind": "event", "user_id": str(user_id), "event": payload})
    return payload


def current_emotion(user_id):
    """Return the user's latest event as a dict, or None when they have none."""
    event = db.session.scalars(
        select(EmotionEvent).where(EmotionEvent.user_id == user_id).order_by(EmotionEvent.id.desc()).limit(1)
    ).first()
    return event.to_dict() if event else None


def history(user_id, limit, before=None):
    """Return up to `limit` of the user's events, newest first, older than event id `before` if given."""
    query = select(EmotionEvent).where(EmotionEvent.user_id == user_id)
    if before is not None:
        query = query.where(EmotionEvent.id < before)
    events = db.session.scalars(query.order_by(EmotionEvent.id.desc()).limit(limit)).all()
    return [event.to_dict() for event in events]
