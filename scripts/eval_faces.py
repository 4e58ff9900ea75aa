"""The face model on the committed face images and synthetic negatives: faces found, top label, time.

    .venv/bin/python scripts/eval_faces.py

Also the face section of scripts/eval_detect.py, which calls eval_faces().
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FACES_DIR = ROOT / "data" / "detection" / "faces"
# Image -> the label it should get (None: a negative, no face should be found).
EXPECTED = {
    "astronaut.jpg": "happy",
    "astronaut-640.jpg": "happy",
    "webcam.mjpeg": "happy",  # its first frame
    "blank.png": None,
    "noise.png": None,
    "landscape.jpg": None,
}
MAX_PIXELS = 4096 * 4096


def add_arguments(parser):
    """The options eval_faces() reads, for a parser that wants them (eval_detect.py's)."""
    parser.add_argument("--faces-dir", type=Path, default=FACES_DIR, help="where the face images are")


def eval_faces(args=None):
    """Print, per image, the faces found with their top label and a summary; return the summary as a dict."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from emotion_app.detection.face import FaceModel
    from emotion_app.detection.images import decode_image

    faces_dir = getattr(args, "faces_dir", None) or FACES_DIR
    model = FaceModel.load()
    print(f"Face model: {model.name}, {model.version}")
    print(f"{'image':18} {'size':>8}  {'ms':>5}  {'expected':9} {'found':38} result")
    hits = negatives_clear = 0
    for name, expected in EXPECTED.items():
        gray = decode_image((faces_dir / name).read_bytes(), MAX_PIXELS)
        started = time.perf_counter()
        found = model.faces(gray)
        ms = (time.perf_counter() - started) * 1000
        if found:
            scores = found[0]["scores"]
            top = max(scores, key=scores.get)
            box = found[0]["box"]
            described = (f"{len(found)}: {top} {scores[top]:.3f} at "
                         f"({box['x']}, {box['y']}) {box['width']}x{box['height']}")
        else:
            top, described = None, "no face"
        if expected is None:
            ok = not found
            negatives_clear += ok
        else:
            ok = top == expected
            hits += ok
        size = f"{gray.shape[1]}x{gray.shape[0]}"
        print(f"{name:18} {size:>8}  {ms:5.0f}  {expected or 'no face':9} {described:38} {'ok' if ok else 'MISS'}")
    positives = sum(label is not None for label in EXPECTED.values())
    negatives = len(EXPECTED) - positives
    print(f"Faces: {hits}/{positives} with the expected label; "
          f"negatives: {negatives_clear}/{negatives} without a face.")
    return {"faces_hit": hits, "faces_total": positives, "negatives_clear": negatives_clear,
            "negatives_total": negatives}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    summary = eval_faces(parser.parse_args(argv))
    ok = summary["faces_hit"] == summary["faces_total"] and summary["negatives_clear"] == summary["negatives_total"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
