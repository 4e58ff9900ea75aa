"""The detect panel, used the way a person uses it: Chromium's fake camera plays data/detection/faces/webcam.mjpeg
(the public-domain astronaut portrait, smiling) to the page, which sends a snapshot to the real gunicorn
server; applying the result reaches the user's other devices like any other change.

The models load in the server on the first detection (DETECTION_LOAD=lazy), so the first answers get time.
"""
import json
import re
from pathlib import Path

import pytest
import websocket
from playwright.sync_api import expect

from browserhelpers import chromium, devices, history, register, serious_findings  # noqa: F401 (fixtures)
from conftest import recv_json

FACES = Path(__file__).resolve().parent.parent / "data" / "detection" / "faces"
FIRST_ANSWER = 60_000  # ms: the first detection of a server loads its models
# A GIF: a picture the browser reads but the server does not take.
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")


@pytest.fixture(scope="module")
def browser():
    """Chromium whose camera is the fake one, playing the astronaut, allowed without asking."""
    camera = FACES / "webcam.mjpeg"
    assert camera.is_file(), camera
    with chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-video-capture={camera}") as launched:
        yield launched


def chart_scores(page):
    """The detect chart's bars: {emotion label: percent}."""
    data = page.evaluate("""() => {
        const chart = Chart.getChart(document.getElementById("detect-chart"));
        return {labels: chart.data.labels, values: chart.data.datasets[0].data};
    }""")
    return {label.split(" ", 1)[1]: value for label, value in zip(data["labels"], data["values"])}


def percent_at_least(floor, prefix="", suffix=""):
    """A pattern for "<prefix>NN %<suffix>" with NN from `floor` to 100."""
    numbers = "|".join(str(n) for n in range(100, floor - 1, -1))
    return re.compile(rf"^{re.escape(prefix)}({numbers}) %{re.escape(suffix)}$")


def next_update(ws, timeout=10):
    """The next emotion_update frame of a Python socket (other frames passed over)."""
    while True:
        frame = recv_json(ws, timeout=timeout)
        if frame["type"] == "emotion_update":
            return frame


def test_a_webcam_snapshot_is_read_as_happy_and_applied_once_on_every_device(live_server, devices):
    username, _ = register(live_server)
    token = live_server.login(username)["access_token"]
    ws, _ = live_server.device(token, device="Python")
    try:
        laptop, phone = devices(live_server), devices(live_server, width=390, height=844)
        laptop.log_in(username)
        laptop.rename("Laptop")
        phone.log_in(username)
        page = laptop.page

        page.click("#camera-start")
        expect(page.locator("#camera-video")).to_be_visible()
        expect(page.locator("#camera-snap")).to_be_enabled(timeout=10_000)  # once frames arrive
        page.evaluate("window.cameraTracks = document.getElementById('camera-video').srcObject.getTracks()")
        page.click("#camera-snap")
        expect(page.locator("#detect-emotion")).to_have_text("Happy", timeout=FIRST_ANSWER)
        # The camera is off once the snapshot is taken; the picture sent is shown with its face framed.
        expect(page.locator("#camera-video")).to_be_hidden()
        assert page.evaluate("window.cameraTracks.map((track) => track.readyState)") == ["ended"]
        expect(page.locator("#camera-start")).to_be_visible()
        expect(page.locator("#detect-picture")).to_have_attribute("aria-label", "The picture sent, 1 face framed")
        expect(page.locator("#detect-faces")).to_have_text("1 face found.")
        expect(page.locator("#detect-basis")).to_have_text("Based on the face.")
        expect(page.locator("#detect-uncertain")).to_be_hidden()
        expect(page.locator("#detect-confidence")).to_have_text(percent_at_least(90, suffix=" sure"))
        scores = chart_scores(page)
        assert set(scores) == {"Happy", "Sad", "Angry", "Surprised", "Fearful", "Disgusted", "Neutral"}
        assert max(scores, key=scores.get) == "Happy" and scores["Happy"] >= 90
        assert "happy" in page.locator("#detect-chart").get_attribute("aria-label")
        expect(page.locator("#detect-models")).to_contain_text("face: ")
        assert serious_findings(page) == []  # the panel with its result

        # A double click applies it once.
        page.locator("#detect-apply").dblclick()
        expect(page.locator("#detect-applied")).to_have_text("Applied: Happy is your emotion now.")
        laptop.expect_now("happy")

        update = next_update(ws)
        assert update["emotion"] == "happy"
        assert update["source"] == "detected:face"
        assert update["confidence"] >= 0.9
        assert update["device"] == "Laptop"
        phone.expect_now("happy")
        expect(phone.page.locator("#now-meta")).to_contain_text("from Laptop, detected from a face")
        note = phone.page.locator("#timeline-days .entry .detected-note")
        expect(note).to_have_count(1)
        expect(note).to_have_text(percent_at_least(90, prefix="detected from a face, "))

        events = history(live_server, token)
        assert len(events) == 1, events
        assert events[0]["source"] == "detected:face" and events[0]["client_msg_id"]
        assert events[0]["id"] == update["id"]
        with pytest.raises(websocket.WebSocketTimeoutException):
            next_update(ws, timeout=1)  # and nothing more was pushed
    finally:
        ws.close()


