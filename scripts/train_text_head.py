"""Train the text model's emotion head: a multinomial logistic regression (softmax) on all-MiniLM-L6-v2
sentence vectors, from the labelled sentences in data/detection/text_train.csv.

    .venv/bin/python scripts/train_text_head.py      # writes emotion_app/detection/data/text_head.npz

The L2 strength is the one with the lowest 5-fold cross-validated log-loss on the training sentences (the
server compares the top probability with a threshold, so calibrated probabilities matter); the evaluation set
(data/detection/text_eval.csv) is never read here. Same data, same machine: same file, byte for byte.
"""
import argparse
import csv
import hashlib
import io
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emotion_app.detection.labels import MODEL_LABELS  # noqa: E402
from emotion_app.detection.text import HEAD_PATH, TextEncoder  # noqa: E402

TRAIN_CSV = ROOT / "data" / "detection" / "text_train.csv"
L2_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
FOLDS = 5
SEED = 17
STEPS = 1000  # the objective moves less than 1e-5 after this many (measured on the training set)


def read_labelled(path):
    """[(text, label index)] from a CSV with columns text,emotion; unknown labels are an error."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            if row["emotion"] not in MODEL_LABELS:
                sys.exit(f"{path}:{line}: unknown emotion {row['emotion']!r} (known: {', '.join(MODEL_LABELS)})")
            rows.append((row["text"], MODEL_LABELS.index(row["emotion"])))
    return rows


def fit_softmax(x, y, l2, steps=STEPS):
    """Weights (d, k) and bias (k,) minimising mean cross-entropy + l2/2 * |W|^2, by Nesterov-accelerated
    gradient descent from zero (deterministic; the problem is convex, so it needs no random start)."""
    n, d = x.shape
    k = len(MODEL_LABELS)
    onehot = np.eye(k)[y]
    # Step 1/L, L bounding the curvature: the softmax's Hessian is at most half the features' second moment.
    lipschitz = 0.5 * (np.linalg.eigvalsh(x.T @ x / n)[-1] + 1) + l2
    step = 1 / lipschitz
    w, b = np.zeros((d, k)), np.zeros(k)
    w_prev, b_prev = w, b
    for t in range(1, steps + 1):
        momentum = (t - 1) / (t + 2)
        w_look, b_look = w + momentum * (w - w_prev), b + momentum * (b - b_prev)
        error = (softmax(x @ w_look + b_look) - onehot) / n
        w_prev, b_prev = w, b
        w = w_look - step * (x.T @ error + l2 * w_look)
        b = b_look - step * error.sum(axis=0)
    return w, b


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def accuracy(w, b, x, y):
    return float(np.mean(np.argmax(x @ w + b, axis=1) == y))


def cross_validate(x, y, l2):
    """(accuracy, log-loss) on held-out sentences over FOLDS stratified folds (fixed seed)."""
    rng = np.random.default_rng(SEED)
    fold_of = np.empty(len(y), dtype=int)
    for label in range(len(MODEL_LABELS)):
        members = rng.permutation(np.flatnonzero(y == label))
        fold_of[members] = np.arange(len(members)) % FOLDS
    probs = np.empty((len(y), len(MODEL_LABELS)))
    for fold in range(FOLDS):
        held = fold_of == fold
        w, b = fit_softmax(x[~held], y[~held], l2)
        probs[held] = softmax(x[held] @ w + b)
    truth = probs[np.arange(len(y)), y]
    return float(np.mean(np.argmax(probs, axis=1) == y)), float(-np.mean(np.log(truth)))


def save_head(path, **arrays):
    """An .npz (what np.load reads) with fixed timestamps, so that the same head gives the same bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(value), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buffer.getvalue(),
                             compress_type=zipfile.ZIP_DEFLATED)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, default=TRAIN_CSV, help="labelled sentences (text,emotion)")
    parser.add_argument("--out", type=Path, default=HEAD_PATH, help="where to write the head")
    args = parser.parse_args()

    rows = read_labelled(args.train)
    texts, y = [text for text, _ in rows], np.array([label for _, label in rows])
    counts = ", ".join(f"{label} {int(np.sum(y == i))}" for i, label in enumerate(MODEL_LABELS))
    print(f"{len(rows)} sentences from {args.train}: {counts}")

    started = time.perf_counter()
    x = TextEncoder.load().embed(texts).astype(np.float64)
    print(f"embedded in {time.perf_counter() - started:.1f} s")

    cv = {l2: cross_validate(x, y, l2) for l2 in L2_GRID}
    for l2, (acc, loss) in cv.items():
        print(f"  l2={l2:g}: {FOLDS}-fold cross-validated accuracy {acc:.3f}, log-loss {loss:.3f}")
    best = min(L2_GRID, key=lambda l2: cv[l2][1])

    w, b = fit_softmax(x, y, best)
    print(f"l2={best:g}: training accuracy {accuracy(w, b, x, y):.3f}")
    save_head(
        args.out,
        weights=w.astype(np.float32),
        bias=b.astype(np.float32),
        labels=np.array(MODEL_LABELS),
        l2=np.float64(best),
        train_sha256=np.array(hashlib.sha256(args.train.read_bytes()).hexdigest()),
    )
    print(f"wrote {args.out} (sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()[:12]})")


if __name__ == "__main__":
    main()
