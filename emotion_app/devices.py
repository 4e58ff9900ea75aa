"""Device names, and `/api/devices`: which devices of the user are connected right now, on every worker and host."""
import unicodedata

from flask import Blueprint, current_app, jsonify
from flask_jwt_extended import get_jwt_identity, jwt_required

from .errors import ApiError

bp = Blueprint("devices", __name__, url_prefix="/api/devices")

# The length of the `device` column of emotion_events.
MAX_NAME_LENGTH = 64


def device_name(raw):
    """Return the name a device gave itself, normalised, or None for an unnamed device; raise a 400 ApiError.

    Control and format characters are dropped (whitespace ones count as spaces), runs of whitespace
    become one space, and the ends are trimmed. Nothing is escaped: names are shown by whoever reads them.
    """
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ApiError(
            400, "invalid_field", "Field 'device' must be a string (the device's name) or null", field="device"
        )
    # Tabs and newlines are control characters too: they separate words, so they become spaces.
    kept = "".join(ch for ch in raw if ch.isspace() or not unicodedata.category(ch).startswith("C"))
    name = " ".join(kept.split())
    if len(name) > MAX_NAME_LENGTH:
        raise ApiError(
            400, "invalid_field", f"Field 'device' must be at most {MAX_NAME_LENGTH} characters", field="device"
        )
    return name or None


@bp.get("")
@jwt_required()
def online():
    """The open sockets of the user: how many, and each one's id and name."""
    user_id = get_jwt_identity()
    members = current_app.extensions["emotion_broker"].presence_list(user_id)
    if members is None:
        raise ApiError(503, "broker_unavailable", "Presence is unknown while the broker is unreachable, try again")
    return jsonify({"user_id": user_id, "devices": len(members), "online": members})
