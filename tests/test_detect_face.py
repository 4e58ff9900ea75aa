"""Face detection with the real model: the public-domain face, negatives, every bad image, threads, the fake
webcam. The fixtures are in data/detection/faces/ (see its README.md)."""
import base64
import io
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from emotion_app.detection import ModelUnavailable
from emotion_app.detection.face import FaceModel, _installed_model_file
from emotion_app.detection.images import ImageError, decode_image
from emotion_app.detection.labels import MODEL_LABELS
from tests.detecthelpers import png_claiming

ROOT = Path(__file__).resolve().parent.parent
FACES = ROOT / "data" / "detection" / "faces"
MAX_PIXELS = 4096 * 4096
# Where the face is in astronaut-640.jpg (x, y, width, height).
FACE_640 = (220, 82, 121, 121)
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def model():
    return FaceModel.load()


def read(name):
    return (FACES / name).read_bytes()


def gray(name):
    return decode_image(read(name), MAX_PIXELS)


def top(face):
    return max(face["scores"], key=face["scores"].get)


def box(face):
    return tuple(face["box"][k] for k in ("x", "y", "width", "height"))


def near(found, expected, tolerance):
    return all(abs(a - b) <= tolerance for a, b in zip(found, expected))


def encode(image, fmt, **options):
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def refused(data, max_pixels=MAX_PIXELS):
    with pytest.raises(ImageError) as caught:
        decode_image(data, max_pixels)
    return caught.value.status, caught.value.code


# ---------------------------------------------------------------------------------------- faces


def test_astronaut_crop_is_one_happy_face(model):
    image = gray("astronaut.jpg")
    faces = model.faces(image)
    assert len(faces) == 1
    (face,) = faces
    x, y, width, height = box(face)
    assert 0 <= x and 0 <= y and x + width <= image.shape[1] and y + height <= image.shape[0]
    assert width >= 80 and height >= 80
    assert list(face["scores"]) == list(MODEL_LABELS)
    assert sum(face["scores"].values()) == pytest.approx(1.0)
    assert top(face) == "happy" and face["scores"]["happy"] > 0.9


def test_640_photo_face_where_it_is(model):
    (face,) = model.faces(gray("astronaut-640.jpg"))
    assert near(box(face), FACE_640, 3)
    assert top(face) == "happy"


def test_large_image_boxes_in_original_coordinates(model):
    # 2560 px wide: looked for at half size, reported in the image's own pixels.
    photo = gray("astronaut-640.jpg")
    wide = np.full((960, 2560), 200, np.uint8)
    wide[:, 1280:] = cv2.resize(photo, (1280, 960))
    (face,) = model.faces(wide)
    (half,) = model.faces(cv2.resize(wide, (1280, 480), interpolation=cv2.INTER_AREA))
    assert box(face) == tuple(2 * v for v in box(half))
    assert near(box(face), (1280 + 2 * FACE_640[0], 2 * FACE_640[1], 2 * FACE_640[2], 2 * FACE_640[3]), 12)
    assert top(face) == "happy"


@pytest.mark.parametrize("name", ["blank.png", "noise.png", "landscape.jpg"])
def test_negatives_have_no_face(model, name):
    assert model.faces(gray(name)) == []


def test_tiny_image_has_no_face(model):
    assert model.faces(np.full((10, 10), 128, np.uint8)) == []


def test_largest_face_first(model):
    crop = gray("astronaut.jpg")
    scene = np.full((480, 960), 200, np.uint8)
    scene[96:96 + 288, 40:40 + 288] = crop
    scene[140:140 + 144, 600:600 + 144] = cv2.resize(crop, (144, 144), interpolation=cv2.INTER_AREA)
    faces = model.faces(scene)
    assert len(faces) == 2
    assert faces[0]["box"]["width"] > faces[1]["box"]["width"]
    assert faces[0]["box"]["x"] < 300 < faces[1]["box"]["x"]


# ---------------------------------------------------------------------------------------- images


def test_webp_and_png_are_read(model):
    photo = Image.open(FACES / "astronaut.jpg")
    for data in (encode(photo, "WEBP", quality=90), encode(photo, "PNG")):
        (face,) = model.faces(decode_image(data, MAX_PIXELS))
        assert top(face) == "happy"


