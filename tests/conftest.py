"""Fixtures: apps on a fresh database (SQLite and PostgreSQL), a test client, an auth helper, and real
gunicorn servers with real WebSocket clients."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
import websocket
from flask_migrate import upgrade

import config
from emotion_app import create_app
from emotion_app.extensions import db

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TEST_SECRETS = {
    "SECRET_KEY": "test-secret-key-3f9c2b7a5e1d4c8b",
    "JWT_SECRET_KEY": "test-jwt-secret-key-8e2d6f1a9b3c7d5e",
}
PASSWORD = "correct horse battery"
# The suite plays many clients from one address: abuse limits are off unless a test sets them
# (test_security.py does, limit by limit).
LIMITS_OFF = config.LIMITS_OFF


# ---------------------------------------------------------------------------------------- databases


def migrate(url):
    """Apply the migrations to the (empty) database at `url` the way `flask db upgrade` does."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, **TEST_SECRETS})
    with app.app_context():
        upgrade()
        db.engine.dispose()


def _postgres_installed():
    return bool(shutil.which("pg_ctlcluster") or shutil.which("postgres") or os.path.isdir("/etc/postgresql"))


@pytest.fixture(scope="session")
def postgres_server():
    """The admin URL of a reachable PostgreSQL server (skips only where PostgreSQL is not installed)."""
    engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        if not _postgres_installed():
            pytest.skip(f"PostgreSQL is not installed on this machine, so its half of the suite cannot run: {exc}")
        pytest.fail(
            f"PostgreSQL is installed but not reachable at {POSTGRES_ADMIN_URL}: start it "
            "(.ci/run does) or set TEST_POSTGRES_URL\n{exc}"
        )
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_template(postgres_server):
    """A migrated PostgreSQL database for this test run, dropped at the end."""
    name = f"emotion_app_test_{os.getpid()}"
    with postgres_server.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = postgres_server.url.set(database=name).render_as_string(hide_password=False)
    migrate(url)
    yield url
    with postgres_server.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_databases(postgres_server):
    """Create fresh, migrated PostgreSQL databases (for servers that share one); all dropped at the end."""
    names = []

    def create():
        name = f"emotion_app_test_{os.getpid()}_{len(names) + 1}"
        with postgres_server.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        names.append(name)
        url = postgres_server.url.set(database=name).render_as_string(hide_password=False)
        migrate(url)
        return url

    yield create
    with postgres_server.connect() as conn:
        for name in names:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A migrated SQLite file; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


def fresh_sqlite(template, directory):
    """Copy the migrated template into `directory` and return its URL."""
    path = Path(directory) / f"test-{uuid.uuid4().hex[:8]}.db"
    shutil.copy(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, sqlite_template):
    """A fresh, migrated database of each backend."""
    if request.param == "sqlite":
        yield fresh_sqlite(sqlite_template, tmp_path)
        return
    url = request.getfixturevalue("postgres_template")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE users, emotion_events, revoked_tokens, app_state RESTART IDENTITY CASCADE"))
    engine.dispose()
    yield url


# ---------------------------------------------------------------------------------------- redis

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url():
    """The URL of a reachable Redis server (skips only where Redis is not installed)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        if not shutil.which("redis-server"):
            pytest.skip(f"Redis is not installed on this machine, so the Redis broker cannot be tested: {exc}")
        pytest.fail(f"Redis is installed but not reachable at {REDIS_URL}: start it (.ci/run does) or set TEST_REDIS_URL\n{exc}")
    finally:
        client.close()
    return REDIS_URL


class PrivateRedis:
    """A redis-server of our own on a free port, to stop and restart during a test."""

    def __init__(self, workdir):
        self.port = free_port()
        self.workdir = Path(workdir)
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed on this machine")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def private_redis(tmp_path, redis_url):
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


# ---------------------------------------------------------------------------------------- apps


@pytest.fixture
def make_app(database_url):
    """Build apps on the test's database, with config overrides."""
    apps = []

    def factory(**overrides):
        limits_off = {k: v for k, v in config.settings(LIMITS_OFF).items() if k in LIMITS_OFF}
        app = create_app(
            {"SQLALCHEMY_DATABASE_URI": database_url, "TESTING": True, **TEST_SECRETS, **limits_off, **overrides}
        )
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


