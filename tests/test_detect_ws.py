"""Detection on a real gunicorn + gevent server: the socket's detect frame, applied results pushed to the user's
other devices, the event loop staying responsive while detections run, models loaded at startup, and, in
subprocesses, no network use and an app that runs without the model packages."""
import json
import os
import subprocess
import sys
import threading
import time
import pytest

from tests.conftest import BIN, ROOT, LiveServer, fresh_sqlite, recv_json
from tests.detecthelpers import face_file, post_detect
from tests.test_metrics import scrape, value
from tests.test_ws import assert_quiet, stored_events

HAPPY = "I am so happy today"


@pytest.fixture(scope="module")
def detect_server(server_factory):
    """A server with the default settings (rate limits off, as for every test server)."""
    return server_factory()


def detect_frame(ws, **fields):
    """Send a detect frame; return the next frame that is not an emotion_update (its answer)."""
    ws.send(json.dumps({"type": "detect", **fields}))
    while True:
        frame = recv_json(ws, timeout=30)
        if frame["type"] != "emotion_update":
            return frame


# ------------------------------------------------------------------------------------------ the socket


def test_detect_over_the_socket(detect_server):
    tokens = detect_server.login()
    ws, _ = detect_server.device(tokens["access_token"])
    frame = detect_frame(ws, text=HAPPY, request_id="r-1")
    assert frame["type"] == "detected" and frame["request_id"] == "r-1"
    assert frame["emotion"] == "happy" and frame["based_on"] == "text" and frame["uncertain"] is False
    assert set(frame["scores"]) == {"happy", "sad", "angry", "surprised", "fearful", "disgusted", "neutral"}
    assert frame["applied"] is False and "text" in frame and "models" in frame
    # The same body as over HTTP.
    status, body = post_detect(detect_server, tokens["access_token"], text=HAPPY)
    assert status == 200
    assert set(frame) - {"type", "request_id"} == set(body)
    assert frame["scores"] == body["scores"]

    frame = detect_frame(ws, text="I am absolutely furious, how dare they lie to me like that", request_id=42)
    assert frame["emotion"] == "angry" and frame["request_id"] == 42
    assert stored_events(detect_server, tokens["access_token"]) == []
    ws.close()


@pytest.mark.parametrize("fields, code", [
    ({"text": ""}, "missing_input"),
    ({}, "missing_input"),
    ({"text": "a" * 1001}, "text_too_long"),
    ({"text": 7}, "invalid_field"),
    ({"text": HAPPY, "apply": "yes"}, "invalid_field"),
    ({"text": HAPPY, "image": "aGVsbG8="}, "invalid_field"),
    ({"text": HAPPY, "client_msg_id": ""}, "invalid_field"),
])
def test_bad_detect_frames_get_an_error_and_the_socket_stays(detect_server, fields, code):
    tokens = detect_server.login()
    ws, _ = detect_server.device(tokens["access_token"])
    frame = detect_frame(ws, request_id="bad", **{"apply": "always", **fields})
    assert frame["type"] == "error" and frame["code"] == code and frame["request_id"] == "bad", frame
    assert_quiet(ws)
    assert stored_events(detect_server, tokens["access_token"]) == []
    ws.close()


def test_a_bad_request_id_is_refused(detect_server):
    tokens = detect_server.login()
    ws, _ = detect_server.device(tokens["access_token"])
    frame = detect_frame(ws, text=HAPPY, request_id={"nested": True})
    assert frame["type"] == "error" and frame["code"] == "invalid_field" and "request_id" in frame["message"]
    assert "request_id" not in frame
    assert_quiet(ws)
    ws.close()