def test_16_bit_grey_png_is_scaled_not_clipped(model):
    crop = np.asarray(Image.open(FACES / "astronaut.jpg").convert("L"), dtype=np.uint16) * 257
    image = decode_image(encode(Image.fromarray(crop), "PNG"), MAX_PIXELS)
    assert image.dtype == np.uint8 and image.max() > 200 and image.min() < 50
    (face,) = model.faces(image)
    assert top(face) == "happy"


def test_animated_images_give_their_first_frame(model):
    face = Image.open(FACES / "astronaut.jpg").convert("RGB")
    blank = Image.new("RGB", face.size, (128, 128, 128))
    dark = Image.new("RGB", face.size, (60, 60, 60))  # frames differ, or they are merged into one
    for fmt in ("PNG", "WEBP"):
        data = encode(face, fmt, save_all=True, append_images=[blank, dark], duration=100, loop=0)
        assert Image.open(io.BytesIO(data)).n_frames == 3
        assert len(model.faces(decode_image(data, MAX_PIXELS))) == 1
        reversed_ = encode(blank, fmt, save_all=True, append_images=[face], duration=100, loop=0)
        assert model.faces(decode_image(reversed_, MAX_PIXELS)) == []


def test_exif_orientation_is_applied(model):
    upright = Image.open(FACES / "astronaut-640.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view": the pixels are stored turned left
    data = encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif)
    image = decode_image(data, MAX_PIXELS)
    assert image.shape == (480, 640)
    (face,) = model.faces(image)
    assert near(box(face), FACE_640, 4)
    assert top(face) == "happy"
    # The same pixels without their orientation show no upright face: the EXIF step is what found it.
    assert model.faces(np.asarray(Image.open(io.BytesIO(data)).convert("L"))) == []


