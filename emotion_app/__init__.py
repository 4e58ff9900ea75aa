"""emotion_app: the real-time backend that keeps a person's current emotion in sync across devices."""
import json
import logging
import os
import secrets

from flask import Flask
from sqlalchemy import event
from sqlalchemy.pool import QueuePool

import config

from . import apidocs, auth, devices, emotions, health, insights, pages, tickets, ws, wsreader
from .commands import prune_command
from .detection import api as detection_api
from .detection.service import Detector
from .broker import create_broker
from .dbping import ping_when_idle
from .errors import register_error_handlers
from .extensions import SessionInterface, db, jwt, migrate, sock
from .groupcommit import GroupCommitter
from .hub import Hub
from .logs import configure_logging, configure_request_ids
from .metrics import UPDATES_STORED
from .ratelimit import configure_rate_limits
from .revocations import RevocationCache
from .security import configure_security

log = logging.getLogger(__name__)


def create_app(overrides=None):
    """Build the application: settings, secrets, database, extensions, blueprints, broker."""
    app = Flask(__name__, instance_path=config.INSTANCE_DIR)
    app.session_interface = SessionInterface()
    app.config.update(config.settings())
    app.config.update(overrides or {})
    configure_logging(app)
    configure_request_ids(app)
    load_secrets(app)
    configure_jwt(app)
    configure_database(app)
    configure_websocket(app)
    configure_security(app)
    configure_rate_limits(app)
    configure_detection(app)

    db.init_app(app)
    with app.app_context():  # the engine object only; nothing connects yet
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", _sqlite_pragmas)
        elif db.engine.dialect.name == "postgresql":
            ping_when_idle(db.engine)
    migrate.init_app(app, db, directory=os.path.join(config.BASE_DIR, "migrations"))
    jwt.init_app(app)
    sock.init_app(app)

    app.register_blueprint(auth.bp)
    app.register_blueprint(emotions.bp)
    app.register_blueprint(detection_api.bp)
    app.register_blueprint(insights.bp)
    app.register_blueprint(devices.bp)
    app.register_blueprint(tickets.bp)
    app.register_blueprint(ws.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(apidocs.bp)
    register_error_handlers(app)
    auth.register_jwt_callbacks(app)
    app.cli.add_command(prune_command)

    start_delivery(app)
    return app


def load_secrets(app):
    """Require real secrets in production; in development, generate them once and keep them in instance/."""
    names = ("SECRET_KEY", "JWT_SECRET_KEY")
    missing = [n for n in names if (app.config.get(n) or "").strip() in config.PLACEHOLDER_SECRETS]
    if not missing:
        return
    if app.config["APP_ENV"] == "production":
        raise config.ConfigError(
            f"APP_ENV=production needs {' and '.join(missing)} set to a long random value, "
            'e.g. python -c "import secrets; print(secrets.token_urlsafe(48))"'
        )
    path = os.path.join(app.instance_path, "dev-secrets.json")
    os.makedirs(app.instance_path, exist_ok=True)
    try:
        # O_EXCL: when several processes start at once, one writes and the others read its file.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path) as fh:
            stored = json.load(fh)
    else:
        stored = {n: secrets.token_urlsafe(48) for n in names}
        with os.fdopen(fd, "w") as fh:
            json.dump(stored, fh)
        log.warning("development mode: generated %s and saved them in %s", " and ".join(names), path)
    for name in missing:
        app.config[name] = stored[name]


def configure_jwt(app):
    """Pin the token format: HS256 only, our issuer and audience, access tokens as Bearer header (and
    ?token= on the socket)."""
    app.config.update(
        JWT_TOKEN_LOCATION=["headers"],
        JWT_QUERY_STRING_NAME="token",
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],
        JWT_ENCODE_ISSUER=app.config["JWT_ISSUER"],
        JWT_DECODE_ISSUER=app.config["JWT_ISSUER"],
        JWT_ENCODE_AUDIENCE=app.config["JWT_AUDIENCE"],
        JWT_DECODE_AUDIENCE=app.config["JWT_AUDIENCE"],
        # Tokens travel in headers, never cookies: no CSRF double-submit claim needed.
        JWT_COOKIE_CSRF_PROTECT=False,
    )


