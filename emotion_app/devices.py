"""`/api/devices`: which devices of the user are connected right now, on every worker and host."""
from flask import Blueprint, current_app, jsonify
from flask_jwt_extended import get_jwt_identity, jwt_required

from .contract.bodies import OnlineDevices
from .contract.openapi import documented
from .errors import ApiError

bp = Blueprint("devices", __name__, url_prefix="/api/devices")


@bp.get("")
@jwt_required()
@documented("The devices connected now", "devices", answers={200: OnlineDevices})
def online():
    """The open sockets of the user: how many, and each one's id and name."""
    user_id = get_jwt_identity()
    members = current_app.extensions["emotion_broker"].presence_list(user_id)
    if members is None:
        raise ApiError(503, "broker_unavailable", "Presence is unknown while the broker is unreachable, try again")
    return jsonify({"user_id": user_id, "devices": len(members), "online": members})
