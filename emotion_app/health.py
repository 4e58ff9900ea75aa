"""`/healthz` (liveness) and `/readyz` (readiness: database and broker reachable, not draining)."""
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
    """Readiness: 200 when the database and the broker answer and the worker is not draining, else 503
    saying what is wrong."""
    checks = {
        "database": _database_problem(),
        "broker": current_app.extensions["emotion_broker"].health(),
        "draining": "restarting: sockets were closed with 1012" if current_app.extensions["emotion_hub"].draining else None,
    }
    if not any(checks.values()):
        return jsonify({"status": "ready", "database": "ok", "broker": "ok", "draining": "ok"})
    broken = [name for name, problem in checks.items() if problem]
    return error_response(
        503,
        "not_ready",
        f"Not ready: {' and '.join(broken)} " + ("in progress" if broken == ["draining"] else "unavailable"),
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
