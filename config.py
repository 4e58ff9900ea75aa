"""Settings read from environment variables, in one place.

Every variable is documented once, in the README's configuration table. `settings()` is a pure function
of the environment so that the app factory, gunicorn.conf.py and the tests all read it the same way.
"""
import os
import re
from datetime import timedelta

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
INSTANCE_DIR = os.path.join(BASE_DIR, "instance")

DEFAULT_EMOTIONS = "happy,sad,angry,surprised,fearful,disgusted,neutral"

# Values that must never reach production: the empty string and the placeholders people copy from docs.
PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "dev", "development"}


# Every variable `settings()` and `server_settings()` read; the README's table documents each one.
VARIABLES = (
    "APP_ENV", "SECRET_KEY", "JWT_SECRET_KEY", "DATABASE_URL", "ACCESS_TOKEN_TTL", "REFRESH_TOKEN_TTL",
    "HOST", "PORT", "WEB_CONCURRENCY", "WORKER_CONNECTIONS", "EMOTIONS", "MAX_BODY_BYTES",
    "WS_MAX_MESSAGE_BYTES", "WS_PING_INTERVAL", "WS_SEND_QUEUE", "WS_SEND_TIMEOUT", "WS_COMPRESSION",
    "HISTORY_MAX_LIMIT", "LOG_LEVEL", "REDIS_URL", "BROKER_PREFIX", "DB_POOL_SIZE", "DB_MAX_OVERFLOW",
    "DB_POOL_TIMEOUT", "DB_CONNECT_TIMEOUT", "REPLAY_LIMIT", "RETENTION_DAYS",
    "JWT_ISSUER", "JWT_AUDIENCE", "WS_TICKET_TTL", "ALLOWED_ORIGINS", "TRUSTED_PROXIES",
    "RATE_LIMIT_AUTH", "RATE_LIMIT_LOGIN_FAILURES", "RATE_LIMIT_HANDSHAKE", "WS_MAX_SOCKETS_PER_USER",
    "WS_MAX_SOCKETS", "WS_FRAME_RATE", "WS_FRAME_BURST", "METRICS_TOKEN", "PROMETHEUS_MULTIPROC_DIR",
    "LOG_FORMAT", "WS_TOKEN_NOTICE",
    "DETECTION", "DETECTION_LOAD", "DETECTION_THREADS", "DETECT_MAX_TEXT", "DETECT_MAX_IMAGE_BYTES",
    "DETECT_MAX_PIXELS", "DETECT_UNCERTAIN_BELOW", "RATE_LIMIT_DETECT", "REVOCATION_CACHE_SECONDS",
)


# The abuse limits, all off: for load tests and test suites, which play many clients from one address.
LIMITS_OFF = {
    "RATE_LIMIT_AUTH": "off",
    "RATE_LIMIT_LOGIN_FAILURES": "off",
    "RATE_LIMIT_HANDSHAKE": "off",
    "WS_FRAME_RATE": "0",
    "WS_MAX_SOCKETS_PER_USER": "0",
    "RATE_LIMIT_DETECT": "off",
}


class ConfigError(RuntimeError):
    """A setting is missing or invalid; the message names the variable to fix."""


def _number(env, name, default, minimum=0, kind=int):
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name} must be {noun}, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _int(env, name, default, minimum=0):
    return _number(env, name, default, minimum, int)


def _float(env, name, default, minimum=0.0):
    return _number(env, name, default, minimum, float)


def _bool(env, name, default):
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _rate_limit(env, name, default):
    """A Flask-Limiter rate such as "30 per minute" or "10/second;100/hour"; "off" (or 0) turns it off."""
    raw = (env.get(name) or default).strip()
    if raw.lower() in ("off", "0", "none"):
        return None
    from limits import parse_many  # the parser Flask-Limiter itself uses

    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a rate such as '30 per minute' or '10/second;100/hour', or 'off'; got {raw!r}") from None
    return raw


def _origins(env):
    raw = env.get("ALLOWED_ORIGINS") or ""
    origins = [o.strip().rstrip("/").lower() for o in raw.split(",") if o.strip()]
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ConfigError(f"ALLOWED_ORIGINS: {origin!r} is not an origin such as https://app.example.com (or *)")
    return tuple(origins)


def _choice(env, name, choices):
    value = (env.get(name) or choices[0]).strip().lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _fraction(env, name, default):
    value = _float(env, name, default)
    if value > 1:
        raise ConfigError(f"{name} must be between 0 and 1, got {value}")
    return value


