"""`/api/emotions`: set the current emotion over HTTP, read it, and page through history."""
from flask import Blueprint, current_app, jsonify, request
from flask_jwt_extended import get_jwt_identity, jwt_required

from . import store
from .devices import device_name
from .errors import ApiError
from .http import json_object
from .messages import FrameError, validate_update

bp = Blueprint("emotions", __name__, url_prefix="/api/emotions")


@bp.post("")
@jwt_required()
def post_emotion():
    """Store an emotion and push it to every device of the user: the same path as a socket update."""
    body = json_object()
    try:
        emotion, client_timestamp, client_msg_id = validate_update(body, current_app.config["EMOTIONS"])
    except FrameError as exc:
        raise ApiError(400, exc.code, exc.message, field=exc.field) from None
    device = device_name(body.get("device"))
    event, created = store.record_emotion(int(get_jwt_identity()), emotion, client_timestamp, client_msg_id, device)
    if not created:
        # A repeat of a client_msg_id: the original event, nothing new stored.
        return jsonify({**event, "duplicate": True}), 200
    return jsonify(event), 201


@bp.get("/current")
@jwt_required()
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


def _positive_int(name, default=None, maximum=None):
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, "invalid_parameter", f"Query parameter '{name}' must be a positive whole number", field=name)
    value = int(raw)
    return min(value, maximum) if maximum else value


@bp.get("")
@jwt_required()
def list_emotions():
    """The user's events, newest first: `limit` (capped) per page, `before` an event id to page on."""
    cap = current_app.config["HISTORY_MAX_LIMIT"]
    limit = _positive_int("limit", default=min(50, cap), maximum=cap)
    before = _positive_int("before")
    events = store.history(int(get_jwt_identity()), limit, before)
    next_before = events[-1]["id"] if len(events) == limit else None
    return jsonify({"events": events, "limit": limit, "next_before": next_before})
