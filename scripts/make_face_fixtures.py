"""Make the face-detection fixtures in data/detection/faces/ (see its README.md for what each file is).

    .venv/bin/python scripts/make_face_fixtures.py /path/to/astronaut.png

astronaut.png is scikit-image's public-domain photo of Eileen Collins (NASA). It is not a dependency: take it
out of the scikit-image wheel without installing it:

    pip download scikit-image --no-deps -d /tmp/skimage
    unzip -j /tmp/skimage/scikit_image-*.whl skimage/data/astronaut.png -d /tmp/skimage

Everything here is deterministic: the same input and the same Pillow give the same bytes.
"""
import argparse
import hashlib
import io
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "detection" / "faces"
ASTRONAUT_SHA256 = "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"  # scikit-image 0.26.0
CROP = (80, 0, 368, 288)  # 288 px square around the face, which is at (177, 66, 95, 95) in the 512 px photo
WEBCAM_SIZE = (640, 480)
# The fake webcam's frames: the photo enlarged to 640 px wide, seen through a 640x480 window that nods a
# little, so consecutive frames differ as a real camera's do.
WEBCAM_OFFSETS = (0, 6, 12)


def astronaut_crop(photo):
    """A small square around the face, as a JPEG."""
    return _jpeg(photo.crop(CROP), quality=90)


def webcam_frame(photo, offset=0):
    """The photo as a 640x480 webcam frame (the face in the upper middle), `offset` px down."""
    wide = photo.resize((WEBCAM_SIZE[0], WEBCAM_SIZE[0]), Image.Resampling.LANCZOS)
    return wide.crop((0, offset, WEBCAM_SIZE[0], offset + WEBCAM_SIZE[1]))


def webcam_mjpeg(photo):
    """Motion JPEG for Chromium's --use-file-for-fake-video-capture: JPEG frames one after the other."""
    return b"".join(_jpeg(webcam_frame(photo, offset), quality=75) for offset in WEBCAM_OFFSETS)


def blank():
    """A flat grey picture."""
    return _png(Image.new("L", (320, 240), 128))


def noise():
    """Seeded uniform grey noise."""
    pixels = np.random.default_rng(17).integers(0, 256, size=(120, 160), dtype=np.uint8)
    return _png(Image.fromarray(pixels, "L"))


def landscape():
    """A drawn landscape: sky gradient, sun, two rows of hills, a lake."""
    width, height = 640, 480
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    top, horizon = np.array([40, 90, 170]), np.array([190, 215, 235])
    sky = (top + (horizon - top) * rows) * np.ones((1, width, 1))
    image = Image.fromarray(sky.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((470, 60, 550, 140), fill=(255, 230, 150))
    for base, amplitude, period, phase, colour in ((300, 40, 260, 0.5, (90, 130, 80)),
                                                   (350, 30, 170, 2.0, (50, 100, 50))):
        ridge = [(x, base - amplitude * math.sin(x / period * 2 * math.pi + phase)) for x in range(0, width + 1, 8)]
        draw.polygon(ridge + [(width, height), (0, height)], fill=colour)
    draw.rectangle((0, 410, width, height), fill=(70, 110, 150))
    return _jpeg(image.filter(ImageFilter.GaussianBlur(1)), quality=85)


def _jpeg(image, quality):
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def _png(image):
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("astronaut", type=Path, help="scikit-image's skimage/data/astronaut.png")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    data = args.astronaut.read_bytes()
    if hashlib.sha256(data).hexdigest() != ASTRONAUT_SHA256:
        sys.exit(f"{args.astronaut} is not scikit-image's astronaut.png (sha256 {ASTRONAUT_SHA256})")
    photo = Image.open(io.BytesIO(data)).convert("RGB")
    files = {
        "astronaut.jpg": astronaut_crop(photo),
        "astronaut-640.jpg": _jpeg(webcam_frame(photo), quality=85),
        "webcam.mjpeg": webcam_mjpeg(photo),
        "blank.png": blank(),
        "noise.png": noise(),
        "landscape.jpg": landscape(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (args.out / name).write_bytes(content)
        print(f"{name:18} {len(content):7} bytes  sha256 {hashlib.sha256(content).hexdigest()[:16]}")


if __name__ == "__main__":
    main()
