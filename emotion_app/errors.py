"""One JSON error shape for every HTTP error.

    {"status": 400, "error": "invalid_field", "message": "...", ...extra fields}

`error` is a stable machine-readable code, `message` a sentence for people; some errors add fields
(`fields` for validation, `retry_after` for rate limits).
"""
import logging
import math
import time

from flask import jsonify, request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException
from werkzeug.routing.exceptions import WebsocketMismatch
from wsproto.utilities import RemoteProtocolError

from .extensions import db, limiter
from .metrics import DATABASE_ERRORS, RATE_LIMITED

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error raised by a view, rendered as the JSON error shape."""

    def __init__(self, status, error, message, **extra):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.extra = extra


def error_response(status, error, message, **extra):
    """Build a JSON error response in the one shape."""
    body = {"status": status, "error": error, "message": message, **extra}
    response = jsonify(body)
    response.status_code = status
    return response


# Codes for the HTTP errors Werkzeug raises by itself (unknown route, wrong method, body too large ...).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


def retry_after():
    """Seconds until the rate limit that refused the current request lets it through (at least 1)."""
    current = limiter.current_limit
    if current is None:
        return 1
    return max(1, math.ceil(current.reset_at - time.time()))


def register_error_handlers(app):
    """Render every error, ours and Werkzeug's, as the JSON shape; never an HTML page or a traceback."""

    @app.errorhandler(ApiError)
    def handle_api_error(exc):
        response = error_response(exc.status, exc.error, exc.message, **exc.extra)
        if exc.status == 429 and "retry_after" in exc.extra:
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
        return response

    @app.errorhandler(WebsocketMismatch)
    def handle_not_websocket(_exc):
        return error_response(
            400, "websocket_required", "This endpoint only accepts WebSocket upgrade requests (ws:// or wss://)"
        )

    @app.errorhandler(RemoteProtocolError)
    def handle_bad_handshake(exc):
        # wsproto refused the upgrade request before any response was sent.
        return error_response(400, "invalid_handshake", f"Invalid WebSocket handshake: {str(exc)[:200]}")

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc):
        status = exc.code or 500
        message = exc.description or exc.name
        extra = {}
        if status == 413:
            # This request's cap: some routes (detection's uploads) allow more than MAX_BODY_BYTES.
            message = f"Request body is larger than {request.max_content_length} bytes"
        if status == 429:
            RATE_LIMITED.labels(request.endpoint or "unknown").inc()
            extra["retry_after"] = retry_after()
            message = f"Too many requests ({exc.description}): try again in {extra['retry_after']} s"
        response = error_response(status, HTTP_CODES.get(status, "http_error"), message, **extra)
        if status == 429:
            response.headers["Retry-After"] = str(extra["retry_after"])
        if status == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    def handle_database_down(exc):
        # The database is unreachable or overloaded: nothing was stored, and trying again later works.
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001 - the connection may be gone for good
            pass
        DATABASE_ERRORS.inc()
        log.warning("database unavailable: %s: %s", exc.__class__.__name__, str(exc).splitlines()[0][:300])
        return error_response(503, "database_unavailable", "Database unavailable, try again shortly")

    @app.errorhandler(Exception)
    def handle_unexpected(exc):
        # A failed transaction must not leak into the next request on this session.
        db.session.rollback()
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Internal server error")
