"""Settings from the environment, and the refusal to run production with default secrets."""
import pytest

import config
from emotion_app import create_app


def test_defaults():
    settings = config.settings({})
    assert settings["APP_ENV"] == "development"
    assert settings["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///") and "instance" in settings["SQLALCHEMY_DATABASE_URI"]
    assert settings["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds() == 900
    assert settings["EMOTIONS"] == ("happy", "sad", "angry", "surprised", "fearful", "disgusted", "neutral")
    assert settings["WS_MAX_MESSAGE_BYTES"] == 4096
    server = config.server_settings({})
    assert server["bind"] == "0.0.0.0:8000" and server["workers"] == 1


def test_detection_defaults():
    settings = config.settings({})
    assert settings["DETECTION"] is True and settings["DETECTION_LOAD"] == "lazy"
    assert settings["DETECTION_THREADS"] == (config.os.cpu_count() or 1)
    assert (settings["DETECT_MAX_TEXT"], settings["DETECT_MAX_IMAGE_BYTES"], settings["DETECT_MAX_PIXELS"]) == (
        1000, 5 * 1024 * 1024, 16777216
    )
    assert settings["DETECT_UNCERTAIN_BELOW"] == 0.45 and settings["RATE_LIMIT_DETECT"] == "30 per minute"
    assert config.settings({"DETECTION": "off"})["DETECTION"] is False
    assert config.settings(config.LIMITS_OFF)["RATE_LIMIT_DETECT"] is None


def test_values_from_the_environment():
    settings = config.settings(
        {"ACCESS_TOKEN_TTL": "60", "EMOTIONS": " Calm, EXCITED ,calm", "DATABASE_URL": "postgresql+psycopg://db/x"}
    )
    assert settings["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds() == 60
    assert settings["EMOTIONS"] == ("calm", "excited")
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://db/x"
    assert config.server_settings({"HOST": "::1", "PORT": "9000"})["bind"] == "[::1]:9000"


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"ACCESS_TOKEN_TTL": "soon"}, "ACCESS_TOKEN_TTL"),
        ({"ACCESS_TOKEN_TTL": "0"}, "ACCESS_TOKEN_TTL"),
        ({"WS_COMPRESSION": "maybe"}, "WS_COMPRESSION"),
        ({"APP_ENV": "staging"}, "APP_ENV"),
        ({"EMOTIONS": " , "}, "EMOTIONS"),
        ({"DETECTION": "maybe"}, "DETECTION"),
        ({"DETECTION_LOAD": "eager"}, "DETECTION_LOAD"),
        ({"DETECTION_THREADS": "0"}, "DETECTION_THREADS"),
        ({"DETECT_UNCERTAIN_BELOW": "1.5"}, "DETECT_UNCERTAIN_BELOW"),
        ({"RATE_LIMIT_DETECT": "lots"}, "RATE_LIMIT_DETECT"),
    ],
)
def test_invalid_values_name_the_variable(env, variable):
    with pytest.raises(config.ConfigError, match=variable):
        config.settings(env)


def test_several_workers_are_refused_without_a_shared_broker():
    with pytest.raises(config.ConfigError, match="WEB_CONCURRENCY"):
        config.server_settings({"WEB_CONCURRENCY": "2"})


@pytest.mark.parametrize(
    "secrets, missing",
    [
        ({}, "SECRET_KEY and JWT_SECRET_KEY"),
        ({"SECRET_KEY": "a-long-random-value-0123456789"}, "JWT_SECRET_KEY"),
        ({"SECRET_KEY": "change-me", "JWT_SECRET_KEY": "a-long-random-value-0123456789"}, "SECRET_KEY"),
    ],
)
def test_production_refuses_missing_or_default_secrets(monkeypatch, secrets, missing):
    for name in ("SECRET_KEY", "JWT_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APP_ENV", "production")
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError) as info:
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert f"needs {missing} set" in str(info.value)


def test_development_generates_and_keeps_secrets(monkeypatch, tmp_path):
    for name in ("SECRET_KEY", "JWT_SECRET_KEY", "APP_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(config, "INSTANCE_DIR", str(tmp_path))
    first = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    second = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert len(first.config["JWT_SECRET_KEY"]) >= 32
    assert first.config["SECRET_KEY"] != first.config["JWT_SECRET_KEY"]
    # Kept in instance/, so tokens stay valid across restarts and across workers.
    assert (first.config["SECRET_KEY"], first.config["JWT_SECRET_KEY"]) == (
        second.config["SECRET_KEY"], second.config["JWT_SECRET_KEY"]
    )
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o777 == 0o600


class RecordingEnv(dict):
    """An empty environment that remembers which variables were asked for."""

    def __init__(self):
        super().__init__()
        self.asked = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)


def test_every_variable_is_listed_and_documented_once():
    env = RecordingEnv()
    config.settings(env)
    config.server_settings(env)
    assert env.asked == set(config.VARIABLES)
    readme = (config.BASE_DIR + "/README.md")
    rows = [line for line in open(readme).read().splitlines() if line.startswith("| `")]
    documented = [row.split("`")[1] for row in rows]
    for name in config.VARIABLES:
        assert documented.count(name) == 1, f"{name} must appear once in the README's configuration table"


def test_redis_and_postgres_run_one_worker_per_core(monkeypatch):
    monkeypatch.setattr(config.os, "cpu_count", lambda: 4)
    scaled = {"REDIS_URL": "redis://127.0.0.1:6379/0", "DATABASE_URL": "postgresql+psycopg://db/app"}
    server = config.server_settings(scaled)
    assert server["workers"] == 4 and server["broker"] == "redis"
    assert config.server_settings({**scaled, "WEB_CONCURRENCY": "3"})["workers"] == 3
    assert config.server_settings({})["broker"] == "in-process"
    # Redis with SQLite: one worker by default, and more are refused.
    assert config.server_settings({"REDIS_URL": "redis://127.0.0.1:6379/0"})["workers"] == 1
    with pytest.raises(config.ConfigError, match="needs PostgreSQL"):
        config.server_settings({"REDIS_URL": "redis://x", "WEB_CONCURRENCY": "2"})
