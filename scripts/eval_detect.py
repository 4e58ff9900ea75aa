"""How well the detection models do on labelled evaluation data.

    .venv/bin/python scripts/eval_detect.py                # text, then faces when scripts/eval_faces.py exists
    .venv/bin/python scripts/eval_detect.py --errors       # also list the texts the head gets wrong

Text: every sentence of data/detection/text_eval.csv (columns text,emotion,kind) is scored two ways:
- nearest examples, the baseline: a label's score is the mean cosine similarity of the k most similar
  training sentences of that label (data/detection/text_train.csv), softmaxed;
- the trained head, as the app runs it (TextModel.scores).
For each: accuracy, per-emotion precision/recall/F1, the confusion matrix and accuracy per kind; for the
head also how many answers each confidence threshold would mark uncertain (DETECT_UNCERTAIN_BELOW).
"""
import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from emotion_app.detection.labels import MODEL_LABELS  # noqa: E402
from emotion_app.detection.text import TextModel, softmax  # noqa: E402

TEXT_EVAL = ROOT / "data" / "detection" / "text_eval.csv"
TEXT_TRAIN = ROOT / "data" / "detection" / "text_train.csv"
# Spreads the baseline's mean cosines (all within a few tenths of each other) into probabilities;
# it changes no ranking, so none of the figures below.
NEAREST_TEMPERATURE = 0.05
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7)


def read_rows(path, columns):
    """The rows of a UTF-8 CSV as tuples of `columns`."""
    with open(path, newline="", encoding="utf-8") as f:
        return [tuple(row[c] for c in columns) for row in csv.DictReader(f)]


def nearest_examples(vectors, train_vectors, train_labels, k):
    """(n, labels) probabilities: per label the mean of the top-k cosine similarities to its training
    sentences, softmaxed."""
    similarity = vectors @ train_vectors.T
    scores = np.empty((len(vectors), len(MODEL_LABELS)), dtype=np.float32)
    for i in range(len(MODEL_LABELS)):
        own = similarity[:, train_labels == i]
        top = -np.partition(-own, min(k, own.shape[1]) - 1, axis=1)[:, :k]
        scores[:, i] = top.mean(axis=1)
    return softmax(scores / NEAREST_TEMPERATURE)


def report(title, truth, probs, kinds):
    """Print accuracy, per-emotion precision/recall/F1, the confusion matrix and accuracy per kind."""
    predicted = probs.argmax(axis=1)
    n = len(MODEL_LABELS)
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    width = max(len(label) for label in MODEL_LABELS)

    print(f"\n== {title}: accuracy {np.mean(predicted == truth):.3f} ({np.sum(predicted == truth)}/{len(truth)})")
    print(f"\n{'':{width}}  precision  recall     f1  support")
    for i, label in enumerate(MODEL_LABELS):
        hits, said, present = confusion[i, i], confusion[:, i].sum(), confusion[i].sum()
        precision = hits / said if said else 0.0
        recall = hits / present if present else 0.0
        f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
        print(f"{label:{width}}  {precision:9.3f}  {recall:6.3f}  {f1:5.3f}  {present:7d}")

    print("\nconfusion (rows: true, columns: predicted)")
    print(f"{'':{width}}  " + " ".join(f"{label[:5]:>5}" for label in MODEL_LABELS))
    for i, label in enumerate(MODEL_LABELS):
        print(f"{label:{width}}  " + " ".join(f"{count:5d}" for count in confusion[i]))

    print("\naccuracy per kind")
    for kind in sorted(set(kinds)):
        mine = np.array([k == kind for k in kinds])
        print(f"  {kind:{width}}  {np.mean(predicted[mine] == truth[mine]):.3f}  ({mine.sum()})")


def report_thresholds(truth, probs):
    """For each confidence threshold: the share of answers below it, and the accuracy of the others."""
    confidence, right = probs.max(axis=1), probs.argmax(axis=1) == truth
    print("\nthreshold  uncertain  accuracy of the rest")
    for threshold in THRESHOLDS:
        sure = confidence >= threshold
        rest = f"{np.mean(right[sure]):.3f}" if sure.any() else "-"
        print(f"{threshold:9.2f}  {1 - np.mean(sure):9.1%}  {rest}")


def eval_text(args):
    """Baseline and head on the text evaluation set."""
    if not args.text_eval.exists():
        print(f"text evaluation: {args.text_eval} not found")
        return
    model = TextModel.load()
    train = read_rows(args.text_train, ("text", "emotion"))
    evaluation = read_rows(args.text_eval, ("text", "emotion", "kind"))
    train_labels = np.array([MODEL_LABELS.index(emotion) for _, emotion in train])
    truth = np.array([MODEL_LABELS.index(emotion) for _, emotion, _ in evaluation])
    kinds = [kind for _, _, kind in evaluation]
    print(f"text: {model.name} ({model.version}); {len(evaluation)} evaluation texts, {len(train)} training sentences")

    vectors = model.embed([text for text, _, _ in evaluation])
    baseline = nearest_examples(vectors, model.embed([text for text, _ in train]), train_labels, args.k)
    report(f"nearest examples (k={args.k})", truth, baseline, kinds)

    head = np.array([[s[label] for label in MODEL_LABELS] for s in (model.scores(text) for text, _, _ in evaluation)])
    report("trained head", truth, head, kinds)
    report_thresholds(truth, head)

    if args.errors:
        print("\nwrong answers of the head (text | expected | answered, confidence)")
        for (text, emotion, kind), p in zip(evaluation, head):
            if MODEL_LABELS[p.argmax()] != emotion:
                print(f"  [{kind}] {text} | {emotion} | {MODEL_LABELS[p.argmax()]} {p.max():.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text-eval", type=Path, default=TEXT_EVAL,
                        help="labelled evaluation texts (text,emotion,kind)")
    parser.add_argument("--text-train", type=Path, default=TEXT_TRAIN,
                        help="the head's training sentences (the baseline's examples)")
    parser.add_argument("-k", type=int, default=5, help="neighbours per emotion for the baseline")
    parser.add_argument("--errors", action="store_true", help="list the texts the head gets wrong")
    try:
        import eval_faces  # scripts/eval_faces.py, next to this file
    except ImportError as e:
        eval_faces = None
        missing = "no scripts/eval_faces.py" if getattr(e, "name", None) == "eval_faces" else str(e)
    else:
        if hasattr(eval_faces, "add_arguments"):
            eval_faces.add_arguments(parser)
    args = parser.parse_args()

    eval_text(args)
    if eval_faces is None:
        print(f"\nface evaluation is not available ({missing})")
    else:
        eval_faces.eval_faces(args)


if __name__ == "__main__":
    main()
