"""Extension singletons, created unbound here and bound to an app in `create_app`."""
import time

import flask
import flask_jwt_extended
import flask_limiter
import jwt as pyjwt
from flask.sessions import NullSession, SecureCookieSessionInterface
from flask_jwt_extended.config import config as jwt_config
from flask_jwt_extended.default_callbacks import default_decode_key_callback
from flask_jwt_extended.tokens import _decode_jwt
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData

# Named constraints keep migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# expire_on_commit=False: handlers commit early (to hand the connection back to the pool before slow
# work such as password hashing) and still read the committed objects afterwards.
db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING), session_options={"expire_on_commit": False})
migrate = Migrate()


class JWTManager(flask_jwt_extended.JWTManager):
    """flask-jwt-extended, verifying a token with one decode instead of three, and once per worker.

    The library first decodes the token unverified, and reads its header apart, only to hand both to
    the decode-key callback. One key checks every token of this service (no `decode_key_loader`), so
    the token is decoded once, verified. An expired token is still decoded the library's way, for the
    header and claims its expiry error carries.

    A device presents the same token on every request and every reconnect until it refreshes it, so
    each worker keeps the claims of the tokens it has verified (up to VERIFIED_TOKENS, by their exact
    text) until they expire. Only the signature check and the claims' parsing are saved: expiry is
    compared on every use, and revocation is checked apart on every use (auth.revocation).
    """

    VERIFIED_TOKENS = 10_000

    def _decode_jwt_from_config(self, encoded_token, csrf_value=None, allow_expired=False):
        if self._decode_key_callback is not default_decode_key_callback or csrf_value or allow_expired:
            return super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        verified = flask.current_app.extensions.setdefault("emotion_verified_tokens", {})
        claims = verified.get(encoded_token)
        if claims is not None:
            if claims["exp"] > time.time() - jwt_config.leeway:
                return dict(claims)  # a copy: the request's claims are its own
            del verified[encoded_token]  # expired: decoded again below, for the expiry error
        try:
            claims = _decode_jwt(
                algorithms=jwt_config.decode_algorithms,
                audience=jwt_config.decode_audience,
                csrf_value=None,
                encoded_token=encoded_token,
                identity_claim_key=jwt_config.identity_claim_key,
                issuer=jwt_config.decode_issuer,
                leeway=jwt_config.leeway,
                secret=jwt_config.decode_key,
                verify_aud=jwt_config.decode_audience is not None,
                verify_sub=jwt_config.verify_sub,
                allow_expired=False,
            )
        except pyjwt.ExpiredSignatureError:
            return super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        # Only tokens that expire are kept (all of ours do), so that every entry ends.
        if isinstance(claims.get("exp"), (int, float)):
            if len(verified) >= self.VERIFIED_TOKENS:
                verified.clear()
            verified[encoded_token] = dict(claims)
        return claims


jwt = JWTManager()
sock = Sock()


class Limiter(flask_limiter.Limiter):
    """Flask-Limiter, which does nothing at all for a blueprint whose only limit is off.

    Flask-Limiter checks every request, finding the route's limits and evaluating each one's
    `exempt_when`, even when every limit is off. `only_limit` names the setting of a blueprint's one
    limit: while that setting is off, its requests skip the check.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.only_limit = {}  # blueprint name -> the setting of its only limit

    def _check_request_limit(self, callable_name=None, in_middleware=True):
        setting = self.only_limit.get(flask.request.blueprint)
        if setting is not None and flask.current_app.config[setting] is None:
            return
        super()._check_request_limit(callable_name, in_middleware)


# Limits are declared per route (see ratelimit.py); storage and options come from the app's config.
limiter = Limiter(key_func=get_remote_address)


NO_SESSION = NullSession()  # a socket's session (see SessionInterface)


class SessionInterface(SecureCookieSessionInterface):
    """Flask's cookie sessions, with the signing serializer built once per secret key rather than on
    every request (the API itself keeps no session in cookies), and none at all for a WebSocket."""

    def open_session(self, app, request):
        # A socket's request lives as long as the socket, and so would a session of its own (an empty
        # dict and its callbacks, about 500 bytes); the socket never uses one. A null session is
        # shared: it cannot be changed, and Flask saves none.
        if request.environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            return NO_SESSION
        return super().open_session(app, request)

    def get_signing_serializer(self, app):
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        cached = getattr(self, "_serializer", None)
        if cached is None or cached[0] != keys:
            cached = self._serializer = (keys, super().get_signing_serializer(app))
        return cached[1]


def read_connection():
    """A pooled connection for a quick read outside the ORM session, without a transaction around it.

    Each statement sees what is committed when it runs; PostgreSQL is spared the BEGIN and the ROLLBACK
    (two round trips) that would wrap a one-query transaction.
    """
    engine = db.engine
    if engine.dialect.name == "sqlite":
        # Python's sqlite3 opens no transaction for a SELECT: the option would only cost time.
        return engine.connect()
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")