def test_truncated_and_corrupt_images_are_undecodable():
    jpeg = read("astronaut.jpg")
    png = encode(Image.open(FACES / "blank.png"), "PNG")
    assert refused(jpeg[: len(jpeg) // 2]) == (400, "image_undecodable")
    assert refused(png[:-30]) == (400, "image_undecodable")
    garbage = random.Random(3).randbytes(2000)
    assert refused(b"\xff\xd8\xff" + garbage) == (400, "image_undecodable")
    assert refused(b"\x89PNG\r\n\x1a\n" + garbage) == (400, "image_undecodable")
    assert refused(b"RIFF\x00\x10\x00\x00WEBP" + garbage) == (400, "image_undecodable")


@pytest.mark.parametrize("width, height", [(50000, 50000), (5000, 5000)])
def test_pixel_bomb_refused_from_the_header(width, height):
    # 50000 x 50000 trips Pillow's own cap while it reads the header; 5000 x 5000 (25 Mpx) is under Pillow's
    # but over ours. The file holds one row: decoding it would fail as undecodable, so a 413 proves the
    # refusal came before any decoding, as do the time and the memory it took.
    data = png_claiming(width, height)
    assert len(data) < 200
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    assert refused(data) == (413, "image_too_many_pixels")
    assert time.perf_counter() - started < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 20_000  # KiB


def test_over_pillows_own_limit_refused_whatever_the_cap():
    # Pillow warns (and would decode) from Image.MAX_IMAGE_PIXELS (89 Mpx) up: refused even under a larger cap.
    with pytest.warns(Image.DecompressionBombWarning):
        assert refused(png_claiming(10000, 10000), max_pixels=10**9) == (413, "image_too_many_pixels")


def test_pixel_cap_is_inclusive():
    data = encode(Image.new("L", (100, 50), 128), "PNG")
    assert decode_image(data, 5000).shape == (50, 100)
    assert refused(data, 4999) == (413, "image_too_many_pixels")


def test_other_types_are_unsupported():
    small = Image.new("RGB", (40, 30), (200, 100, 50))
    for data in (encode(small, "GIF"), encode(small, "BMP"), encode(small, "TIFF"), b"just some text\n", b"",
                 b"<svg xmlns='http://www.w3.org/2000/svg'/>", random.Random(7).randbytes(4096)):
        assert refused(data) == (415, "unsupported_image_type")


# ---------------------------------------------------------------------------------------- the model


def test_checksum_mismatch_is_unavailable(tmp_path):
    damaged = bytearray(_installed_model_file().read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    copy = tmp_path / "model.tflite"
    copy.write_bytes(bytes(damaged))
    with pytest.raises(ModelUnavailable, match="sha256"):
        FaceModel.load(model_file=copy)
    with pytest.raises(ModelUnavailable, match="cannot read"):
        FaceModel.load(model_file=tmp_path / "missing.tflite")


def test_name_and_version(model):
    assert model.name == "fer mini-Xception (FER2013, quantized tflite)"
    assert model.version.startswith("fer 25.10.3, OpenCV 4.")


def test_four_threads_agree_with_serial_calls(model):
    images = [gray(name) for name in ("astronaut.jpg", "astronaut-640.jpg", "landscape.jpg", "noise.png")]
    serial = [model.faces(image) for image in images]
    barrier = threading.Barrier(len(images))
    results = [None] * len(images)
    errors = []

    def work(i):
        try:
            barrier.wait()
            results[i] = [model.faces(images[(i + k) % len(images)]) for k in range(len(images))]
        except Exception as exc:  # surfaced below: a thread's exception would otherwise only be printed
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for i, result in enumerate(results):
        assert result == [serial[(i + k) % len(images)] for k in range(len(images))]


GEVENT_THREADS = """
from gevent import monkey; monkey.patch_all()
import time, gevent, gevent.threadpool, numpy as np
from emotion_app.detection.face import FaceModel
model = FaceModel.load()
image = np.full((100, 100), 128, np.uint8)
def tools_of_this_call():
    model.faces(image)
    time.sleep(0.02)  # long enough for the pool to start its second thread
    return id(model._tools())
in_greenlets = {g.value for g in gevent.joinall([gevent.spawn(tools_of_this_call) for _ in range(3)])}
pool = gevent.threadpool.ThreadPool(2)
in_threads = [pool.spawn(tools_of_this_call) for _ in range(8)]
gevent.joinall(in_threads)
print(len(in_greenlets), len({t.value for t in in_threads} - in_greenlets), len({t.value for t in in_threads}))
"""


def test_one_interpreter_per_os_thread_under_gevent():
    # Monkey-patched, threading.local is per greenlet: greenlets of one thread must share that thread's
    # interpreter, and each pool thread must have its own.
    out = subprocess.run([sys.executable, "-c", GEVENT_THREADS], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "2", "2"]


def test_importing_needs_no_model_packages():
    # With detection off the app runs without numpy, OpenCV or LiteRT: importing these modules must not load them.
    code = ("import sys, emotion_app.detection.face, emotion_app.detection.images; "
            "print(sorted(m for m in ('numpy', 'cv2', 'PIL', 'ai_edge_litert') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------- the fake webcam

SNAPSHOT_PAGE = """<!doctype html><video autoplay muted playsinline></video><canvas></canvas><script>
window.snapshot = async () => {
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}});
  const video = document.querySelector("video");
  video.srcObject = stream;
  // The first frames can be blank while the camera starts: take the third one presented.
  for (let i = 0; i < 3; i++) await new Promise((resolve) => video.requestVideoFrameCallback(resolve));
  const canvas = document.querySelector("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  stream.getTracks().forEach((track) => track.stop());
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text);
};
</script>"""


def test_fake_webcam_frame_has_a_happy_face(model):
    """Chromium plays webcam.mjpeg as its camera; a frame drawn to a canvas and sent as JPEG shows the face."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={FACES / 'webcam.mjpeg'}"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            page = browser.new_page()
            # Served from http://localhost, a secure context, where getUserMedia is allowed.
            page.route("http://localhost/", lambda route: route.fulfill(body=SNAPSHOT_PAGE, content_type="text/html"))
            page.goto("http://localhost/")
            jpeg = base64.b64decode(page.evaluate("snapshot()"))
        finally:
            browser.close()
    image = decode_image(jpeg, MAX_PIXELS)
    assert image.shape == (480, 640)
    (face,) = model.faces(image)
    assert near(box(face), FACE_640, 16)  # any of the three frames, each 6 px lower than the last
    assert top(face) == "happy"