def test_apply_over_http_reaches_the_other_devices(detect_server):
    tokens = detect_server.login()
    phone, _ = detect_server.device(tokens["access_token"], device="phone")
    laptop, _ = detect_server.device(tokens["access_token"], device="laptop")
    status, body = post_detect(detect_server, tokens["access_token"], image=face_file("astronaut.jpg"), apply="true",
                               text=HAPPY, device="webcam", client_msg_id="shot-1")
    assert status == 200 and body["applied"] is True, body
    for ws in (phone, laptop):
        update = recv_json(ws)
        assert update["type"] == "emotion_update" and update["id"] == body["event"]["id"]
        assert update["emotion"] == "happy" and update["device"] == "webcam"
        assert update["source"] == "detected:text+face" and update["confidence"] == body["confidence"]
    # Sent again: the original event, nothing new stored or pushed.
    status, again = post_detect(detect_server, tokens["access_token"], image=face_file("astronaut.jpg"),
                                apply="true", text=HAPPY, device="webcam", client_msg_id="shot-1")
    assert status == 200 and again["event"]["duplicate"] is True and again["event"]["id"] == body["event"]["id"]
    assert_quiet(phone)
    assert len(stored_events(detect_server, tokens["access_token"])) == 1
    phone.close()
    laptop.close()


def test_apply_over_the_socket(detect_server):
    tokens = detect_server.login()
    sender, _ = detect_server.device(tokens["access_token"], device="tablet")
    other, _ = detect_server.device(tokens["access_token"])
    frame = detect_frame(sender, text=HAPPY, apply=True, client_msg_id="m-1", request_id="a")
    assert frame["type"] == "detected" and frame["applied"] is True and frame["request_id"] == "a"
    event = frame["event"]
    assert event["source"] == "detected:text" and event["device"] == "tablet"
    update = recv_json(other)
    assert update["type"] == "emotion_update" and update["id"] == event["id"] and update["source"] == "detected:text"
    frame = detect_frame(sender, text=HAPPY, apply=True, client_msg_id="m-1")
    assert frame["event"]["duplicate"] is True and frame["event"]["id"] == event["id"]
    assert len(stored_events(detect_server, tokens["access_token"])) == 1
    sender.close()
    other.close()


def test_http_and_socket_share_the_rate_limit(server_factory):
    server = server_factory(RATE_LIMIT_DETECT="2 per minute")
    tokens = server.login()
    ws, _ = server.device(tokens["access_token"])
    assert post_detect(server, tokens["access_token"], text=HAPPY)[0] == 200
    assert detect_frame(ws, text=HAPPY)["type"] == "detected"
    frame = detect_frame(ws, text=HAPPY, request_id=3, apply="always")
    assert frame["type"] == "error" and frame["code"] == "rate_limited" and frame["retry_after"] >= 1
    status, body = post_detect(server, tokens["access_token"], text=HAPPY)
    assert status == 429 and body["error"] == "rate_limited"
    assert stored_events(server, tokens["access_token"]) == []
    # Per user: someone else is not held back.
    assert post_detect(server, server.login()["access_token"], text=HAPPY)[0] == 200
    ws.close()


# ------------------------------------------------------------------------------------------ running well


