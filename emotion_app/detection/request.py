"""One detection request, from HTTP or the socket: its fields checked, the user's rate limit, the detection,
and, when asked, the result stored and pushed like any other emotion change (store.write_event)."""
import time
from dataclasses import dataclass

from .. import store
from ..contract.bodies import DetectBody
from ..errors import ApiError
from ..http import checked_body
from ..metrics import DETECTIONS, RATE_LIMITED
from ..ratelimit import detection_wait
from .service import kind_of

# ?apply= on HTTP; the socket's "apply" field takes the JSON values true, false and "always".
APPLY_MODES = {"false": False, "true": True, "always": "always"}


@dataclass
class DetectRequest:
    """What to read (`text`, `image` bytes, either may be None) and what to do with the result."""

    text: str | None
    image: bytes | None = None
    apply: bool | str = False  # False, True (unless uncertain) or "always"
    client_msg_id: str | None = None
    device: str | None = None


def checked_fields(fields, apply=False, image=None):
    """A DetectRequest from a body's or form's fields (`text`, `client_msg_id`, `device`), the apply mode and
    an image, or ApiError 400.

    A text that is empty once trimmed counts as no text; with no image either, that is `missing_input`.
    """
    body = checked_body(DetectBody, fields)
    if body.text is None and image is None:
        raise _missing_input()
    return DetectRequest(body.text, image, apply, body.client_msg_id, body.device)


def from_frame(frame, device=None):
    """A DetectRequest from a socket `detect` frame (contract.frames.Detect: a text only, photos go over HTTP),
    or ApiError 400; `device` is the socket's name."""
    if frame.text is None:
        raise _missing_input()
    return DetectRequest(frame.text, None, frame.apply or False, frame.client_msg_id, device)


def _missing_input():
    return ApiError(400, "missing_input", "Nothing to detect: send a non-empty 'text', an 'image' file, or both")


def handle(app, user_id, req):
    """Detect for `user_id` and apply the result if asked; return the answer body, or raise ApiError.

    Nothing is stored unless the whole request succeeds. Counted in emotion_app_detections_total by outcome.
    """
    kind = kind_of(req.text, req.image)
    try:
        body = _detect_and_apply(app, user_id, req)
    except ApiError as exc:
        DETECTIONS.labels(kind, exc.error).inc()
        raise
    DETECTIONS.labels(kind, "ok").inc()
    return body


def _detect_and_apply(app, user_id, req):
    detector = app.extensions["emotion_detector"]
    detector.require_enabled()
    wait = detection_wait(app, user_id)
    if wait:
        RATE_LIMITED.labels("detect").inc()
        raise ApiError(
            429, "rate_limited",
            f"Too many detections (at most {app.config['RATE_LIMIT_DETECT']}): try again in {wait} s",
            retry_after=wait,
        )
    started = time.perf_counter()
    body = detector.detect(req.text, req.image)
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    body["applied"] = False
    if req.apply and (req.apply == "always" or not body["uncertain"]):
        event, created = store.write_event(
            app.extensions["emotion_committer"], user_id, body["emotion"], None, req.client_msg_id, req.device,
            source=f"detected:{body['based_on']}", confidence=body["confidence"],
        )
        # A repeat of a client_msg_id: the original event, nothing new stored or pushed.
        body["applied"], body["event"] = True, event if created else {**event, "duplicate": True}
    elif req.apply:
        body["not_applied"] = "uncertain"
    body["elapsed_ms"] = elapsed_ms
    return body
