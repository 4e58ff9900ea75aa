"""What operators and load balancers ask: `/healthz` (liveness), `/readyz` (readiness: database and broker
reachable, not draining; it also says how emotion detection stands) and `/metrics` (Prometheus).

/metrics is for the operator's scraper only: with METRICS_TOKEN set it needs that token as Bearer;
without it, it answers loopback and private-network addresses only.
"""
import hmac
import ipaddress

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import text

from . import metrics as m
from .contract.bodies import Health, Ready
from .contract.openapi import documented
from .errors import ApiError, error_response
from .extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@documented("Liveness", "operations", auth=None, answers={200: Health})
def healthz():
    """Liveness: answers as long as the worker's event loop runs."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@documented("Readiness", "operations", auth=None, answers={200: Ready})
def readyz():
    """Readiness: 200 when the database and the broker answer and the worker is not draining, else 503
    saying what is wrong.

    `detection` (off, not_loaded, ready, or unavailable: why) never makes the worker unready: everything
    else works without it, and a lazy worker loads the models on its first detection.
    """
    detection = current_app.extensions["emotion_detector"].status()
    checks = {
        "database": _database_problem(),
        "broker": current_app.extensions["emotion_broker"].health(),
        "draining": "restarting: sockets were closed with 1012" if current_app.extensions["emotion_hub"].draining else None,
    }
    if not any(checks.values()):
        return jsonify({"status": "ready", "database": "ok", "broker": "ok", "draining": "ok", "detection": detection})
    broken = [name for name, problem in checks.items() if problem]
    return error_response(
        503,
        "not_ready",
        f"Not ready: {' and '.join(broken)} " + ("in progress" if broken == ["draining"] else "unavailable"),
        checks={name: problem or "ok" for name, problem in checks.items()},
        detection=detection,
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


@bp.get("/metrics")
@documented(
    "Prometheus metrics", "operations", auth="metrics", errors=(401, 403),
    answers={200: ("Every worker's metrics.", {m.CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}})},
)
def metrics():
    """The metrics of every worker in Prometheus text format (token or private address required)."""
    _authorize_scraper()
    return Response(m.render(), mimetype=m.CONTENT_TYPE_LATEST)


def _authorize_scraper():
    token = current_app.config["METRICS_TOKEN"]
    if token:
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), token.encode()):
            raise ApiError(401, "invalid_token", "/metrics needs 'Authorization: Bearer <METRICS_TOKEN>'")
        return
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        address = None
    if address is None or not (address.is_loopback or address.is_private):
        raise ApiError(403, "forbidden", "/metrics answers private addresses only, unless METRICS_TOKEN is set")
