"""`/api/ws`: the live emotion socket.

The origin, the token or ticket, `?since=`, `?device=` and the capacity are checked in `before_request`,
so a refused request gets an HTTP error before any WebSocket handshake. After the handshake the socket
gets `connection_established` with the user's state, then the events it missed (with `since`), then
every emotion change of its user; the receive loop validates frames, stores updates, answers pings,
warns before the token expires (`token_expiring`) and takes a newer token in-band (`refresh`).
"""
import functools
import logging
import math
import time
from datetime import datetime, timezone

from flask import Blueprint, current_app, g, request
from flask.globals import request_ctx
from flask_jwt_extended import decode_token, get_jwt, verify_jwt_in_request
from flask_jwt_extended.internal_utils import verify_token_type
from simple_websocket import ConnectionClosed
from sqlalchemy.exc import SQLAlchemyError

from . import logs, messages, store, tickets, wsreader
from .auth import access_claims, revocation
from .contract.frames import SocketQuery
from .detection import request as detection
from .errors import ApiError
from .extensions import db, read_connection, sock
from .http import checked_query
from .hub import CLOSE_INTERNAL_ERROR, CLOSE_POLICY_VIOLATION, CLOSE_TOKEN_EXPIRED, Connection
from .metrics import DATABASE_ERRORS, FIRST_STATES, FRAMES, HANDSHAKES, RATE_LIMITED, SOCKETS_OPEN
from .ratelimit import FrameLimiter, limit_handshakes
from .security import origin_allowed
from .stacks import apart

log = logging.getLogger(__name__)

bp = Blueprint("ws", __name__)
# Looked up once, not on every handshake.
ACCEPTED = HANDSHAKES.labels("accepted")
HELD_STATE, READ_STATE = FIRST_STATES.labels("held"), FIRST_STATES.labels("database")
FRAME_COUNTERS = {}  # frame type -> its FRAMES child


@bp.before_request
def authenticate():
    """Refuse the upgrade with a JSON error, before any handshake, unless the request may have a socket.

    In order: another site's page (403), a bad ticket or token (401), a bad `since` or `device` (400), a
    worker that is restarting or full (503), a user with too many sockets (429). The handshake rate per
    address is checked before all of these (ratelimit.py).
    """
    origin = request.headers.get("Origin")
    if not origin_allowed(origin):
        raise ApiError(
            403, "origin_not_allowed", f"Origin {origin[:100]!r} may not open sockets here (see ALLOWED_ORIGINS)"
        )
    by_ticket = "ticket" in request.args
    # Apart: the token check goes deep, and the handler's stack lives as long as the socket (stacks.py).
    claims = apart(_ticket_claims if by_ticket else _token_claims)
    logs.bind(user_id=claims["sub"])
    g.ws_user_id = int(claims["sub"])
    g.ws_jti, g.ws_sid, g.ws_expires_at = claims["jti"], claims.get("sid"), claims["exp"]
    query = checked_query(SocketQuery)
    g.ws_since = query.since
    # A name in the URL wins over the one the ticket was made with (already normalised then).
    g.ws_device = query.device or (claims.get("device") if by_ticket else None)
    _check_capacity(g.ws_user_id)
    if not current_app.config["WS_COMPRESSION"]:
        # simple-websocket accepts permessage-deflate whenever a client offers it; hiding the offer
        # saves the two zlib streams each compressed socket keeps.
        request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    # The token check used a pooled database connection; hand it back before the socket lives on.
    db.session.remove()


def _token_claims():
    token = request.args.get("token")
    if not token or "Authorization" in request.headers:
        # A header wins over ?token=, as flask-jwt-extended decides.
        verify_jwt_in_request(locations=["headers", "query_string"])
        return get_jwt()
    # ?token= alone, the way browsers connect: the checks verify_jwt_in_request makes, in its order and
    # with its errors, without its second, unverified decode of the token's header for callbacks this
    # service does not register.
    claims = decode_token(token)
    verify_token_type(claims, refresh=False)
    logs.bind(user_id=claims.get("sub"))  # as for every authenticated request (auth.register_jwt_callbacks)
    return _not_revoked(claims)


