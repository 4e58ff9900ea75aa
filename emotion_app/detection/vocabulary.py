"""The models' labels -> the configured EMOTIONS.

The models speak MODEL_LABELS, which are the default EMOTIONS. A vocabulary that names an emotion by a common
synonym ("joy" for happy, "calm" for neutral) gets that label's score under its own word, through ALIASES:
each model label goes to the first of its words the vocabulary has. A model label with no word in the
vocabulary is dropped and the remaining scores are scaled back up to sum to 1; a vocabulary word no label
goes to scores 0. The README documents this table.
"""
from .labels import MODEL_LABELS

# Each model label, then the words that may stand for it in a vocabulary, in order of preference.
ALIASES = {
    "happy": ("happy", "happiness", "joy", "joyful", "glad"),
    "sad": ("sad", "sadness", "unhappy"),
    "angry": ("angry", "anger", "mad", "furious"),
    "surprised": ("surprised", "surprise", "amazed", "astonished"),
    "fearful": ("fearful", "fear", "afraid", "scared", "frightened"),
    "disgusted": ("disgusted", "disgust"),
    "neutral": ("neutral", "calm"),
}


class Vocabulary:
    """Maps scores over MODEL_LABELS onto the words of a configured vocabulary."""

    def __init__(self, emotions):
        self.emotions = tuple(emotions)
        words = set(self.emotions)
        # model label -> the vocabulary word it counts for (labels without one are left out)
        self.mapping = {}
        for label in MODEL_LABELS:
            word = next((w for w in ALIASES.get(label, (label,)) if w in words), None)
            if word is not None:
                self.mapping[label] = word

    @property
    def usable(self):
        """Whether any model label has a word in the vocabulary (else detection cannot answer in it)."""
        return bool(self.mapping)

    def scores(self, label_scores):
        """{label: p} over MODEL_LABELS -> {word: p} over every word of the vocabulary, in its order, summing to 1
        (all 0 when no mapped label has any score)."""
        out = dict.fromkeys(self.emotions, 0.0)
        for label, word in self.mapping.items():
            out[word] += float(label_scores.get(label, 0.0))
        total = sum(out.values())
        if total > 0:
            out = {word: p / total for word, p in out.items()}
        return out
