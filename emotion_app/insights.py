"""`/api/emotions/stats` and `/api/emotions/export`: what a user's history adds up to, and all of it."""
from flask import Blueprint, current_app, jsonify, request
from flask_jwt_extended import get_jwt_identity, jwt_required

from . import export, stats
from .contract.bodies import ExportQuery, Stats, StatsQuery
from .contract.openapi import documented
from .http import checked_query
from .timerange import time_range
from .timeutil import utcnow

bp = Blueprint("insights", __name__, url_prefix="/api/emotions")
EXPORT = (
    "The events, oldest first, as an attachment.",
    {
        "text/csv": {"schema": {"type": "string", "description": f"Columns: {', '.join(export.CSV_HEADER)}."}},
        "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}},
    },
)


@bp.get("/stats")
@jwt_required()
@documented("Time and changes per emotion, per hour, day or week", "emotions", query=StatsQuery, answers={200: Stats})
def emotion_stats():
    """Seconds and changes per emotion in each hour, day or week of a range, and over the whole range."""
    now = utcnow()
    bucket = checked_query(StatsQuery).bucket
    start, end, zone = stats.parse_args(request.args, bucket, now)
    emotions = current_app.config["EMOTIONS"]
    return jsonify(stats.summarize(int(get_jwt_identity()), start, end, bucket, zone, now, emotions))


@bp.get("/export")
@jwt_required()
@documented("Download every event as CSV or JSON", "emotions", query=ExportQuery, answers={200: EXPORT})
def export_events():
    """Every event of the user (or those in from/to), oldest first, as a CSV or JSON attachment."""
    fmt = checked_query(ExportQuery).format
    start, end, zone = time_range(request.args)
    return export.download(current_app._get_current_object(), int(get_jwt_identity()), fmt, start, end, zone)
