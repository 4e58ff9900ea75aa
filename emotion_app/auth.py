"""`/api/auth`: register, login, refresh, logout, me; and the JWT callbacks that make every token
failure a JSON 401."""
import re
from datetime import datetime, timezone

from flask import Blueprint, current_app, jsonify, request
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    get_jwt,
    jwt_required,
)
from flask_jwt_extended.exceptions import WrongTokenError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .errors import ApiError, error_response
from .extensions import db, jwt
from .http import invalid_fields, json_object
from .models import RevokedToken, User
from .passwords import check_password, hash_password

bp = Blueprint("auth", __name__, url_prefix="/api/auth")

USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,32}")
PASSWORD_MIN, PASSWORD_MAX = 8, 256


def _credentials(body, check_rules):
    """Return (username, password) from a body; with `check_rules`, enforce the registration rules."""
    username, password = body.get("username"), body.get("password")
    problems = {}
    if not isinstance(username, str) or not username:
        problems["username"] = "Field 'username' is required and must be a string"
    elif check_rules and not USERNAME_RE.fullmatch(username):
        problems["username"] = "Field 'username' must be 3-32 characters: letters, digits, '_', '.' or '-'"
    if not isinstance(password, str) or not password:
        problems["password"] = "Field 'password' is required and must be a string"
    elif check_rules and not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        problems["password"] = f"Field 'password' must be {PASSWORD_MIN}-{PASSWORD_MAX} characters"
    if problems:
        invalid_fields(problems)
    return username, password


def _token_response(user):
    ttl = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    return {
        "access_token": create_access_token(identity=str(user.id)),
        "refresh_token": create_refresh_token(identity=str(user.id)),
        "token_type": "Bearer",
        "expires_in": int(ttl.total_seconds()),
        "user": user.to_dict(),
    }


@bp.post("/register")
def register():
    """Create an account: 201 with the user, 409 when the name is taken (case-insensitively)."""
    username, password = _credentials(json_object(), check_rules=True)
    pw_hash = hash_password(password)
    user = User(username=username, username_key=username.lower(), password_hash=pw_hash)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ApiError(409, "username_taken", f"Username {username!r} is already taken", field="username") from None
    return jsonify(user.to_dict()), 201


@bp.post("/login")
def login():
    """Exchange username and password for an access and a refresh token."""
    username, password = _credentials(json_object(), check_rules=False)
    user = db.session.scalars(select(User).where(User.username_key == username.lower())).first()
    # End the read transaction before hashing, so the pooled connection is free meanwhile.
    db.session.commit()
    if not check_password(user.password_hash if user else None, password):
        raise ApiError(401, "invalid_credentials", "Invalid username or password")
    return jsonify(_token_response(user))


@bp.post("/refresh")
@jwt_required(refresh=True)
def refresh():
    """Exchange a refresh token for a new access token."""
    ttl = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    token = create_access_token(identity=get_jwt()["sub"])
    return jsonify({"access_token": token, "token_type": "Bearer", "expires_in": int(ttl.total_seconds())})


@bp.post("/logout")
@jwt_required(verify_type=False)
def logout():
    """Revoke the presented token (access or refresh) for good, and close the sockets opened with it."""
    claims = get_jwt()
    db.session.add(
        RevokedToken(
            jti=claims["jti"],
            user_id=int(claims["sub"]),
            token_type=claims["type"],
            expires_at=datetime.fromtimestamp(claims["exp"], timezone.utc),
        )
    )
    db.session.commit()
    current_app.extensions["emotion_broker"].publish({"kind": "revoke", "user_id": claims["sub"], "jti": claims["jti"]})
    return jsonify({"revoked": True, "token_type": claims["type"]})


@bp.get("/me")
@jwt_required()
def me():
    """The user the access token belongs to."""
    user = db.session.get(User, int(get_jwt()["sub"]))
    if user is None:
        raise ApiError(401, "unknown_user", "The token's user no longer exists")
    return jsonify(user.to_dict())


def register_jwt_callbacks(app):
    """Wire flask-jwt-extended's look-ups and turn each token failure into a precise JSON 401."""

    # No user_lookup_loader: flask-jwt-extended would then load the user on every authenticated request
    # (every socket handshake included); the endpoints that need the row read it themselves.

    @jwt.token_in_blocklist_loader
    def is_revoked(_header, payload):
        return db.session.get(RevokedToken, payload["jti"]) is not None

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
        return error_response(401, "token_revoked", "Token has been revoked: log in again")

    # Registered after JWTManager.init_app, so it replaces the library's generic handler.
    @app.errorhandler(WrongTokenError)
    def wrong_token_type(exc):
        wanted = "refresh" if str(exc).startswith("Only refresh") else "access"
        return error_response(401, "wrong_token_type", f"Wrong kind of token: this endpoint takes the {wanted} token")
