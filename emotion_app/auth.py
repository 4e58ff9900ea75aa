"""`/api/auth`: register, login, refresh, logout, password change, me; and the JWT callbacks that make
every token failure a JSON 401.

A login starts a session: its refresh token's id (`jti`) is the session id (`sid`) every access token of
that login carries, so revoking the session id (logout with either token) revokes them all. Tokens also
carry the user's token version (`ver`); a password change raises it, revoking every earlier token.
"""
import uuid
from datetime import datetime, timezone

from flask import Blueprint, current_app, g, jsonify, request
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    decode_token,
    get_jwt,
    jwt_required,
)
from flask_jwt_extended.exceptions import JWTExtendedException, WrongTokenError
from jwt import PyJWTError
from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.exc import IntegrityError

from . import logs
from .errors import ApiError, error_response
from .extensions import db, jwt, read_connection
from .contract.bodies import AccessToken, Credentials, LoggedOut, PasswordChange, Registration, Session
from .contract.bodies import User as UserOut
from .contract.openapi import documented
from .http import checked_body
from .metrics import REVOCATION_CHECKS
from .models import RevokedToken, User
from .passwords import check_password, hash_password
from .ratelimit import auth_per_address, login_failures_per_username

bp = Blueprint("auth", __name__, url_prefix="/api/auth")

def _access_token(user_id, sid, version):
    return create_access_token(identity=str(user_id), additional_claims={"sid": sid, "ver": version})


def _token_response(user):
    """A new session for `user`: a refresh token (its jti is the session id) and an access token."""
    ttl = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    sid = str(uuid.uuid4())
    return {
        "access_token": _access_token(user.id, sid, user.token_version),
        "refresh_token": create_refresh_token(
            identity=str(user.id), additional_claims={"jti": sid, "sid": sid, "ver": user.token_version}
        ),
        "token_type": "Bearer",
        "expires_in": int(ttl.total_seconds()),
        "user": user.to_dict(),
    }


@bp.post("/register")
@auth_per_address
@documented(
    "Create an account", "auth", auth=None, body=Registration, answers={201: UserOut}, errors=(409, 429),
    links={201: {"LogIn": {
        "operationId": "auth_login",
        "description": "Log in with the account just made.",
        "requestBody": {"username": "$request.body#/username", "password": "$request.body#/password"},
    }}},
)
def register():
    """Create an account: 201 with the user, 409 when the name is taken (case-insensitively)."""
    body = checked_body(Registration)
    username = body.username
    pw_hash = hash_password(body.password)
    user = User(username=username, username_key=username.lower(), password_hash=pw_hash)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ApiError(409, "username_taken", f"Username {username!r} is already taken", field="username") from None
    return jsonify(user.to_dict()), 201


@bp.post("/login")
@auth_per_address
@login_failures_per_username
@documented("Log in: get an access and a refresh token", "auth", auth=None, body=Credentials, answers={200: Session}, errors=(401, 429))
def login():
    """Exchange username and password for an access and a refresh token."""
    body = checked_body(Credentials)
    user = db.session.scalars(select(User).where(User.username_key == body.username.lower())).first()
    # End the read transaction before hashing, so the pooled connection is free meanwhile.
    db.session.commit()
    if not check_password(user.password_hash if user else None, body.password):
        raise ApiError(401, "invalid_credentials", "Invalid username or password")
    return jsonify(_token_response(user))


@bp.post("/refresh")
@jwt_required(refresh=True)
@documented("Get a new access token", "auth", auth="refresh", answers={200: AccessToken})
def refresh():
    """Exchange a refresh token for a new access token."""
    ttl = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    claims = get_jwt()
    token = _access_token(claims["sub"], claims.get("sid") or claims["jti"], claims.get("ver", 0))
    return jsonify({"access_token": token, "token_type": "Bearer", "expires_in": int(ttl.total_seconds())})


@bp.post("/logout")
@jwt_required(verify_type=False)
@documented("Log out: revoke this login's tokens", "auth", auth="either", answers={200: LoggedOut})
def logout():
    """End the session of the presented token (access or refresh): both tokens of the login are revoked
    for good, and the sockets opened with them close."""
    claims = get_jwt()
    sid = claims.get("sid") or claims["jti"]
    user_id = int(claims["sub"])
    session_ends = datetime.now(timezone.utc) + current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    _revoke(claims["jti"], user_id, claims["type"], datetime.fromtimestamp(claims["exp"], timezone.utc))
    if sid != claims["jti"]:
        _revoke(sid, user_id, "session", session_ends)
    current_app.extensions["emotion_broker"].publish(
        {"kind": "revoke", "user_id": claims["sub"], "jti": claims["jti"], "sid": sid}
    )
    return jsonify({"revoked": True, "token_type": claims["type"]})


def _revoke(jti, user_id, token_type, expires_at):
    db.session.add(RevokedToken(jti=jti, user_id=user_id, token_type=token_type, expires_at=expires_at))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # revoked already (two logouts of one session at once)


