"""The emotion labels the detection models speak."""

MODEL_LABELS = ("happy", "sad", "angry", "surprised", "fearful", "disgusted", "neutral")
