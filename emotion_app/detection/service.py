"""This worker's emotion detection: the models, loaded once, run in OS threads, answering in the vocabulary.

The text and face models load together, once per process (so once per worker, shared by every app the process
builds): on the first detection (DETECTION_LOAD=lazy) or as the worker starts (startup). A load that fails is
not tried again; the reason is kept for /readyz and every 503 until the server restarts. Models, image decoding and inference run in the ModelThreads pool,
never on the event loop. Importing this module imports no model package: with DETECTION=off the app runs
without numpy, OpenCV, Pillow, LiteRT, tokenizers and safetensors installed.
"""
import logging
import os
import threading
import time

from ..errors import ApiError
from ..metrics import DETECTION_SECONDS
from . import ModelUnavailable
from .images import ImageError
from .pool import ModelThreads
from .vocabulary import Vocabulary

log = logging.getLogger(__name__)

# Scores and confidences are rounded to this many decimals in answers and stored events.
DIGITS = 4


class _Loaded:
    """This process's models: (text model, face model) once loaded, or why they cannot be."""

    def __init__(self):
        self.models = None
        self.problem = None
        # Taken only around a load. Under gunicorn this module is imported after gevent patched threading,
        # so a greenlet waiting for another's load lets the event loop run.
        self.lock = threading.Lock()


_loaded = _Loaded()


class Detector:
    """Detects an emotion from a text, a photo, or both; one per app (so one per worker process)."""

    def __init__(self, enabled, emotions, threads, max_pixels, uncertain_below, load_at="lazy"):
        self.enabled = enabled
        self.vocabulary = Vocabulary(emotions)
        self.threshold = uncertain_below
        self.max_pixels = max_pixels
        self.load_at = load_at
        self._threads = ModelThreads(threads)

    @classmethod
    def from_config(cls, config):
        """The detector the app's settings describe."""
        return cls(
            config["DETECTION"], config["EMOTIONS"], config["DETECTION_THREADS"], config["DETECT_MAX_PIXELS"],
            config["DETECT_UNCERTAIN_BELOW"], config["DETECTION_LOAD"],
        )

    def status(self):
        """What /readyz says: `off`, `not_loaded`, `ready`, or `unavailable: <reason>`."""
        if not self.enabled:
            return "off"
        if _loaded.problem is not None:
            return f"unavailable: {_loaded.problem}"
        return "ready" if _loaded.models is not None else "not_loaded"

    def require_enabled(self):
        """Raise the 503 that says detection is switched off, if it is."""
        if not self.enabled:
            raise ApiError(503, "detection_disabled", "Emotion detection is switched off on this server (DETECTION=off)")

    def on_worker_start(self):
        """Called once the worker serves: with DETECTION_LOAD=startup, load the models in the background now."""
        if not (self.enabled and self.load_at == "startup"):
            return
        try:
            import gevent
            from gevent import monkey
        except ImportError:  # pragma: no cover - gevent is a hard dependency
            gevent = None
        if gevent is not None and monkey.is_module_patched("threading"):
            gevent.spawn(self._load_quietly)
        else:
            threading.Thread(target=self._load_quietly, name="detection-load", daemon=True).start()

    def _load_quietly(self):
        try:
            self.load()
        except ApiError:
            pass  # logged by load(); requests get the 503

    def load(self):
        """The (text, face) models, loaded on the first call; raises ApiError 503 when they cannot be."""
        if _loaded.models is None and _loaded.problem is None:
            with _loaded.lock:  # one load per process: later callers wait for it
                if _loaded.models is None and _loaded.problem is None:
                    self._load_once()
        if _loaded.problem is not None:
            raise ApiError(503, "detection_unavailable", f"Emotion detection is unavailable on this server: {_loaded.problem}")
        return _loaded.models

    def _load_once(self):
        started = time.perf_counter()
        try:
            _loaded.models = self._threads.run(_load_models)
        except ModelUnavailable as exc:
            _loaded.problem = str(exc)
        except Exception as exc:  # noqa: BLE001 - a broken install must not take the worker down
            log.exception("the detection models failed to load")
            _loaded.problem = f"the models failed to load ({exc.__class__.__name__}: {exc})"
        if _loaded.problem is not None:
            log.error("emotion detection unavailable: %s", _loaded.problem)
        else:
            log.info("emotion detection ready: models loaded in %.2f s", time.perf_counter() - started)

    def detect(self, text=None, image=None):
        """Detect the emotion of `text` (str), of the faces in `image` (bytes), or of both; return the answer.

        The answer: `emotion`, `confidence`, `uncertain`, `threshold`, `scores` (every word of the vocabulary),
        `based_on`, then `text` and `faces` for what was given, and `models`. Raises ApiError: 503
        detection_disabled / detection_unavailable, the image's 413/415/400, 422 no_face_found.
        """
        self.require_enabled()
        if not self.vocabulary.usable:
            raise ApiError(
                503, "detection_unavailable",
                f"Emotion detection is unavailable: no emotion of EMOTIONS ({', '.join(self.vocabulary.emotions)}) "
                "is one the models know (see the README's vocabulary mapping)",
            )
        text_model, face_model = self.load()
        kind = kind_of(text, image)
        started = time.perf_counter()
        try:
            found = self._threads.run(_infer, text_model, face_model, text, image, self.max_pixels)
        except ImageError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        except Exception:  # noqa: BLE001 - a model failure is this request's error, not the worker's
            log.exception("emotion detection failed")
            raise ApiError(500, "internal_error", "Emotion detection failed on this input") from None
        finally:
            DETECTION_SECONDS.labels(kind).observe(time.perf_counter() - started)
        models = {}
        if text is not None:
            models["text"] = describe(text_model)
        if image is not None:
            models["face"] = describe(face_model)
        return self._answer(found, models)

    def _answer(self, found, models):
        vocabulary = self.vocabulary
        text_scores = vocabulary.scores(found["text"]) if "text" in found else None
        face_scores = [vocabulary.scores(face["scores"]) for face in found.get("faces", ())]
        if "faces" in found and not face_scores and text_scores is None:
            raise ApiError(
                422, "no_face_found",
                "No face was found in the image: send a photo with a face turned towards the camera, or a text",
            )
        if text_scores is not None and face_scores:
            # The largest face (the first) and the text count the same.
            scores = {word: (text_scores[word] + face_scores[0][word]) / 2 for word in vocabulary.emotions}
            based_on = "text+face"
        elif face_scores:
            scores, based_on = face_scores[0], "face"
        else:
            scores, based_on = text_scores, "text"
        overall = summary(scores)
        answer = {
            "emotion": overall["emotion"],
            "confidence": overall["confidence"],
            "uncertain": max(scores.values()) < self.threshold,
            "threshold": self.threshold,
            "scores": overall["scores"],
            "based_on": based_on,
        }
        if text_scores is not None:
            answer["text"] = summary(text_scores)
        if "faces" in found:
            answer["faces"] = [
                {"box": face["box"], **summary(scores)} for face, scores in zip(found["faces"], face_scores)
            ]
        answer["models"] = models
        return answer


