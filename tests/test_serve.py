"""The README's serve command, run for real: migrations applied, gunicorn serving, login over HTTP."""
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from tests.conftest import ROOT, LiveServer, server_env

SERVE = ["bash", "scripts/serve.sh"]

# The newest migration: serving must have applied all of them.
HEAD_REVISION = ScriptDirectory(str(ROOT / "migrations")).get_current_head()


def test_serve_command_applies_migrations_and_serves(tmp_path):
    db_path = tmp_path / "served.db"
    server = LiveServer(tmp_path, command=SERVE, DATABASE_URL=f"sqlite:///{db_path}", LOG_LEVEL="info")
    server.start()
    try:
        tokens = server.login()
        assert tokens["token_type"] == "Bearer" and tokens["access_token"].count(".") == 2
        status, me = server.request("GET", "/api/auth/me", token=tokens["access_token"])
        assert status == 200 and me == tokens["user"]
        assert "Using worker: gevent" in server.log() and "1 gevent worker(s)" in server.log()
    finally:
        server.stop()
    engine = sa.create_engine(f"sqlite:///{db_path}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == HEAD_REVISION
        assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar() == 1
    engine.dispose()


def run_serve(tmp_path, **env):
    return subprocess.run(
        SERVE,
        cwd=ROOT,
        env=server_env(DATABASE_URL=f"sqlite:///{Path(tmp_path) / 'x.db'}", PORT=1, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_without_secrets_refuses_to_start(tmp_path):
    env = server_env()
    result = subprocess.run(
        SERVE,
        cwd=ROOT,
        env={k: v for k, v in env.items() if k not in ("SECRET_KEY", "JWT_SECRET_KEY")}
        | {"APP_ENV": "production", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "configuration error: APP_ENV=production needs SECRET_KEY and JWT_SECRET_KEY set" in result.stderr


def test_several_workers_without_a_shared_broker_are_refused(tmp_path):
    result = run_serve(tmp_path, WEB_CONCURRENCY=2)
    assert result.returncode != 0
    assert "WEB_CONCURRENCY=2 needs a shared broker" in result.stderr + result.stdout


def test_serve_command_with_postgres_and_redis_runs_a_worker_per_core(tmp_path, postgres_server, redis_url):
    import os

    # serve.sh applies the migrations itself, to an empty PostgreSQL database.
    name = f"emotion_app_serve_{os.getpid()}"
    with postgres_server.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = postgres_server.url.set(database=name).render_as_string(hide_password=False)
    server = LiveServer(tmp_path, command=SERVE, DATABASE_URL=url, REDIS_URL=redis_url, LOG_LEVEL="info")
    server.start()
    try:
        assert len(server.worker_pids()) == (os.cpu_count() or 1)
        assert f"{os.cpu_count()} gevent worker(s), Redis broker" in server.log()
        tokens = server.login()
        assert server.request("GET", "/api/auth/me", token=tokens["access_token"])[0] == 200
    finally:
        server.stop()
        with postgres_server.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_runtime_requirements_alone_are_enough_to_serve(tmp_path):
    # The test environment has more installed (pytest and friends) than requirements.txt gives a
    # server: build a venv from requirements.txt alone and serve from it.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(ROOT / "requirements.txt")],
        capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    db_path = tmp_path / "alone.db"
    env = {"DATABASE_URL": f"sqlite:///{db_path}"}
    migrate = subprocess.run(
        [str(venv / "bin" / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT, env=server_env(**env), capture_output=True, text=True, timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    server = LiveServer(tmp_path, command=[str(venv / "bin" / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"], **env)
    server.start()
    try:
        assert server.login()["token_type"] == "Bearer"
        ws, first = server.device(server.login()["access_token"])
        assert first["type"] == "connection_established"
        ws.close()
    finally:
        server.stop()
