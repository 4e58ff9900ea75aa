"""`/api/devices`: how many devices of the user are connected right now, on every worker and host."""
from flask import Blueprint, current_app, jsonify
from flask_jwt_extended import get_jwt_identity, jwt_required

from .errors import ApiError

bp = Blueprint("devices", __name__, url_prefix="/api/devices")


@bp.get("")
@jwt_required()
def online():
    """The number of open sockets of the user."""
    user_id = get_jwt_identity()
    count = current_app.extensions["emotion_broker"].presence_count(user_id)
    if count is None:
        raise ApiError(503, "broker_unavailable", "Presence is unknown while the broker is unreachable, try again")
    return jsonify({"user_id": user_id, "devices": count})