def kind_of(text, image):
    """What a detection is asked to read: `text`, `face` or `text+face` (the metrics' `kind`)."""
    return "+".join(name for name, given in (("text", text is not None), ("face", image is not None)) if given)


def summary(scores):
    """{word: p} -> {"emotion": the top word (the vocabulary's first on a tie), "confidence", "scores"}, rounded."""
    top = max(scores, key=scores.get)
    return {
        "emotion": top,
        "confidence": round(scores[top], DIGITS),
        "scores": {word: round(p, DIGITS) for word, p in scores.items()},
    }


def describe(model):
    """A model's name and version, as answers report them."""
    return f"{model.name}; {model.version}"


def _load_models():
    """Load both models (in a pool thread: reading ~90 MB of weights takes a second)."""
    # numpy reads this when it is first imported: one BLAS thread per call, as minilm.py explains
    # (gunicorn.conf.py sets it for the whole server already).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        import PIL.Image  # noqa: F401 - decoding uploads needs it; fail the load, not the first photo
    except ImportError as exc:
        raise ModelUnavailable(f"reading photos needs the pillow package ({exc})") from None
    from .face import FaceModel
    from .text import TextModel

    return TextModel.load(), FaceModel.load()


def _infer(text_model, face_model, text, image, max_pixels):
    """The models' scores (over MODEL_LABELS) for what was given; runs in a pool thread."""
    from .images import decode_image

    found = {}
    if image is not None:  # first: a bad image fails the request before the text costs anything
        found["faces"] = face_model.faces(decode_image(image, max_pixels))
    if text is not None:
        found["text"] = text_model.scores(text)
    return found
