"""`POST /api/ws-ticket`: a single-use, short-lived ticket to open a socket with, so that browsers never put
their access token in a URL (where proxies and servers log it).

A ticket stands for the access token that asked for it: the same user, session and expiry, and carries
the name of the device it is for, if the request gave one. Only its SHA-256 is kept (in the broker, so
any worker can take it), and taking it deletes it.
"""
import hashlib
import json
import secrets
import time

from flask import Blueprint, current_app, jsonify, request
from flask_jwt_extended import get_jwt, jwt_required
from redis import RedisError

from .contract.bodies import Ticket, TicketRequest
from .contract.openapi import documented
from .errors import ApiError
from .http import checked_body

bp = Blueprint("tickets", __name__, url_prefix="/api")


def _key(ticket):
    return hashlib.sha256(ticket.encode()).hexdigest()


@bp.post("/ws-ticket")
@jwt_required()
@documented("A single-use ticket to open the socket with", "devices", body=TicketRequest, body_optional=True, answers={200: Ticket})
def make_ticket():
    """Answer `{"ticket", "expires_in"}`; open the socket with `/api/ws?ticket=...` within `expires_in` s.

    The body is optional: `{"device": "Pixel 8"}` names the socket the ticket opens.
    """
    # No body (or an empty one) asks for an unnamed device, as before names existed.
    device = checked_body(TicketRequest).device if request.get_data() else None
    claims = get_jwt()
    ttl = current_app.config["WS_TICKET_TTL"]
    ticket = secrets.token_urlsafe(32)
    holder = {k: claims.get(k) for k in ("sub", "jti", "sid", "ver", "exp")}
    holder["device"] = device
    try:
        current_app.extensions["emotion_broker"].put_ticket(_key(ticket), json.dumps(holder), ttl)
    except RedisError:
        raise ApiError(503, "broker_unavailable", "Tickets are unavailable right now: try again shortly") from None
    return jsonify({"ticket": ticket, "expires_in": ttl})


def redeem(ticket):
    """Take `ticket` (once) and return the claims of the token it stands for, with the `device` name it
    was made for (or None), or raise a 401 ApiError."""
    if not isinstance(ticket, str) or not 16 <= len(ticket) <= 128:
        raise ApiError(401, "invalid_ticket", "Malformed ticket: get one from POST /api/ws-ticket")
    try:
        stored = current_app.extensions["emotion_broker"].take_ticket(_key(ticket))
    except RedisError:
        raise ApiError(503, "broker_unavailable", "Tickets are unavailable right now: try again shortly") from None
    if stored is None:
        raise ApiError(
            401, "invalid_ticket", "Ticket is unknown, used already or expired: get a new one from POST /api/ws-ticket"
        )
    claims = json.loads(stored)
    if claims["exp"] <= time.time():
        raise ApiError(401, "token_expired", "The token this ticket was made with has expired: refresh it or log in again")
    return claims
