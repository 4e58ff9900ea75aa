"""`/api/emotions/stats`: what a user's history adds up to."""
from flask import Blueprint, current_app, jsonify, request
from flask_jwt_extended import get_jwt_identity, jwt_required

from . import stats
from .timeutil import utcnow

bp = Blueprint("insights", __name__, url_prefix="/api/emotions")


@bp.get("/stats")
@jwt_required()
def emotion_stats():
    """Seconds and changes per emotion in each hour, day or week of a range, and over the whole range."""
    now = utcnow()
    start, end, bucket, zone = stats.parse_args(request.args, now)
    emotions = current_app.config["EMOTIONS"]
    return jsonify(stats.summarize(int(get_jwt_identity()), start, end, bucket, zone, now, emotions))

