"""The `emotion` command line end to end, as a person or a script runs it: a subprocess against a real
server, its logins kept in a private config directory, the password taken from EMOTION_PASSWORD."""
import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, free_port

EMOTION = Path(sys.executable).parent / "emotion"


class Cli:
    """Runs `emotion` with its own config directory, against one server."""

    def __init__(self, config_dir, server_url):
        self.config_dir = Path(config_dir)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTION_")}
        self.env.update(EMOTION_CONFIG_DIR=str(config_dir), EMOTION_SERVER=server_url, EMOTION_DEVICE="Terminal")

    def run(self, *args, password=None, timeout=20):
        env = dict(self.env)
        if password is not None:
            env["EMOTION_PASSWORD"] = password
        # No terminal on stdin: nothing may wait for typing.
        done = subprocess.run(
            [str(EMOTION), *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def popen(self, *args):
        return subprocess.Popen(
            [str(EMOTION), *args], env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )

    @property
    def token_file(self):
        return self.config_dir / "tokens.json"


@pytest.fixture
def cli(tmp_path, live_server):
    return Cli(tmp_path / "config", live_server.url)


@pytest.fixture
def user(live_server):
    username = f"user_{uuid.uuid4().hex[:10]}"
    status, _ = live_server.request("POST", "/api/auth/register", {"username": username, "password": PASSWORD})
    assert status == 201
    return username


def test_a_session_from_login_to_logout(cli, user, live_server):
    login = cli.run("login", "--username", user, password=PASSWORD)
    assert login.returncode == 0 and user in login.stdout
    assert stat.S_IMODE(cli.token_file.stat().st_mode) == 0o600
    kept = cli.token_file.read_text()
    assert PASSWORD not in kept and live_server.url in json.loads(kept)["servers"]

    assert cli.run("set", "happy").returncode == 0
    assert cli.run("set", "sad").returncode == 0
    now = cli.run("now")
    assert now.returncode == 0 and now.stdout.startswith("sad since ") and "on Terminal" in now.stdout

    history = cli.run("history")
    assert [line.split()[2] for line in history.stdout.splitlines()] == ["sad", "happy"]
    assert len(cli.run("history", "--limit", "1").stdout.splitlines()) == 1
    assert "No emotions recorded since then" in cli.run("history", "--since", "2999-01-01").stdout
    assert len(cli.run("history", "--since", "2000-01-01T00:00").stdout.splitlines()) == 2

    devices = cli.run("devices")
    assert devices.returncode == 0 and devices.stdout.startswith("0 devices online")
    stats = cli.run("stats", "--days", "7")
    assert stats.returncode == 0 and "Last 7 days" in stats.stdout
    assert {line.split()[0] for line in stats.stdout.splitlines()[1:]} == {"happy", "sad"}

    logout = cli.run("logout")
    assert logout.returncode == 0
    assert json.loads(cli.token_file.read_text())["servers"] == {}
    after = cli.run("now")
    assert after.returncode == 2 and "Not logged in" in after.stderr


def test_watch_json_prints_one_object_per_change_until_interrupted(cli, user):
    cli.run("login", "-u", user, password=PASSWORD)
    cli.run("set", "neutral")
    watch = cli.popen("watch", "--json")
    try:
        first = json.loads(watch.stdout.readline())  # the current state comes first
        assert first["emotion"] == "neutral"
        assert cli.run("set", "surprised").returncode == 0
        second = json.loads(watch.stdout.readline())
        assert second["emotion"] == "surprised" and second["id"] > first["id"] and second["device"] == "Terminal"
        assert cli.run("devices").stdout.startswith("1 device online")
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=10) == 130
        assert watch.stderr.read() == ""  # Ctrl-C is quiet
    finally:
        watch.kill()
        watch.wait()


def test_watch_ends_with_code_2_when_the_login_is_ended_elsewhere(cli, user):
    cli.run("login", "-u", user, password=PASSWORD)
    watch = cli.popen("watch")
    try:
        deadline = time.monotonic() + 10
        while "1 device online" not in cli.run("devices").stdout:
            assert time.monotonic() < deadline, "the watch did not connect"
            time.sleep(0.1)
        assert cli.run("logout").returncode == 0  # the same login, from another terminal
        assert watch.wait(timeout=10) == 2
        error = watch.stderr.read()
        assert "revoked" in error and "emotion login" in error and "Traceback" not in error
    finally:
        watch.kill()
        watch.wait()


def test_exit_codes_for_usage_auth_and_an_unreachable_server(cli, user, tmp_path):
    # 1: usage.
    for args in ([], ["frobnicate"], ["set"], ["history", "--limit", "0"], ["history", "--since", "yesterday"],
                 ["login", "-u", user, "--password", PASSWORD]):  # a password is never taken from argv
        done = cli.run(*args)
        assert done.returncode == 1, (args, done.stderr)
        assert "usage:" in done.stderr
    no_password = cli.run("login", "-u", user)  # no terminal and no EMOTION_PASSWORD
    assert no_password.returncode == 1 and "EMOTION_PASSWORD" in no_password.stderr
    # 2: not logged in, wrong password.
    assert cli.run("now").returncode == 2
    wrong = cli.run("login", "-u", user, password="not the password")
    assert wrong.returncode == 2 and "Invalid username or password" in wrong.stderr
    assert not cli.token_file.exists()
    # The server refuses the request itself: a usage error, said in the server's words.
    cli.run("login", "-u", user, password=PASSWORD)
    unknown = cli.run("set", "bored")
    assert unknown.returncode == 1 and "Unknown emotion" in unknown.stderr
    # 3: nothing listens on the port (with a login kept for it, so that is the only problem).
    closed = f"http://127.0.0.1:{free_port()}"
    offline = Cli(tmp_path / "offline", closed)
    offline.config_dir.mkdir()
    (tokens,) = json.loads(cli.token_file.read_text())["servers"].values()
    offline.token_file.write_text(json.dumps({"servers": {closed: tokens}}))
    for args in (["login", "-u", user], ["now"], ["watch"]):
        done = offline.run(*args, password=PASSWORD)
        assert done.returncode == 3, (args, done.stderr)
        assert done.stderr.startswith("emotion: Cannot reach") and len(done.stderr.splitlines()) == 1


def test_register_logs_in(cli):
    username = f"user_{uuid.uuid4().hex[:10]}"
    done = cli.run("register", "--username", username, password=PASSWORD)
    assert done.returncode == 0 and username in done.stdout
    assert cli.run("now").stdout.strip() == "No emotion set yet"
    taken = cli.run("register", "--username", username, password=PASSWORD)
    assert taken.returncode == 1 and "already taken" in taken.stderr
