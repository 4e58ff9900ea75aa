"""The client contract's websocat commands, run as written (but for the port) against a served app."""
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from queue import Empty, Queue

import pytest

WEBSOCAT = shutil.which("websocat", path=str(Path(sys.executable).parent))


class Websocat:
    """A websocat process used as a person would: type a line, read the lines it prints."""

    def __init__(self, *args):
        if WEBSOCAT is None:
            pytest.fail("websocat is missing from the virtual environment: it comes with requirements-dev.txt")
        self.proc = subprocess.Popen(
            [WEBSOCAT, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines = Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def type(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self, timeout=5):
        """The next frame websocat printed, passing over presence frames (other devices coming and going)."""
        while True:
            try:
                frame = json.loads(self.lines.get(timeout=timeout))
            except Empty:
                self.close()
                pytest.fail(f"websocat printed nothing within {timeout}s; stderr: {self.proc.stderr.read()}")
            if frame.get("type") != "presence":
                return frame

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_two_websocat_sessions_as_in_the_contract(live_server):
    tokens = live_server.login()
    token, user_id = tokens["access_token"], tokens["user"]["id"]
    port = live_server.port
    # Exactly the contract's two commands:
    #   websocat "ws://localhost:8000/api/ws?token=YOUR_JWT_TOKEN"
    #   websocat -H="Authorization: Bearer YOUR_JWT_TOKEN" "ws://localhost:8000/api/ws"
    by_query = Websocat(f"ws://localhost:{port}/api/ws?token={token}")
    by_header = Websocat(f"-H=Authorization: Bearer {token}", f"ws://localhost:{port}/api/ws")
    try:
        for session in (by_query, by_header):
            first = session.read()
            assert first["type"] == "connection_established" and first["user_id"] == user_id

        by_query.type('{"type":"emotion_update","emotion":"sad"}')
        on_query, on_header = by_query.read(), by_header.read()
        assert on_query == on_header
        assert on_query["type"] == "emotion_update" and on_query["emotion"] == "sad"

        by_header.type('{"type":"emotion_update","emotion":"happy","timestamp":"2023-05-09T14:45:00.000Z"}')
        on_query, on_header = by_query.read(), by_header.read()
        assert on_query == on_header and on_query["emotion"] == "happy"

        by_header.type('{"type":"ping","timestamp":"2023-05-09T14:40:00.000Z"}')
        assert by_header.read()["type"] == "pong"

        by_query.type("this is not json")
        assert by_query.read() == {"type": "error", "message": "Invalid message format", "code": "invalid_format"}
    finally:
        by_query.close()
        by_header.close()
