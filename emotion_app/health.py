"""`/healthz` (liveness) and `/readyz` (readiness: database and broker reachable)."""
from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from .errors import error_response
from .extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Liveness: answers as long as the worker's event loop runs."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: 200 when the database and the broker answer, else 503 saying which does not."""
    checks = {"database": _database_problem(), "broker": current_app.extensions["emotion_broker"].health()}
    if not any(checks.values()):
        return jsonify({"status": "ready", "database": "ok", "broker": "ok"})
    broken = [name for name, problem in checks.items() if problem]
    return error_response(
        503,
        "not_ready",
        f"Not ready: {' and '.join(broken)} unavailable",
        checks={name: problem or "ok" for name, problem in checks.items()},
    )


def _database_problem():
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001
            pass
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"
    return None