def _emotions(env):
    raw = env.get("EMOTIONS") or DEFAULT_EMOTIONS
    words = [w.strip().lower() for w in raw.split(",") if w.strip()]
    if not words:
        raise ConfigError("EMOTIONS must list at least one emotion, separated by commas")
    if any(len(w) > 32 for w in words):
        raise ConfigError("EMOTIONS: each emotion must be at most 32 characters")
    return tuple(dict.fromkeys(words))


def settings(env=None):
    """Return the Flask config mapping built from `env` (default: os.environ)."""
    env = os.environ if env is None else env
    app_env = (env.get("APP_ENV") or "development").strip().lower()
    if app_env not in ("development", "production"):
        raise ConfigError(f"APP_ENV must be 'development' or 'production', got {app_env!r}")
    access_ttl = _int(env, "ACCESS_TOKEN_TTL", 900, minimum=1)
    worker_connections = _int(env, "WORKER_CONNECTIONS", 1000, minimum=1)
    refresh_ttl = _int(env, "REFRESH_TOKEN_TTL", 30 * 24 * 3600, minimum=1)
    return {
        "APP_ENV": app_env,
        "SECRET_KEY": env.get("SECRET_KEY"),
        "JWT_SECRET_KEY": env.get("JWT_SECRET_KEY"),
        "SQLALCHEMY_DATABASE_URI": env.get("DATABASE_URL")
        or "sqlite:///" + os.path.join(INSTANCE_DIR, "emotion_app.db"),
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(seconds=access_ttl),
        "JWT_REFRESH_TOKEN_EXPIRES": timedelta(seconds=refresh_ttl),
        "EMOTIONS": _emotions(env),
        "MAX_CONTENT_LENGTH": _int(env, "MAX_BODY_BYTES", 16 * 1024, minimum=256),
        "WS_MAX_MESSAGE_BYTES": _int(env, "WS_MAX_MESSAGE_BYTES", 4096, minimum=128),
        "WS_PING_INTERVAL": _float(env, "WS_PING_INTERVAL", 25.0),
        "WS_SEND_QUEUE": _int(env, "WS_SEND_QUEUE", 256, minimum=1),
        "WS_SEND_TIMEOUT": _float(env, "WS_SEND_TIMEOUT", 10.0, minimum=0.1),
        "WS_COMPRESSION": _bool(env, "WS_COMPRESSION", False),
        # How long before a socket's token expires it is told so (token_expiring); 0: never told.
        "WS_TOKEN_NOTICE": _int(env, "WS_TOKEN_NOTICE", 60),
        "HISTORY_MAX_LIMIT": _int(env, "HISTORY_MAX_LIMIT", 100, minimum=1),
        "LOG_LEVEL": (env.get("LOG_LEVEL") or "info").upper(),
        "REDIS_URL": env.get("REDIS_URL") or None,
        "BROKER_PREFIX": env.get("BROKER_PREFIX") or "emotion_app",
        "DB_POOL_SIZE": _int(env, "DB_POOL_SIZE", 10, minimum=1),
        # No overflow connections by default: each is closed as soon as it is handed back, and opening one
        # costs more than waiting for a pooled one (docs/performance.md, PostgreSQL handshakes).
        "DB_MAX_OVERFLOW": _int(env, "DB_MAX_OVERFLOW", 0),
        "DB_POOL_TIMEOUT": _float(env, "DB_POOL_TIMEOUT", 10.0, minimum=0.1),
        "DB_CONNECT_TIMEOUT": _int(env, "DB_CONNECT_TIMEOUT", 5, minimum=1),
        "REPLAY_LIMIT": _int(env, "REPLAY_LIMIT", 500, minimum=1),
        # 0 keeps events forever.
        "RETENTION_DAYS": _float(env, "RETENTION_DAYS", 0.0),
        "JWT_ISSUER": env.get("JWT_ISSUER") or "emotion_app",
        "JWT_AUDIENCE": env.get("JWT_AUDIENCE") or "emotion_app",
        "WS_TICKET_TTL": _int(env, "WS_TICKET_TTL", 30, minimum=1),
        # How long a worker trusts a token it found not revoked (revocations are heard at once through
        # the broker; this bounds changes made outside the app); 0: every token read from the database.
        "REVOCATION_CACHE_SECONDS": _float(env, "REVOCATION_CACHE_SECONDS", 60.0),
        # Browser origins allowed besides the service's own (sockets and CORS); "*" allows any.
        "ALLOWED_ORIGINS": _origins(env),
        "TRUSTED_PROXIES": _int(env, "TRUSTED_PROXIES", 0),
        "RATE_LIMIT_AUTH": _rate_limit(env, "RATE_LIMIT_AUTH", "30 per minute"),
        "RATE_LIMIT_LOGIN_FAILURES": _rate_limit(env, "RATE_LIMIT_LOGIN_FAILURES", "10 per minute"),
        "RATE_LIMIT_HANDSHAKE": _rate_limit(env, "RATE_LIMIT_HANDSHAKE", "120 per minute"),
        "WS_MAX_SOCKETS_PER_USER": _int(env, "WS_MAX_SOCKETS_PER_USER", 20),
        # Leave a tenth of the worker's connections for HTTP, so sockets alone cannot lock out logins.
        "WS_MAX_SOCKETS": _int(env, "WS_MAX_SOCKETS", max(1, worker_connections * 9 // 10)),
        "WS_FRAME_RATE": _float(env, "WS_FRAME_RATE", 10.0),
        "WS_FRAME_BURST": _int(env, "WS_FRAME_BURST", 20, minimum=1),
        "METRICS_TOKEN": env.get("METRICS_TOKEN") or None,
        "LOG_FORMAT": _choice(env, "LOG_FORMAT", ("text", "json")),
        # Emotion detection (emotion_app/detection): off, the app runs without the model packages.
        "DETECTION": _choice(env, "DETECTION", ("on", "off")) == "on",
        "DETECTION_LOAD": _choice(env, "DETECTION_LOAD", ("lazy", "startup")),
        "DETECTION_THREADS": _int(env, "DETECTION_THREADS", os.cpu_count() or 1, minimum=1),
        "DETECT_MAX_TEXT": _int(env, "DETECT_MAX_TEXT", 1000, minimum=1),
        "DETECT_MAX_IMAGE_BYTES": _int(env, "DETECT_MAX_IMAGE_BYTES", 5 * 1024 * 1024, minimum=1024),
        "DETECT_MAX_PIXELS": _int(env, "DETECT_MAX_PIXELS", 4096 * 4096, minimum=1),
        "DETECT_UNCERTAIN_BELOW": _fraction(env, "DETECT_UNCERTAIN_BELOW", 0.45),
        "RATE_LIMIT_DETECT": _rate_limit(env, "RATE_LIMIT_DETECT", "30 per minute"),
    }


def server_settings(env=None):
    """Return the gunicorn-facing settings: bind address, workers, connections per worker."""
    env = os.environ if env is None else env
    host = env.get("HOST") or "0.0.0.0"
    port = _int(env, "PORT", 8000, minimum=1)
    shared_broker = bool(env.get("REDIS_URL"))
    sqlite = (env.get("DATABASE_URL") or "sqlite").startswith("sqlite")
    # With Redis every worker reaches every socket, so use the cores; without it, one process must
    # hold all sockets, or a user's devices on two workers would silently stop seeing each other.
    # SQLite stays on one worker too: a second process's write lock makes sqlite3 wait inside C,
    # which freezes every socket of the waiting gevent worker.
    default = (os.cpu_count() or 1) if shared_broker and not sqlite else 1
    workers = _int(env, "WEB_CONCURRENCY", default, minimum=1)
    if workers > 1 and not shared_broker:
        raise ConfigError(
            f"WEB_CONCURRENCY={workers} needs a shared broker: set REDIS_URL (e.g. redis://127.0.0.1:6379/0) "
            "or run one worker (WEB_CONCURRENCY=1)"
        )
    if workers > 1 and sqlite:
        raise ConfigError(
            f"WEB_CONCURRENCY={workers} needs PostgreSQL: set DATABASE_URL=postgresql+psycopg://... "
            "or run one worker (WEB_CONCURRENCY=1) with SQLite"
        )
    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_connections": _int(env, "WORKER_CONNECTIONS", 1000, minimum=1),
        "log_level": (env.get("LOG_LEVEL") or "info").lower(),
        "broker": "redis" if shared_broker else "in-process",
        "metrics_dir": env.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(INSTANCE_DIR, "metrics"),
        "log_format": _choice(env, "LOG_FORMAT", ("text", "json")),
    }
