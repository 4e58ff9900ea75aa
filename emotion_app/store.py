"""The only writer of emotions, and the reads that go with it.

Every write is one short transaction committed before the event is announced: SQL is the source of
truth, the broker only rings the doorbell. Each write first bumps the user's `last_seq`, which locks
the user's row until commit: one user's events therefore get ids and seqs in commit order, so "every
event after id N" read from SQL never skips one that commits later. The writing itself is done by
groupcommit, so that concurrent updates share a transaction.
"""
import logging

from flask import current_app
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.exc import SQLAlchemyError

from .errors import ApiError
from .extensions import db
from .metrics import DATABASE_ERRORS
from .models import AppState, EmotionEvent, RevokedToken, User, event_payload
from .timeutil import utcnow

log = logging.getLogger(__name__)

PRUNED_THROUGH = "events_pruned_through_id"


def record_emotion(user_id, emotion, client_timestamp=None, client_msg_id=None, device=None, source=None,
                   confidence=None):
    """Store an emotion change for `user_id` (set by the device named `device`) in a request, then publish it;
    return (event dict, created). `source` and `confidence`: see write_event."""
    # End this session's read transaction (the token check) first: its pooled connection is then free
    # for the committer, which is what SQLite's single connection needs.
    db.session.commit()
    return write_event(
        current_app.extensions["emotion_committer"], user_id, emotion, client_timestamp, client_msg_id, device,
        source, confidence,
    )


def write_event(committer, user_id, emotion, client_timestamp=None, client_msg_id=None, device=None, source=None,
                confidence=None):
    """Store an emotion change for `user_id`, set by the device named `device` (or an unnamed one), then
    publish it; return (event dict, created). A detected emotion also records its `source`
    ("detected:text", "detected:face", "detected:text+face") and the detection's `confidence`.

    Concurrent calls share a transaction (see groupcommit). A `client_msg_id` the user already used
    returns the original event with created=False, storing and publishing nothing. Raises
    ApiError(503) when the database cannot store it: nothing is then stored or announced. Needs no
    app context (sockets call it without one).
    """
    try:
        return committer.write(user_id, emotion, client_timestamp, client_msg_id, device, source, confidence)
    except SQLAlchemyError:
        DATABASE_ERRORS.inc()
        log.exception("could not store an emotion event for user %s", user_id)
        raise ApiError(503, "database_unavailable", "Could not store the update, try again") from None


def current_emotion(user_id):
    """Return the user's latest event as a dict, or None when they have none."""
    return user_state(user_id)[0]


_users, _events = User.__table__, EmotionEvent.__table__
# Built once: SQLAlchemy then reuses their compiled form (both run on every socket handshake).
# The latest event is the one whose seq is the user's last_seq (seqs have no gaps, and pruning
# removes a user's oldest events first, so if it is gone, so are all the others).
USER_STATE = (
    select(_users.c.last_seq, _events)
    .outerjoin(_events, (_events.c.user_id == _users.c.id) & (_events.c.seq == _users.c.last_seq))
    .where(_users.c.id == bindparam("uid"))
)
PRUNED_MARK = select(AppState.__table__.c.value).where(AppState.__table__.c.key == PRUNED_THROUGH)


def user_state(user_id, conn=None):
    """What a device needs to be in sync at once: the latest event (or None) and the user's last seq.

    One query, on `conn` if given (else the request's session).
    """
    row = (conn or db.session).execute(USER_STATE, {"uid": user_id}).first()
    if row is None:
        return None, 0
    return (event_payload(row) if row.id is not None else None), row.last_seq


def history(user_id, limit, before=None):
    """Return up to `limit` of the user's events, newest first, older than event id `before` if given."""
    query = select(EmotionEvent).where(EmotionEvent.user_id == user_id)
    if before is not None:
        query = query.where(EmotionEvent.id < before)
    events = db.session.scalars(query.order_by(EmotionEvent.id.desc()).limit(limit)).all()
    return [event.to_dict() for event in events]


def events_after(user_id, limit, since_id=None, after_seq=None):
    """Return up to `limit` of the user's events after event id `since_id` or after `after_seq`, oldest first."""
    query = select(EmotionEvent).where(EmotionEvent.user_id == user_id)
    if since_id is not None:
        query = query.where(EmotionEvent.id > since_id)
    if after_seq is not None:
        query = query.where(EmotionEvent.seq > after_seq)
    events = db.session.scalars(query.order_by(EmotionEvent.id).limit(limit)).all()
    return [event.to_dict() for event in events]


def pruned_through(conn=None):
    """The highest event id that pruning may have deleted (0 when nothing was ever pruned)."""
    return (conn or db.session).execute(PRUNED_MARK).scalar() or 0


def prune(older_than):
    """Delete events created before `older_than` (None: none) and revoked tokens past expiry; return counts.

    Events go by id, up to the newest one that is too old: every id above the recorded mark is kept,
    which is what tells a device whether its `since` can still be served.
    """
    newest_doomed = None
    if older_than is not None:
        newest_doomed = db.session.scalar(
            select(func.max(EmotionEvent.id)).where(EmotionEvent.created_at < older_than)
        )
    events = 0
    if newest_doomed is not None:
        events = db.session.execute(delete(EmotionEvent).where(EmotionEvent.id <= newest_doomed)).rowcount
        mark = db.session.get(AppState, PRUNED_THROUGH)
        if mark is None:
            db.session.add(AppState(key=PRUNED_THROUGH, value=newest_doomed))
        else:
            mark.value = max(mark.value, newest_doomed)
    tokens = db.session.execute(delete(RevokedToken).where(RevokedToken.expires_at < utcnow())).rowcount
    db.session.commit()
    return {"events": events, "revoked_tokens": tokens}
