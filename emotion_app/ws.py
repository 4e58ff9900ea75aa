"""`/api/ws`: the live emotion socket.

The token is checked in `before_request`, so a bad one is refused with HTTP 401 before any WebSocket
handshake. After the handshake the socket gets `connection_established`, then every emotion change of
its user; the receive loop validates frames, stores updates and answers pings.
"""
import logging
import time

from flask import Blueprint, current_app, g, request
from flask_jwt_extended import get_jwt, verify_jwt_in_request
from simple_websocket import ConnectionClosed

from . import messages, store
from .errors import ApiError
from .extensions import db, sock
from .hub import CLOSE_TOKEN_EXPIRED, Connection

log = logging.getLogger(__name__)

bp = Blueprint("ws", __name__)


@bp.before_request
def authenticate():
    """Refuse the upgrade with a JSON 401 unless a valid access token came as ?token= or Bearer header."""
    verify_jwt_in_request(locations=["headers", "query_string"])
    claims = get_jwt()
    g.ws_user_id = int(claims["sub"])
    g.ws_jti = claims["jti"]
    g.ws_expires_at = claims["exp"]
    if not current_app.config["WS_COMPRESSION"]:
        # simple-websocket accepts permessage-deflate whenever a client offers it; hiding the offer
        # saves the two zlib streams each compressed socket keeps.
        request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    # The token check used a pooled database connection; hand it back before the socket lives on.
    db.session.remove()


@sock.route("/api/ws", bp=bp)
def emotion_socket(ws):
    """Serve one device until it disconnects, its token expires, or it is closed by the server."""
    app = current_app._get_current_object()
    hub = app.extensions["emotion_hub"]
    conn = Connection(ws, g.ws_user_id, g.ws_jti, app.config["WS_SEND_QUEUE"], app.config["WS_SEND_TIMEOUT"])
    conn.push(messages.connection_established(g.ws_user_id))
    app.extensions["emotion_broker"].start()  # this process's listener, on its first socket
    hub.attach(conn)
    conn.start()
    try:
        _receive_loop(app, ws, conn, g.ws_expires_at)
    except ConnectionClosed:
        pass
    finally:
        hub.detach(conn)
        conn.finish()


def _receive_loop(app, ws, conn, expires_at):
    while not conn.closing:
        remaining = expires_at - time.time()
        if remaining <= 0:
            conn.close(
                CLOSE_TOKEN_EXPIRED,
                "Token expired",
                error=messages.error("Access token has expired: reconnect with a fresh token", code="token_expired"),
            )
            return
        data = ws.receive(timeout=remaining)
        if data is not None and not conn.closing:
            reply = _handle(app, conn, data)
            if reply is not None:
                conn.push(reply)


def _handle(app, conn, data):
    """Act on one client frame; return the frame to answer with, if any."""
    try:
        frame = messages.parse_frame(data)
        if frame["type"] == "ping":
            return messages.pong(frame.get("timestamp"))
        emotion, client_timestamp = messages.validate_update(frame, app.config["EMOTIONS"])
    except messages.FrameError as exc:
        return messages.error(exc.message, code=exc.code)
    try:
        # A fresh app context per operation: its database session ends with it, instead of living
        # (and holding a pooled connection) as long as the socket.
        with app.app_context():
            store.record_emotion(int(conn.user_id), emotion, client_timestamp)
    except ApiError as exc:
        return messages.error(exc.message, code=exc.error)
    # The stored event reaches this socket through the hub like every other device: that is the ack.
    return None