class Auth:
    """Registers and logs in users through the HTTP API of a test client."""

    def __init__(self, client):
        self.client = client

    def register(self, username=None, password=PASSWORD):
        username = username or f"user_{uuid.uuid4().hex[:10]}"
        response = self.client.post("/api/auth/register", json={"username": username, "password": password})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def login(self, username=None, password=PASSWORD):
        """Register (if no username is given) and log in; return the login response body."""
        if username is None:
            username = self.register()["username"]
        response = self.client.post("/api/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    @staticmethod
    def bearer(token):
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth(client):
    return Auth(client)


# ---------------------------------------------------------------------------------------- live servers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(**overrides):
    """The environment of a served app: the machine's, our test secrets, then `overrides`."""
    # The machine's environment minus any setting of ours, so a developer's shell cannot leak in.
    env = {k: v for k, v in os.environ.items() if k not in config.VARIABLES and not k.startswith("PYTEST")}
    env.update(APP_ENV="development", HOST="127.0.0.1", LOG_LEVEL="warning", **TEST_SECRETS, **LIMITS_OFF)
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class LiveServer:
    """A real gunicorn + gevent server in a subprocess, and a tiny HTTP client for it."""

    def __init__(self, workdir, command=None, **env):
        self.port = free_port()
        self.log_path = Path(workdir) / f"server-{self.port}.log"
        # Its own metrics directory: servers of a test run must not share (or wipe) each other's.
        env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(Path(workdir) / f"metrics-{self.port}"))
        self.env = server_env(PORT=self.port, **env)
        self.command = command or [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"]
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}/api/ws"

    def start(self, timeout=60):
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.log()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def kill(self):
        """End the server at once (SIGKILL to its process group): for tearing down, not for testing restarts."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def worker_pids(self):
        """PIDs of the gunicorn workers (children of the master, which may sit behind a shell)."""
        children = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        pids, frontier = [], [self.proc.pid]
        while frontier:
            pid = frontier.pop()
            kids = children.get(pid, [])
            if not kids and pid != self.proc.pid:
                pids.append(pid)
            frontier += kids
        return sorted(pids)

    def sockets_per_worker(self):
        """How many established client connections each worker holds: {pid: count}."""
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == self.port and fields[3] == "01":
                    inodes.add(fields[9])
        counts = {}
        for pid in self.worker_pids():
            try:
                links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
            except OSError:
                continue
            counts[pid] = sum(1 for link in links if link.startswith("socket:[") and link[8:-1] in inodes)
        return counts

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(self, method, path, body=None, token=None, headers=None, timeout=10):
        """Make an HTTP request; return (status, parsed JSON body or raw text)."""
        data = None
        headers = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def login(self, username=None, password=PASSWORD):
        """Register a new user (unless `username` is given) and log in; return the login body."""
        if username is None:
            username = f"user_{uuid.uuid4().hex[:10]}"
            status, body = self.request("POST", "/api/auth/register", {"username": username, "password": password})
            assert status == 201, body
        status, body = self.request("POST", "/api/auth/login", {"username": username, "password": password})
        assert status == 200, body
        return body

    def connect(self, token, via="query", since=None, device=None, **kwargs):
        """Open a WebSocket with the token as ?token= (via="query") or a Bearer header (via="header"),
        naming the device `device` (?device=) if given."""
        kwargs.setdefault("timeout", 5)
        params = {"since": since, "device": device}
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        if via == "query":
            query = f"{query}&token={token}" if query else f"token={token}"
            return websocket.create_connection(f"{self.ws_url}?{query}", **kwargs)
        url = f"{self.ws_url}?{query}" if query else self.ws_url
        return websocket.create_connection(url, header=[f"Authorization: Bearer {token}"], **kwargs)

    def device(self, token, via="query", **kwargs):
        """Connect and consume `connection_established`; return (socket, that first frame)."""
        ws = self.connect(token, via=via, **kwargs)
        first = recv_json(ws)
        assert first["type"] == "connection_established", first
        return ws, first


def wait_until(predicate, timeout=15, message="condition"):
    """Poll `predicate` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {message}"
        time.sleep(0.02)


def recv_json(ws, timeout=5, skip=("presence",)):
    """The next text frame of `ws`, parsed, passing over frames whose type is in `skip`.

    Presence frames arrive whenever another device of the user comes or goes; tests of other things
    pass over them (test_presence.py reads them with skip=()).
    """
    ws.settimeout(timeout)
    while True:
        frame = json.loads(ws.recv())
        if frame.get("type") not in skip:
            return frame


def recv_close(ws, timeout=5, skip=("presence",)):
    """Read until the close frame; return (code, reason, text frames before it)."""
    ws.settimeout(timeout)
    frames = []
    while True:
        # The raw frames: websocket-client's recv_data would answer the close itself, which fails
        # (and hides the close) when the server has already dropped the connection.
        frame = ws.recv_frame()
        opcode, data = frame.opcode, frame.data
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            return code, data[2:].decode(errors="replace"), frames
        if opcode == websocket.ABNF.OPCODE_TEXT:
            frame = json.loads(data)
            if frame.get("type") not in skip:
                frames.append(frame)


@pytest.fixture(scope="module")
def server_factory(tmp_path_factory, sqlite_template):
    """Start live servers (each on its own fresh SQLite database unless DATABASE_URL is given)."""
    workdir = tmp_path_factory.mktemp("servers")
    servers = []

    def start(**env):
        env.setdefault("DATABASE_URL", fresh_sqlite(sqlite_template, workdir))
        server = LiveServer(workdir, **env)
        servers.append(server)
        return server.start()

    yield start
    # A graceful stop waits for idle keep-alive connections (gunicorn's `keepalive`): seconds per
    # server that tell nothing once the module's tests are done.
    for server in servers:
        server.kill()


@pytest.fixture(scope="module")
def live_server(server_factory):
    """A server with the default settings, shared by a module's tests (each test uses its own users)."""
    return server_factory()
