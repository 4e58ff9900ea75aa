"""`/api/emotions`: set the current emotion over HTTP, read it, and page through history."""
from flask import Blueprint, current_app, jsonify
from flask_jwt_extended import get_jwt_identity, jwt_required

from . import store
from .contract.bodies import CurrentEmotion, EmotionChange, Event, History, HistoryQuery
from .contract.openapi import documented
from .http import checked_body, checked_query

bp = Blueprint("emotions", __name__, url_prefix="/api/emotions")


@bp.post("")
@jwt_required()
@documented(
    "Set the current emotion", "emotions", body=EmotionChange,
    answers={
        201: Event,
        200: ("A repeat of a `client_msg_id`: the original event, marked `duplicate`; nothing stored.", Event),
    },
)
def post_emotion():
    """Store an emotion and push it to every device of the user: the same path as a socket update."""
    body = checked_body(EmotionChange)
    event, created = store.record_emotion(
        int(get_jwt_identity()), body.emotion, body.timestamp, body.client_msg_id, body.device
    )
    if not created:
        # A repeat of a client_msg_id: the original event, nothing new stored.
        return jsonify({**event, "duplicate": True}), 200
    return jsonify(event), 201


@bp.get("/current")
@jwt_required()
@documented("The current emotion", "emotions", answers={200: CurrentEmotion})
def current():
    """The user's latest emotion; every field is null when none was set yet."""
    user_id = get_jwt_identity()
    event = store.current_emotion(int(user_id))
    return jsonify(
        event
        or {
            "id": None, "seq": None, "user_id": user_id, "emotion": None, "timestamp": None, "client_timestamp": None,
            "device": None,
        }
    )


@bp.get("")
@jwt_required()
@documented("History, newest first, a page at a time", "emotions", query=HistoryQuery, answers={200: History})
def list_emotions():
    """The user's events, newest first: `limit` (capped) per page, `before` an event id to page on."""
    cap = current_app.config["HISTORY_MAX_LIMIT"]
    query = checked_query(HistoryQuery)
    limit = min(query.limit or 50, cap)
    events = store.history(int(get_jwt_identity()), limit, query.before)
    next_before = events[-1]["id"] if len(events) == limit else None
    return jsonify({"events": events, "limit": limit, "next_before": next_before})