def _ticket_claims():
    claims = tickets.redeem(request.args["ticket"])
    if "Authorization" in request.headers:
        # A ticket is its user's alone: presented beside another user's token, it is refused.
        verify_jwt_in_request(locations=["headers"])
        if get_jwt()["sub"] != claims["sub"]:
            raise ApiError(401, "invalid_ticket", "This ticket belongs to another user")
    return _not_revoked(claims)


def _not_revoked(claims):
    """`claims`, unless their token has been revoked (401, saying why)."""
    revoked = revocation(claims)
    if revoked:
        raise ApiError(401, *revoked)
    return claims


def _check_capacity(user_id):
    config = current_app.config
    hub = current_app.extensions["emotion_hub"]
    if hub.draining:
        raise ApiError(
            503, "draining", "This server is restarting: connect again (another server takes over)", retry_after=1
        )
    if hub.count() >= config["WS_MAX_SOCKETS"]:
        log.warning("refusing a socket: this worker holds %d (WS_MAX_SOCKETS)", hub.count())
        raise ApiError(503, "server_full", "This server holds all the sockets it can: try again shortly", retry_after=5)
    limit = config["WS_MAX_SOCKETS_PER_USER"]
    if limit and (current_app.extensions["emotion_broker"].presence_count(user_id) or 0) >= limit:
        RATE_LIMITED.labels("sockets_per_user").inc()
        raise ApiError(
            429,
            "too_many_sockets",
            f"This user has {limit} sockets open already (the most allowed): close one first",
            retry_after=5,
        )


limit_handshakes(bp)


@bp.after_request
def count_refusal(response):
    """Count a refused handshake by its error code (accepted ones are counted once established)."""
    if response.status_code >= 400:
        body = response.get_json(silent=True) or {}
        HANDSHAKES.labels(body.get("error") or str(response.status_code)).inc()
    return response


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
        fetch=functools.partial(_in_context, app, store.events_after, user_id),  # (limit, **after)
        replay_limit=app.config["REPLAY_LIMIT"],
        sid=g.ws_sid,
        name=g.ws_device,
        expires_at=g.ws_expires_at,
    )
    broker.start()  # this process's listener, on its first socket
    # Attach before reading the state: an event committed after the read is then queued, and one
    # committed before it is in the state (the writer skips it by its seq).
    hub.attach(conn)
    SOCKETS_OPEN.inc()
    online = broker.presence_join(user_id, conn.id, conn.name)
    try:
        try:
            current, last_seq, pruned = _first_state(hub.states, conn.user_id, g.ws_since is not None)
        except SQLAlchemyError:
            DATABASE_ERRORS.inc()
            HANDSHAKES.labels("database_unavailable").inc()
            log.warning("database unavailable while user %s connected", user_id)
            ws.send(messages.error("Database unavailable, reconnect shortly", code="database_unavailable"))
            ws.close(reason=CLOSE_INTERNAL_ERROR, message="Database unavailable")
            return
        since = g.ws_since
        # The writer has not started: nothing else writes to the socket yet.
        conn.send_first(
            messages.connection_established(user_id, current, current["id"] if current else None, conn.device, online)
        )
        ACCEPTED.inc()
        logs.without_caller(
            log, logging.INFO, "socket open: %s device(s) of the user online", len(online) if online is not None else None
        )
        if since is not None and since < pruned:
            ws.send(_too_old(since))
            since = None
        _announce(broker, conn, "connected", online)
        del current, online  # for the first frames only: not kept while the socket lives
        conn.start(last_seq, since)
        _shed_handshake()
        _receive_loop(app, ws, conn)
    except ConnectionClosed:
        pass
    finally:
        hub.detach(conn)
        SOCKETS_OPEN.dec()
        # The server's code when it closed the socket, else the device's (1005: it gave none).
        code = conn.close_code or getattr(ws, "close_reason", None)
        log.info("socket closed: code %s", int(code) if isinstance(code, int) else code)
        _announce(broker, conn, "disconnected", broker.presence_leave(user_id, conn.id))
        conn.finish()