def ping_while_detecting(server, token, watcher, photo):
    """Ten clients read `photo` three times each, at once, while `watcher` pings; return the ping round trips
    (seconds) and how long (seconds) the detections kept the server busy."""
    results, round_trips = [], []
    start = threading.Barrier(11)

    def detections():
        start.wait()
        for _ in range(3):
            results.append(post_detect(server, token, image=photo, timeout=60))

    workers = [threading.Thread(target=detections) for _ in range(10)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.monotonic()
    while any(worker.is_alive() for worker in workers):
        sent = time.perf_counter()
        watcher.send(json.dumps({"type": "ping"}))
        assert recv_json(watcher)["type"] == "pong"
        round_trips.append(time.perf_counter() - sent)
        time.sleep(0.01)
    busy = time.monotonic() - began
    for worker in workers:
        worker.join()
    assert len(results) == 30 and all(status == 200 and body["emotion"] == "happy" for status, body in results)
    return round_trips, busy


def test_pings_are_answered_while_ten_detections_run(detect_server):
    """The models run in OS threads: a socket's ping round trip stays under 100 ms while ten photos are read.

    A photo takes the face model 50-150 ms here, so a single detection run on the event loop fails this every
    time. Other processes on a shared machine can also hold a core for that long now and then: a run is
    measured again, up to three times, before the test fails.
    """
    photo = face_file("astronaut-640.jpg")
    token = detect_server.login()["access_token"]
    assert post_detect(detect_server, token, image=photo)[0] == 200  # models loaded
    watcher, _ = detect_server.device(detect_server.login()["access_token"])
    slowest = []
    for _ in range(3):
        round_trips, busy = ping_while_detecting(detect_server, token, watcher, photo)
        slowest.append(f"{max(round_trips) * 1000:.0f} ms of {len(round_trips)} pings")
        if max(round_trips) < 0.1:
            break
    else:
        pytest.fail(f"the slowest ping of each run took 100 ms or more: {', '.join(slowest)}")
    # Thirty photos on this machine's cores keep the server busy long enough for many pings.
    assert busy > 0.5 and len(round_trips) >= 20, (busy, len(round_trips))
    watcher.close()


def test_metrics_and_readiness(detect_server):
    tokens = detect_server.login()
    before = scrape(detect_server)
    assert post_detect(detect_server, tokens["access_token"], text=HAPPY)[0] == 200
    assert post_detect(detect_server, tokens["access_token"], image=face_file("blank.png"))[0] == 422
    assert post_detect(detect_server, tokens["access_token"], image=face_file("astronaut.jpg"), text=HAPPY)[0] == 200
    after = scrape(detect_server)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("emotion_app_detections_total", kind="text", outcome="ok") == 1
    assert moved("emotion_app_detections_total", kind="face", outcome="no_face_found") == 1
    assert moved("emotion_app_detections_total", kind="text+face", outcome="ok") == 1
    assert moved("emotion_app_detection_seconds_count", kind="face") == 1
    assert moved("emotion_app_detection_seconds_bucket", kind="text", le="+Inf") == 1
    status, body = detect_server.request("GET", "/readyz")
    assert status == 200 and body["detection"] == "ready"


def test_models_load_at_startup_when_asked(server_factory):
    lazy = server_factory()
    assert lazy.request("GET", "/readyz")[1]["detection"] == "not_loaded"
    eager = server_factory(DETECTION_LOAD="startup")
    deadline = time.monotonic() + 30
    while (status := eager.request("GET", "/readyz"))[1]["detection"] != "ready":
        assert status[0] == 200 and status[1]["detection"] == "not_loaded", status
        assert time.monotonic() < deadline, "the models did not load at startup"
        time.sleep(0.1)
    # No detection was asked for: the worker loaded them as it started.
    samples = scrape(eager)
    assert not any(name == "emotion_app_detections_total" and count for (name, _), count in samples.items())


# ------------------------------------------------------------------------------------------ in subprocesses

NETWORK_GUARD = '''
import json, socket, sys, tempfile

class NetworkBlocked(OSError):
    pass

attempts = []

def _check(address):
    if isinstance(address, (str, bytes)):  # a Unix socket
        return
    host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
    if host == "localhost" or host.startswith("127.") or host == "::1":
        return
    attempts.append(host)
    raise NetworkBlocked(f"outbound connection to {address!r} refused by the test")

_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
_create_connection, _getaddrinfo = socket.create_connection, socket.getaddrinfo

def connect(self, address):
    _check(address)
    return _connect(self, address)

def connect_ex(self, address):
    _check(address)
    return _connect_ex(self, address)

def create_connection(address, *args, **kwargs):
    _check(address)
    return _create_connection(address, *args, **kwargs)

def getaddrinfo(host, *args, **kwargs):
    if host is not None:
        _check((host,))
    return _getaddrinfo(host, *args, **kwargs)

socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
socket.create_connection, socket.getaddrinfo = create_connection, getaddrinfo

# The guard is really there.
for probe in (lambda: socket.create_connection(("192.0.2.1", 80), timeout=1),
              lambda: socket.socket().connect(("192.0.2.1", 80)),
              lambda: socket.getaddrinfo("example.org", 443)):
    try:
        probe()
    except NetworkBlocked:
        pass
    else:
        sys.exit("the network guard is not installed")
probes = len(attempts)

sys.path.insert(0, ".")
from flask_migrate import upgrade
from emotion_app import create_app

url = "sqlite:///" + tempfile.mkdtemp() + "/guarded.db"
app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "s" * 40, "JWT_SECRET_KEY": "j" * 40,
                  "RATE_LIMIT_AUTH": None, "RATE_LIMIT_DETECT": None})
with app.app_context():
    upgrade()
client = app.test_client()
client.post("/api/auth/register", json={"username": "guarded", "password": "correct horse battery"})
token = client.post("/api/auth/login", json={"username": "guarded", "password": "correct horse battery"}).get_json()
headers = {"Authorization": "Bearer " + token["access_token"]}
text = client.post("/api/emotions/detect", json={"text": "I am so happy today"}, headers=headers)
with open("data/detection/faces/astronaut.jpg", "rb") as photo:
    face = client.post("/api/emotions/detect", data={"image": (photo, "a.jpg")}, headers=headers,
                       content_type="multipart/form-data")
print(json.dumps({"probes": probes, "attempts": attempts[probes:], "text": [text.status_code, text.get_json()],
                  "face": [face.status_code, face.get_json()]}))
'''


def test_no_model_touches_the_network(tmp_path):
    script = tmp_path / "guarded.py"
    script.write_text(NETWORK_GUARD)
    # Nothing in the environment may tell a library to stay offline: the guard must be what stops it.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "TRANSFORMERS_", "PROMETHEUS_")) and k not in ("DATABASE_URL", "DETECTION")}
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True,
                                        text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["probes"] == 3  # the probes were refused by the guard
    assert report["text"][0] == 200 and report["text"][1]["emotion"] == "happy", report["text"]
    assert report["face"][0] == 200 and report["face"][1]["emotion"] == "happy", report["face"]
    assert report["attempts"] == []  # and nothing else was tried


BLOCK_MODEL_PACKAGES = '''
import sys

BLOCKED = {"numpy", "cv2", "PIL", "ai_edge_litert", "tokenizers", "safetensors"}

class Uninstalled:
    """Imports of the model packages fail as if they were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, Uninstalled())
assert not BLOCKED & set(sys.modules), sorted(BLOCKED & set(sys.modules))
sys.argv = ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
from gunicorn.app.wsgiapp import run
sys.exit(run())
'''


@pytest.mark.parametrize("detection, code", [("off", "detection_disabled"), ("on", "detection_unavailable")])
def test_the_app_runs_without_the_model_packages(tmp_path, sqlite_template, detection, code):
    script = tmp_path / "uninstalled.py"
    script.write_text(BLOCK_MODEL_PACKAGES)
    server = LiveServer(tmp_path, command=[str(BIN / "python"), str(script)], DETECTION=detection,
                        DATABASE_URL=fresh_sqlite(sqlite_template, tmp_path))
    try:
        server.start()
        tokens = server.login()
        status, event = server.request("POST", "/api/emotions", {"emotion": "happy"}, token=tokens["access_token"])
        assert status == 201 and event["emotion"] == "happy"
        ws, first = server.device(tokens["access_token"])
        assert first["current"]["id"] == event["id"]
        status, body = post_detect(server, tokens["access_token"], text=HAPPY, apply="always")
        assert status == 503 and body["error"] == code, body
        status, body = post_detect(server, tokens["access_token"], image=face_file("astronaut.jpg"))
        assert status == 503 and body["error"] == code, body
        frame = detect_frame(ws, text=HAPPY, request_id="x")
        assert frame["type"] == "error" and frame["code"] == code
        status, ready = server.request("GET", "/readyz")
        assert status == 200 and ready["status"] == "ready"
        if detection == "off":
            assert ready["detection"] == "off"
        else:
            # Says what is missing, here and in the 503.
            assert ready["detection"].startswith("unavailable: ") and "blocked by the test" in ready["detection"]
            assert "blocked by the test" in body["message"]
        assert len(stored_events(server, tokens["access_token"])) == 1
        ws.close()
    finally:
        server.kill()
    assert "Traceback" not in server.log(), server.log()[-3000:]