def test_a_sentence_is_read_and_applied(live_server, devices):
    username, _ = register(live_server)
    token = live_server.login(username)["access_token"]
    device = devices(live_server)
    device.log_in(username)
    page = device.page
    page.fill("#detect-text", "My heart is broken and I can't stop crying")
    page.locator("#detect-text").press("Control+Enter")
    expect(page.locator("#detect-emotion")).to_have_text("Sad", timeout=FIRST_ANSWER)
    expect(page.locator("#detect-basis")).to_have_text("Based on the sentence.")
    expect(page.locator("#detect-faces")).to_be_hidden()
    scores = chart_scores(page)
    assert max(scores, key=scores.get) == "Sad"
    assert abs(sum(scores.values()) - 100) < 1
    assert history(live_server, token) == []  # detecting stores nothing

    # The first Apply reaches the server but its answer is lost: the retry carries the detection's same
    # client_msg_id, and the server stores it once.
    applies = []

    def lose_the_answer(route):
        applies.append(json.loads(route.request.post_data))
        if len(applies) == 1:
            route.fetch()
            route.abort()
        else:
            route.continue_()

    device.allow(r"net::ERR_FAILED")
    page.route(lambda url: "apply=always" in url, lose_the_answer)
    page.click("#detect-apply")
    expect(page.locator("#detect-error")).to_have_text("The server cannot be reached.")
    page.click("#detect-apply")
    expect(page.locator("#detect-applied")).to_have_text("Sad was already applied.")
    page.unroute_all()
    assert applies[0]["client_msg_id"] == applies[1]["client_msg_id"]
    assert applies[0]["text"] == "My heart is broken and I can't stop crying"
    device.expect_now("sad")
    expect(page.locator("#detect-apply")).to_be_disabled()
    note = page.locator("#timeline-days .entry .detected-note")
    expect(note).to_contain_text("detected from a sentence, ")
    (event,) = history(live_server, token)
    assert event["emotion"] == "sad" and event["source"] == "detected:text"

    # A new detection can be applied again: it has its own id.
    page.fill("#detect-text", "I am so happy today")
    page.click("#detect-text-button")
    expect(page.locator("#detect-emotion")).to_have_text("Happy")
    expect(page.locator("#detect-apply")).to_have_text("Apply “Happy”")
    page.click("#detect-apply")
    device.expect_now("happy")
    assert [e["emotion"] for e in history(live_server, token)] == ["happy", "sad"]


def test_bad_input_is_explained_and_stores_nothing(live_server, devices):
    username, _ = register(live_server)
    token = live_server.login(username)["access_token"]
    device = devices(live_server)
    device.allow_http_errors(400, 413, 415, 422)
    device.log_in(username)
    page = device.page
    error = page.locator("#detect-error")

    page.click("#detect-text-button")
    expect(error).to_have_text("Write a sentence first.")  # said by the page, nothing sent

    page.fill("#detect-text", "so long " * 200)
    page.click("#detect-text-button")
    expect(error).to_have_text("The sentence is too long: at most 1000 characters.", timeout=FIRST_ANSWER)
    expect(page.locator("#detect-apply")).to_be_hidden()

    page.set_input_files("#detect-file", FACES / "landscape.jpg")
    expect(error).to_have_text(
        "No face found in the picture. Face the camera in good light, or choose another photo.", timeout=FIRST_ANSWER)
    expect(page.locator("#detect-picture")).to_be_visible()  # the picture that had no face
    expect(page.locator("#detect-status")).to_have_text("Nothing detected.")
    expect(page.locator("#detect-summary")).to_be_hidden()

    page.set_input_files("#detect-file", {"name": "dot.gif", "mimeType": "image/gif", "buffer": GIF})
    expect(error).to_have_text("That file is not a JPEG, PNG or WebP picture.")

    # With the sentence sent along, a picture without a face is read from the sentence alone.
    page.fill("#detect-text", "I am absolutely furious with my landlord")
    page.check("#detect-combine")
    page.set_input_files("#detect-file", FACES / "blank.png")
    expect(page.locator("#detect-emotion")).to_have_text("Angry")
    expect(error).to_have_text("")
    expect(page.locator("#detect-basis")).to_have_text("Based on the sentence.")
    expect(page.locator("#detect-faces")).to_have_text("No face found in the picture.")
    assert history(live_server, token) == []