def _announce(broker, conn, change, online):
    """Tell the user's other devices, on every worker, that `conn` came or went.

    `online` is the user's list across all workers; when it names no other device there is no one to
    tell (a device that joins later learns of this one from its own `connection_established`). While
    presence is unknown (None), everyone is told.
    """
    if online is not None and all(device["id"] == conn.id for device in online):
        return
    broker.publish(_presence(conn, change, online))


def _shed_handshake():
    """Drop what the request context would keep for the socket's whole life though only the handshake
    needed it: the decoded token and its header (flask-jwt-extended keeps them in `g`), the parsed query
    string (the token again) and the URL adapter that matched the route."""
    for name in ("_jwt_extended_jwt", "_jwt_extended_jwt_header", "_jwt_extended_jwt_user"):
        g.pop(name, None)
    request.__dict__.pop("args", None)  # werkzeug caches it there; asked again, it would parse again
    request_ctx.url_adapter = None  # the route is matched; nothing builds URLs on a socket


def _presence(conn, change, online):
    # `member` and `devices` are what workers of the previous release read.
    return {
        "kind": "presence",
        "user_id": conn.user_id,
        "change": change,
        "device": conn.device,
        "online": online,
        "devices": len(online) if online is not None else None,
        "member": conn.id,
    }


def _in_context(app, func, *args, **kwargs):
    # A fresh app context per operation: its database session ends with it, instead of living (and
    # holding a pooled connection) as long as the socket.
    with app.app_context():
        return func(*args, **kwargs)


def _first_state(states, user_id, resuming):
    """The user's latest event (or None), last seq, and (when resuming) the pruning mark, for the socket's
    first frame: held by this worker when it read them lately (heldstate.py), else read now."""
    held = None if resuming else states.get(user_id)
    if held is not None:
        HELD_STATE.inc()
        return (*held, 0)
    READ_STATE.inc()
    mark = states.reading(user_id)
    try:
        current, last_seq, pruned = apart(_read_state, int(user_id), resuming)
    except BaseException:
        states.abandon(user_id)
        raise
    states.confirm(mark, user_id, current, last_seq)
    return current, last_seq, pruned


def _read_state(user_id, resuming):
    # A connection of its own, handed back at once: no ORM session lives as long as the socket.
    with read_connection() as conn:
        current, last_seq = store.user_state(user_id, conn)
        return current, last_seq, store.pruned_through(conn) if resuming else 0


def _too_old(since):
    return messages.error(
        f"Events after id {since} are no longer kept: reload the current state (it is in connection_established)",
        code="since_too_old",
    )


def _receive_loop(app, ws, conn):
    rate = app.config["WS_FRAME_RATE"]
    frames = FrameLimiter(rate, app.config["WS_FRAME_BURST"])
    notice = app.config["WS_TOKEN_NOTICE"]
    noticed = None  # the deadline token_expiring was sent for: once per deadline
    while not conn.closing:
        remaining = conn.expires_at - time.time()
        if remaining <= 0:
            conn.close(
                CLOSE_TOKEN_EXPIRED,
                "Token expired",
                error=messages.error("Access token has expired: reconnect with a fresh token", code="token_expired"),
            )
            return
        if noticed != conn.expires_at and remaining <= notice:
            # Through the queue: after connection_established and any replay.
            conn.push(messages.token_expiring(math.floor(remaining)))
            noticed = conn.expires_at
        # Sleep until a frame comes, the notice is due, or the token expires: no timer of our own.
        data = wsreader.receive(ws, remaining if noticed == conn.expires_at else remaining - notice)
        if data is None or conn.closing:
            continue
        wait, flooding = frames.check()
        if wait:
            FRAMES.labels("rate_limited").inc()
            RATE_LIMITED.labels("frames").inc()
            refusal = messages.error(
                f"Too many messages: at most {rate:g} per second; this one was not accepted, send it again in {wait:.2f} s",
                code="rate_limited",
                retry_after=round(wait, 3),
            )
            if flooding:
                conn.close(CLOSE_POLICY_VIOLATION, "Too many messages", error=refusal)
                return
            conn.push(refusal)
            continue
        reply = _handle(app, conn, data)
        if reply is not None:
            conn.push(reply)


