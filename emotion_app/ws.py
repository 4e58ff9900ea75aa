"""`/api/ws`: the live emotion socket.

The token (and `?since=`) are checked in `before_request`, so a bad one is refused with an HTTP error
before any WebSocket handshake. After the handshake the socket gets `connection_established` with the
user's state, then the events it missed (with `since`), then every emotion change of its user; the
receive loop validates frames, stores updates and answers pings.
"""
import logging
import time

from flask import Blueprint, current_app, g, request
from flask_jwt_extended import get_jwt, verify_jwt_in_request
from simple_websocket import ConnectionClosed
from sqlalchemy.exc import SQLAlchemyError

from . import messages, store
from .errors import ApiError
from .extensions import db, sock
from .hub import CLOSE_INTERNAL_ERROR, CLOSE_TOKEN_EXPIRED, Connection

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
    g.ws_since = None
    if "since" in request.args:
        try:
            g.ws_since = messages.parse_since(request.args["since"])
        except messages.FrameError as exc:
            raise ApiError(400, exc.code, exc.message, field="since") from None
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
    broker = app.extensions["emotion_broker"]
    user_id = g.ws_user_id
    conn = Connection(
        ws,
        user_id,
        g.ws_jti,
        app.config["WS_SEND_QUEUE"],
        app.config["WS_SEND_TIMEOUT"],
        fetch=lambda limit, **after: _in_context(app, store.events_after, user_id, limit, **after),
        replay_limit=app.config["REPLAY_LIMIT"],
    )
    broker.start()  # this process's listener, on its first socket
    # Attach before reading the state: an event committed after the read is then queued, and one
    # committed before it is in the state (the writer skips it by its seq).
    hub.attach(conn)
    devices = broker.presence_join(user_id, conn.id)
    try:
        try:
            current, last_seq, pruned = _in_context(app, _connect_state, user_id, g.ws_since is not None)
        except SQLAlchemyError:
            log.warning("database unavailable while user %s connected", user_id)
            ws.send(messages.error("Database unavailable, reconnect shortly", code="database_unavailable"))
            ws.close(reason=CLOSE_INTERNAL_ERROR, message="Database unavailable")
            return
        since = g.ws_since
        # The writer has not started: nothing else writes to the socket yet.
        ws.send(messages.connection_established(user_id, current, current["id"] if current else None, devices))
        if since is not None and since < pruned:
            ws.send(_too_old(since))
            since = None
        broker.publish({"kind": "presence", "user_id": str(user_id), "devices": devices, "change": "connected", "member": conn.id})
        conn.start(last_seq, since)
        _receive_loop(app, ws, conn, g.ws_expires_at)
    except ConnectionClosed:
        pass
    finally:
        hub.detach(conn)
        devices = broker.presence_leave(user_id, conn.id)
        broker.publish({"kind": "presence", "user_id": str(user_id), "devices": devices, "change": "disconnected", "member": conn.id})
        conn.finish()


def _in_context(app, func, *args, **kwargs):
    # A fresh app context per operation: its database session ends with it, instead of living (and
    # holding a pooled connection) as long as the socket.
    with app.app_context():
        return func(*args, **kwargs)


def _connect_state(user_id, resuming):
    current, last_seq = store.user_state(user_id)
    return current, last_seq, store.pruned_through() if resuming else 0


def _too_old(since):
    return messages.error(
        f"Events after id {since} are no longer kept: reload the current state (it is in connection_established)",
        code="since_too_old",
    )


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
        if frame["type"] == "sync":
            return _sync(app, conn, messages.parse_since(frame.get("since")))
        emotion, client_timestamp, client_msg_id = messages.validate_update(frame, app.config["EMOTIONS"])
    except messages.FrameError as exc:
        return messages.error(exc.message, code=exc.code)
    try:
        committer = app.extensions["emotion_committer"]
        event, created = store.write_event(committer, int(conn.user_id), emotion, client_timestamp, client_msg_id)
    except ApiError as exc:
        return messages.error(exc.message, code=exc.error)
    if not created:
        # A repeat of a client_msg_id: nothing new was stored; answer the sender with the original.
        return messages.encode({"type": "emotion_update", **event, "duplicate": True})
    # The stored event reaches this socket through the hub like every other device: that is the ack.
    return None


def _sync(app, conn, since):
    try:
        pruned = _in_context(app, store.pruned_through)
    except SQLAlchemyError:
        return messages.error("Database unavailable, try again", code="database_unavailable")
    if since < pruned:
        return _too_old(since)
    conn.sync(since)
    return None