def test_a_photo_and_a_sentence_together(live_server, devices):
    username, _ = register(live_server)
    token = live_server.login(username)["access_token"]
    device = devices(live_server)
    device.log_in(username)
    page = device.page
    page.fill("#detect-text", "What a wonderful surprise party, I loved every second")
    page.check("#detect-combine")
    page.set_input_files("#detect-file", FACES / "astronaut.jpg")
    expect(page.locator("#detect-emotion")).to_have_text("Happy", timeout=FIRST_ANSWER)
    expect(page.locator("#detect-basis")).to_contain_text("Based on the sentence and the face")
    expect(page.locator("#detect-basis")).to_contain_text("the face alone: Happy")
    page.click("#detect-apply")
    device.expect_now("happy")
    expect(page.locator("#timeline-days .entry .detected-note")).to_contain_text("detected from a sentence and a face")
    (event,) = history(live_server, token)
    assert event["source"] == "detected:text+face"


def test_an_uncertain_result_can_be_applied_and_limits_are_explained(server_factory, devices):
    # Nothing is sure enough for this server: every result is uncertain. Two detections a minute.
    strict = server_factory(RATE_LIMIT_DETECT="2 per minute", DETECT_MAX_IMAGE_BYTES=2048, DETECT_UNCERTAIN_BELOW=1)
    username, _ = register(strict)
    token = strict.login(username)["access_token"]
    device = devices(strict)
    device.allow_http_errors(413, 429)
    device.log_in(username)
    page = device.page
    page.set_input_files("#detect-file", FACES / "astronaut.jpg")  # 21 KB
    expect(page.locator("#detect-error")).to_have_text("The picture is too large: at most 2 KB.")

    page.fill("#detect-text", "I am so happy today")
    page.click("#detect-text-button")
    expect(page.locator("#detect-emotion")).to_have_text("Happy", timeout=FIRST_ANSWER)
    expect(page.locator("#detect-uncertain")).to_be_visible()
    page.click("#detect-apply")  # the user's choice: stored though uncertain
    device.expect_now("happy")
    (event,) = history(strict, token)
    assert event["source"] == "detected:text" and event["confidence"] < 1

    page.click("#detect-text-button")
    expect(page.locator("#detect-error")).to_contain_text("Too many detections in a short time: try again in ")
    expect(page.locator("#detect-apply")).to_be_hidden()

    off = server_factory(DETECTION="off")
    username, _ = register(off)
    device = devices(off)
    device.allow_http_errors(503)
    device.log_in(username)
    device.page.fill("#detect-text", "I am so happy today")
    device.page.click("#detect-text-button")
    expect(device.page.locator("#detect-error")).to_have_text("Detection is switched off on this server.")


def test_the_page_sends_json_for_a_sentence_and_multipart_for_a_snapshot(live_server, devices):
    """What goes to the server, and a camera stopped by hand."""
    username, _ = register(live_server)
    device = devices(live_server)
    device.log_in(username)
    page = device.page
    sent = []
    page.on("request", lambda request: sent.append(request) if "/api/emotions/detect" in request.url else None)
    page.fill("#detect-text", "I am so happy today")
    page.click("#detect-text-button")
    expect(page.locator("#detect-emotion")).to_have_text("Happy", timeout=FIRST_ANSWER)
    # Stopping the camera ends its tracks and sends nothing.
    page.click("#camera-start")
    expect(page.locator("#camera-stop")).to_be_visible()
    page.evaluate("window.cameraTracks = document.getElementById('camera-video').srcObject.getTracks()")
    page.click("#camera-stop")
    expect(page.locator("#camera-video")).to_be_hidden()
    assert page.evaluate("window.cameraTracks.map((track) => track.readyState)") == ["ended"]
    page.click("#camera-start")
    expect(page.locator("#camera-snap")).to_be_enabled(timeout=10_000)
    page.click("#camera-snap")
    expect(page.locator("#detect-faces")).to_have_text("1 face found.", timeout=FIRST_ANSWER)
    text, snapshot = sent
    assert text.headers["content-type"] == "application/json"
    assert json.loads(text.post_data) == {"text": "I am so happy today"}
    # (Playwright does not show a body built from a Blob: the face found shows the JPEG was read.)
    assert snapshot.headers["content-type"].startswith("multipart/form-data; boundary=")
