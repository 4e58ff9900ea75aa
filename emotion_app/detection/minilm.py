"""all-MiniLM-L6-v2 sentence embeddings computed with numpy alone.

The model is a 6-layer BERT (hidden size 384, 12 heads, GELU, LayerNorm eps 1e-12); a sentence's vector
is the mean of its token vectors, L2-normalised, as sentence-transformers computes it. Imports numpy:
only `text.py` imports this module, when the text model loads.

Run it with numpy's BLAS on one thread per call (OPENBLAS_NUM_THREADS=1 in the environment before numpy is
imported): the app already calls it from a pool of OS threads, and BLAS's own threads only fight those for
the cores. Measured on 2 busy cores: 9.6 ms a sentence with one BLAS thread, 43 ms mean (p95 210 ms) without.
"""
import numpy as np

HIDDEN = 384
HEADS = 12
LAYERS = 6
EPS = np.float32(1e-12)
MAX_TOKENS = 128
# A score added to padded keys: exp() of it is exactly 0 in float32, so padding changes nothing.
MASKED = np.float32(-1e9)

# Abramowitz & Stegun 7.1.26 (error under 1.5e-7, below float32 rounding here): numpy has no erf, and
# the model was trained with the exact GELU, not the tanh approximation.
_ERF_P = np.float32(0.3275911)
_ERF_A = tuple(np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592))
_SQRT_HALF = np.float32(0.7071067811865476)


def _erf(x):
    """erf(x) elementwise, float32."""
    ax = np.abs(x)
    t = 1 / (1 + _ERF_P * ax)
    poly = _ERF_A[0]
    for a in _ERF_A[1:]:
        poly = poly * t + a
    y = 1 - poly * t * np.exp(-ax * ax)
    return np.copysign(y, x)


def gelu(x):
    """GELU in its exact (erf) form."""
    return x * (np.float32(0.5) * (1 + _erf(x * _SQRT_HALF)))


def layer_norm(x, weight, bias):
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(var + EPS) * weight + bias


class _Layer:
    """One transformer layer's weights, laid out for `x @ w` (inputs as rows)."""

    def __init__(self, t, i):
        p = f"encoder.layer.{i}."
        scale = np.float32(1 / np.sqrt(HIDDEN // HEADS))
        # Q, K and V in one matmul; the attention scale is folded into Q's weights once here.
        self.qkv_w = np.ascontiguousarray(np.concatenate([
            t[p + "attention.self.query.weight"].T * scale,
            t[p + "attention.self.key.weight"].T,
            t[p + "attention.self.value.weight"].T,
        ], axis=1), dtype=np.float32)
        self.qkv_b = np.concatenate([
            t[p + "attention.self.query.bias"] * scale,
            t[p + "attention.self.key.bias"],
            t[p + "attention.self.value.bias"],
        ]).astype(np.float32)
        self.out_w = np.ascontiguousarray(t[p + "attention.output.dense.weight"].T)
        self.out_b = t[p + "attention.output.dense.bias"]
        self.ln1 = (t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"])
        self.up_w = np.ascontiguousarray(t[p + "intermediate.dense.weight"].T)
        self.up_b = t[p + "intermediate.dense.bias"]
        self.down_w = np.ascontiguousarray(t[p + "output.dense.weight"].T)
        self.down_b = t[p + "output.dense.bias"]
        self.ln2 = (t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"])

    def __call__(self, x, key_bias):
        """x: (B, T, HIDDEN); key_bias: (B, 1, 1, T) added to attention scores, or None."""
        b, n, _ = x.shape
        rows = x.reshape(b * n, HIDDEN)
        qkv = (rows @ self.qkv_w + self.qkv_b).reshape(b, n, 3, HEADS, HIDDEN // HEADS)
        q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # each (B, heads, T, head size)
        scores = q @ k.transpose(0, 1, 3, 2)
        if key_bias is not None:
            scores += key_bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(b * n, HIDDEN)
        rows = layer_norm(context @ self.out_w + self.out_b + rows, *self.ln1)
        hidden = gelu(rows @ self.up_w + self.up_b)
        rows = layer_norm(hidden @ self.down_w + self.down_b + rows, *self.ln2)
        return rows.reshape(b, n, HIDDEN)


class MiniLM:
    """Texts -> (n, 384) L2-normalised float32 sentence vectors. Holds no mutable state: thread-safe."""

    dim = HIDDEN

    def __init__(self, tensors, tokenizer):
        """`tensors`: the model.safetensors arrays by name; `tokenizer`: a `tokenizers.Tokenizer` already
        set to truncate at MAX_TOKENS and not to pad."""
        t = {name: np.asarray(a, dtype=np.float32) for name, a in tensors.items() if name != "embeddings.position_ids"}
        self._tokenizer = tokenizer
        self._words = t["embeddings.word_embeddings.weight"]
        # Every token has type 0: its embedding is added to the positions' once here.
        self._positions = (t["embeddings.position_embeddings.weight"][:MAX_TOKENS]
                           + t["embeddings.token_type_embeddings.weight"][0])
        self._ln = (t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
        self._layers = [_Layer(t, i) for i in range(LAYERS)]

    def embed(self, texts, batch_size=32):
        """Embed `texts` (a list of str). Texts are batched by token count, so that a batch pads little."""
        texts = list(texts)
        encodings = [self._tokenizer.encode(texts[0])] if len(texts) == 1 else self._tokenizer.encode_batch(texts)
        out = np.empty((len(encodings), HIDDEN), dtype=np.float32)
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            out[chunk] = self._embed_ids([encodings[i].ids for i in chunk])
        return out

    def _embed_ids(self, id_lists):
        b, n = len(id_lists), max(len(ids) for ids in id_lists)
        ids = np.zeros((b, n), dtype=np.int64)
        mask = np.zeros((b, n), dtype=np.float32)
        for row, token_ids in enumerate(id_lists):
            ids[row, :len(token_ids)] = token_ids
            mask[row, :len(token_ids)] = 1
        padded = not mask.all()
        key_bias = ((1 - mask) * MASKED)[:, None, None, :] if padded else None

        x = layer_norm(self._words[ids] + self._positions[:n], *self._ln)
        for layer in self._layers:
            x = layer(x, key_bias)

        # Mean over the real tokens, then unit length.
        summed = np.einsum("btd,bt->bd", x, mask) if padded else x.sum(axis=1)
        pooled = summed / mask.sum(axis=1, keepdims=True)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