def _handle(app, conn, data):
    """Act on one client frame; return the frame to answer with, if any."""
    try:
        frame = messages.parse_frame(data, app.config)
    except messages.FrameError as exc:
        if exc.code in messages.UNPARSED:
            FRAMES.labels("invalid").inc()
        tag = {} if exc.request_id is None else {"request_id": exc.request_id}
        return messages.error(exc.message, code=exc.code, **tag)
    _count_frame(frame.type)
    if frame.type == "ping":
        return messages.pong(frame.timestamp)
    if frame.type == "sync":
        return _sync(conn, frame.since)
    if frame.type == "refresh":
        return _refresh(conn, frame.token)
    if frame.type == "detect":
        return _detect(app, conn, frame)
    try:
        committer = app.extensions["emotion_committer"]
        event, created = store.write_event(
            committer, int(conn.user_id), frame.emotion, frame.timestamp, frame.client_msg_id, device=conn.name
        )
    except ApiError as exc:
        return messages.error(exc.message, code=exc.error)
    if not created:
        # A repeat of a client_msg_id: nothing new was stored; answer the sender with the original.
        return messages.encode({"type": "emotion_update", **event, "duplicate": True})
    # The stored event reaches this socket through the hub like every other device: that is the ack.
    return None


def _count_frame(kind):
    # One counter per frame type (parse_frame knows a handful), looked up once: every frame is counted.
    counter = FRAME_COUNTERS.get(kind)
    if counter is None:
        counter = FRAME_COUNTERS[kind] = FRAMES.labels(kind)
    counter.inc()


def _detect(app, conn, frame):
    """Answer a `detect` frame with `detected`, or an error frame with the HTTP endpoint's code; both carry the
    frame's request_id. The models run in their OS threads (detection/pool.py): only this socket waits."""
    tag = {} if frame.request_id is None else {"request_id": frame.request_id}
    try:
        req = detection.from_frame(frame, device=conn.name)
        answer = detection.handle(app, int(conn.user_id), req)
    except ApiError as exc:
        return messages.error(exc.message, code=exc.error, **exc.extra, **tag)
    return messages.detected(answer, frame.request_id)


def _sync(conn, since):
    try:
        with read_connection() as db_conn:
            pruned = store.pruned_through(db_conn)
    except SQLAlchemyError:
        DATABASE_ERRORS.inc()
        return messages.error("Database unavailable, try again", code="database_unavailable")
    if since < pruned:
        return _too_old(since)
    conn.sync(since)
    return None


def _refresh(conn, token):
    """Move the socket onto a newer access token of its user; answer `refreshed`, or an error saying why not."""
    claims = access_claims(token)
    if claims is None:
        return messages.error(
            "Not a valid access token of this service (malformed, expired, or not an access token): "
            "get one from POST /api/auth/refresh",
            code="token_invalid",
        )
    if claims["sub"] != conn.user_id:
        return messages.error("This token belongs to another user", code="token_wrong_user")
    # A revocation of the new token that arrives while the database is read is noted (hub.py), so none
    # slips in between the read and the switch.
    conn.candidate, conn.candidate_revoked = (claims["jti"], claims.get("sid")), False
    try:
        revoked = revocation(claims)
    except SQLAlchemyError:
        DATABASE_ERRORS.inc()
        return messages.error("Database unavailable, try again", code="database_unavailable")
    finally:
        conn.candidate = None
    if revoked and revoked[0] == "invalid_token":
        return messages.error(revoked[1], code="token_invalid")
    if revoked or conn.candidate_revoked:
        return messages.error("This token has been revoked: log in again", code="token_revoked")
    if claims["exp"] <= conn.expires_at:
        return messages.error(
            "This token does not expire later than the socket's current one: get a new one from POST /api/auth/refresh",
            code="token_not_newer",
        )
    conn.jti, conn.sid, conn.expires_at = claims["jti"], claims.get("sid"), claims["exp"]
    log.debug("socket moved to a token that expires in %d s", claims["exp"] - time.time())
    return messages.refreshed(
        datetime.fromtimestamp(claims["exp"], timezone.utc), max(0, math.floor(claims["exp"] - time.time()))
    )