@bp.post("/password")
@auth_per_address
@jwt_required()
@documented("Change the password", "auth", body=PasswordChange, answers={200: Session}, errors=(403, 429))
def change_password():
    """Change the password: every token of the user is revoked and their sockets close; the answer is a
    new session for this device, like a login."""
    body = checked_body(PasswordChange)
    current, new = body.current_password, body.new_password
    user_id = int(get_jwt()["sub"])
    user = db.session.get(User, user_id)
    db.session.commit()  # hashing is slow: no transaction (and pooled connection) held meanwhile
    if user is None:
        raise ApiError(401, "unknown_user", "The token's user no longer exists")
    if not check_password(user.password_hash, current):
        raise ApiError(403, "invalid_credentials", "The current password is not correct", field="current_password")
    pw_hash = hash_password(new)
    db.session.execute(
        update(User)
        .where(User.id == user_id)
        .values(password_hash=pw_hash, token_version=User.token_version + 1)
    )
    db.session.commit()
    db.session.refresh(user)
    current_app.extensions["emotion_broker"].publish({"kind": "revoke", "user_id": str(user_id), "all": True})
    return jsonify(_token_response(user))


@bp.get("/me")
@jwt_required()
@documented("The logged-in user", "auth", answers={200: UserOut})
def me():
    """The user the access token belongs to."""
    user = db.session.get(User, int(get_jwt()["sub"]))
    if user is None:
        raise ApiError(401, "unknown_user", "The token's user no longer exists")
    return jsonify(user.to_dict())


# Looked up once, not on every check.
CHECKED_IN_CACHE, CHECKED_IN_DATABASE = REVOCATION_CHECKS.labels("cache"), REVOCATION_CHECKS.labels("database")

# Built once (SQLAlchemy then reuses its compiled form): the user's token version, and whether the
# token or its login session was revoked.
REVOCATION_STATE = select(
    User.__table__.c.token_version,
    exists().where(RevokedToken.__table__.c.jti.in_([bindparam("jti"), bindparam("sid")])),
).where(User.__table__.c.id == bindparam("uid"))


def revocation(claims):
    """Why the token may no longer be used, as (error code, message); None while it may.

    A token found not revoked is remembered by this worker (revocations.py) until a revocation of its
    user reaches the worker through the broker; until then it is not read from the database again.
    """
    sub, jti, ver = claims.get("sub"), claims.get("jti"), claims.get("ver") or 0
    sid = claims.get("sid") or jti
    # Only our key signs tokens, but a malformed claim must still be a 401, never a crash.
    if not (
        isinstance(sub, str) and sub.isdigit() and len(sub) <= 18
        and all(isinstance(v, str) and 0 < len(v) <= 64 for v in (jti, sid))
        and isinstance(ver, int)
    ):
        return "invalid_token", "Invalid token: malformed claims"
    user_id = int(sub)
    known = current_app.extensions["emotion_revocations"]
    if known.allows(user_id, jti, sid, ver):
        CHECKED_IN_CACHE.inc()
        return None
    CHECKED_IN_DATABASE.inc()
    mark = known.mark()
    # On a connection of its own, not the ORM session: this runs on a token's first handshake or request.
    with read_connection() as conn:
        row = conn.execute(REVOCATION_STATE, {"uid": user_id, "jti": jti, "sid": sid}).first()
    if row is None:
        return "unknown_user", "The token's user no longer exists"
    if row[1]:
        return "token_revoked", "Token has been revoked: log in again"
    if ver < row[0]:
        return "token_revoked", "Token was revoked by a password change: log in with the new password"
    known.remember(mark, user_id, jti, sid, row[0])
    return None


def access_claims(encoded):
    """The claims of `encoded` if it is a valid, unexpired access token of this service, else None.

    Signature, algorithm, issuer, audience and expiry are checked as for every request; revocation is
    not (`decode_token` skips the blocklist): call `revocation` too.
    """
    try:
        claims = decode_token(encoded)
    except (PyJWTError, JWTExtendedException, ValueError):
        return None
    if claims.get("type") != "access" or not isinstance(claims.get("exp"), int):
        return None
    return claims


def register_jwt_callbacks(app):
    """Wire flask-jwt-extended's look-ups and turn each token failure into a precise JSON 401."""

    # No user_lookup_loader: flask-jwt-extended would then load the user on every authenticated request
    # (every socket handshake included); the endpoints that need the row read it themselves.

    @jwt.token_in_blocklist_loader
    def is_revoked(_header, payload):
        # Every authenticated request passes here once its signature checked out: name its user in the logs.
        logs.bind(user_id=payload.get("sub"))
        g.revocation = revocation(payload)
        return g.revocation is not None

    @jwt.unauthorized_loader
    def missing_token(_reason):
        if "Authorization" in request.headers:
            return error_response(
                401, "invalid_token", "Malformed Authorization header: expected 'Authorization: Bearer <token>'"
            )
        where = "an 'Authorization: Bearer <token>' header"
        if request.blueprint == "ws":
            where += " or a ?token= query parameter"
        return error_response(401, "missing_token", f"Missing token: send it as {where}")

    @jwt.invalid_token_loader
    def invalid_token(reason):
        return error_response(401, "invalid_token", f"Invalid token: {reason}")

    @jwt.expired_token_loader
    def expired_token(_header, payload):
        hint = "log in again" if payload.get("type") == "refresh" else "refresh it or log in again"
        return error_response(401, "token_expired", f"Token has expired: {hint}")

    @jwt.revoked_token_loader
    def revoked_token(_header, _payload):
        return error_response(401, *g.revocation)

    # Registered after JWTManager.init_app, so it replaces the library's generic handler.
    @app.errorhandler(WrongTokenError)
    def wrong_token_type(exc):
        wanted = "refresh" if str(exc).startswith("Only refresh") else "access"
        return error_response(401, "wrong_token_type", f"Wrong kind of token: this endpoint takes the {wanted} token")
