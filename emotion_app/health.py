"""`/healthz`: the process is alive and serving."""
from flask import Blueprint, jsonify

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Liveness: answers as long as the worker's event loop runs."""
    return jsonify({"status": "ok"})
