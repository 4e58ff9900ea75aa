"""`/api/emotions/stats` and `/api/emotions/export`: what a user's history adds up to, and all of it."""
from flask import Blueprint, current_app, jsonify, request
from flask_jwt_extended import get_jwt_identity, jwt_required

from . import export, stats
from .contract.bodies import ExportQuery, StatsQuery
from .http import checked_query
from .timerange import time_range
from .timeutil import utcnow

bp = Blueprint("insights", __name__, url_prefix="/api/emotions")


@bp.get("/stats")
@jwt_required()
def emotion_stats():
    """Seconds and changes per emotion in each hour, day or week of a range, and over the whole range."""
    now = utcnow()
    bucket = checked_query(StatsQuery).bucket
    start, end, zone = stats.parse_args(request.args, bucket, now)
    emotions = current_app.config["EMOTIONS"]
    return jsonify(stats.summarize(int(get_jwt_identity()), start, end, bucket, zone, now, emotions))


@bp.get("/export")
@jwt_required()
def export_events():
    """Every event of the user (or those in from/to), oldest first, as a CSV or JSON attachment."""
    fmt = checked_query(ExportQuery).format
    start, end, zone = time_range(request.args)
    return export.download(current_app._get_current_object(), int(get_jwt_identity()), fmt, start, end, zone)