def configure_database(app):
    """Engine options per backend; SQLite gets one pooled connection in WAL mode."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite") and ":///" in uri and ":memory:" not in uri:
        os.makedirs(os.path.dirname(os.path.abspath(uri.split(":///", 1)[1])), exist_ok=True)
        # One connection, handed from greenlet to greenlet: SQLite has a single writer anyway, and
        # a second connection would only wait on its lock while blocking the whole worker.
        app.config.setdefault(
            "SQLALCHEMY_ENGINE_OPTIONS",
            {
                "poolclass": QueuePool,
                "pool_size": 1,
                "max_overflow": 0,
                "pool_timeout": 10,
                "connect_args": {"check_same_thread": False, "timeout": 5},
            },
        )
    elif uri.startswith("postgresql"):
        # Sessions are short (one per request or socket operation), so a small pool per worker
        # serves many sockets. Connections a database restart has broken are found by dbping.py, which
        # checks only those that sat idle (pool_pre_ping would cost a round trip on every checkout).
        app.config.setdefault(
            "SQLALCHEMY_ENGINE_OPTIONS",
            {
                "pool_size": app.config["DB_POOL_SIZE"],
                "max_overflow": app.config["DB_MAX_OVERFLOW"],
                "pool_timeout": app.config["DB_POOL_TIMEOUT"],
                "connect_args": {"connect_timeout": app.config["DB_CONNECT_TIMEOUT"]},
            },
        )
    else:
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})


def _sqlite_pragmas(dbapi_conn, _record):
    """WAL lets readers run beside the writer; synchronous=NORMAL in WAL keeps commits across a crash."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def configure_websocket(app):
    """Options for every socket: server pings, the largest frame accepted, and no reader thread (the
    handler's greenlet reads: wsreader.py)."""
    app.config["SOCK_SERVER_OPTIONS"] = {
        "ping_interval": app.config["WS_PING_INTERVAL"] or None,
        "max_message_size": app.config["WS_MAX_MESSAGE_BYTES"],
        "thread_class": wsreader.no_thread,
        "event_class": wsreader.Wakeup,
    }


def configure_detection(app):
    """This worker's detector; its models load on first use, or as the worker starts (DETECTION_LOAD=startup)."""
    detector = Detector.from_config(app.config)
    app.extensions["emotion_detector"] = detector
    # Called by the server once the worker serves (gunicorn.conf.py): nothing loads at import or in the factory.
    app.extensions["emotion_worker_started"] = detector.on_worker_start


def start_delivery(app):
    """Wire the path of an update: group committer -> broker -> this process's hub of sockets; and of a
    revocation: broker -> this process's cache of tokens found not revoked, then the hub."""
    broker = create_broker(app.config["REDIS_URL"], app.config["BROKER_PREFIX"])
    hub = Hub(broker.epoch)
    revocations = RevocationCache(broker, app.config["REVOCATION_CACHE_SECONDS"])

    def deliver(message):
        revocations.note(message)  # a revoked token is forgotten before its sockets close
        hub.dispatch(message)

    broker.subscribe(deliver)
    app.extensions["emotion_hub"] = hub
    app.extensions["emotion_broker"] = broker
    app.extensions["emotion_revocations"] = revocations
    def serving_workers(count):
        # Called by the server as the worker starts (gunicorn.conf.py) with the number of workers. Beside
        # other workers, a broker that is not shared never hears their revocations and events.
        if count > 1 and not broker.shared:
            log.warning("%d workers with the in-process broker: tokens and states are read from the database", count)
            revocations.off()
            hub.states.off()

    app.extensions["emotion_workers"] = serving_workers

    def drain():
        # Called by the server on SIGTERM (gunicorn.conf.py): close every socket with 1012 at once. The
        # workers replacing this one take logouts its in-process broker would never hear of.
        revocations.off()
        hub.states.off()
        hub.drain()

    app.extensions["emotion_drain"] = drain

    def publish(events):
        if events:
            UPDATES_STORED.inc(len(events))
            broker.publish_many([{"kind": "event", "user_id": e["user_id"], "event": e} for e in events])

    with app.app_context():  # the engine object only; nothing connects yet
        app.extensions["emotion_committer"] = GroupCommitter(db.engine, publish)
