"""NumPy references of the AT and TX scenarios (API.md §19), straight from the book's
definitions (chapter 9's text preprocessing, chapter 11's attention), in float64.

Scenarios compare every backend with these, never with another backend's output.
"""

from __future__ import annotations

import collections
import math

import numpy as np

__all__ = [
    "additive_attention",
    "bleu",
    "dot_product_attention",
    "masked_softmax",
    "multi_head_attention",
    "positional_encoding",
    "seq_data_iter_random",
    "seq_data_iter_sequential",
    "sequence_mask",
    "vocab",
]


def sequence_mask(X: np.ndarray, valid_len: np.ndarray, value: float = 0.0) -> np.ndarray:
    """Positions ``t >= valid_len[b]`` of axis 1 set to ``value``."""
    out = np.array(X, dtype=np.float64, copy=True)
    for b, n in enumerate(np.asarray(valid_len)):
        out[b, int(n):] = value
    return out


def masked_softmax(X: np.ndarray, valid_lens: np.ndarray | None) -> np.ndarray:
    """The book's: scores of keys ``>= valid_lens`` (``(B,)`` or ``(B, Q)``) become
    -1e6, then a softmax over the last axis; None is the plain softmax."""
    X = np.array(X, dtype=np.float64, copy=True)
    if valid_lens is not None:
        lens = np.asarray(valid_lens)
        B, Q = X.shape[0], X.shape[1]
        for b in range(B):
            for q in range(Q):
                n = lens[b] if lens.ndim == 1 else lens[b, q]
                X[b, q, int(n):] = -1e6
    e = np.exp(X - X.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def dot_product_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray,
                          valid_lens: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(output, weights)`` of ``softmax(q kᵀ / sqrt(d)) v`` with the book's mask."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    w = masked_softmax(q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1]), valid_lens)
    return w @ v, w


def additive_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, valid_lens: np.ndarray | None,
                       W_q: np.ndarray, W_k: np.ndarray, w_v: np.ndarray) -> np.ndarray:
    """The book's additive attention; weights ``(out, in)`` as Dense stores them."""
    qh = np.asarray(q, np.float64) @ W_q.T
    kh = np.asarray(k, np.float64) @ W_k.T
    features = np.tanh(qh[:, :, None, :] + kh[:, None, :, :])
    scores = (features @ w_v.T)[..., 0]
    return masked_softmax(scores, valid_lens) @ np.asarray(v, np.float64)


def multi_head_attention(queries: np.ndarray, keys: np.ndarray, values: np.ndarray,
                         valid_lens: np.ndarray | None, W: dict[str, np.ndarray],
                         num_heads: int) -> np.ndarray:
    """The book's MultiHeadAttention (no bias): ``transpose_qkv``, valid_lens repeated
    per head, dot-product attention, ``transpose_output``, ``W_o``."""
    def transpose_qkv(X: np.ndarray) -> np.ndarray:
        X = X.reshape(X.shape[0], X.shape[1], num_heads, -1).transpose(0, 2, 1, 3)
        return X.reshape(-1, X.shape[2], X.shape[3])

    q = transpose_qkv(np.asarray(queries, np.float64) @ W["W_q"].T)
    k = transpose_qkv(np.asarray(keys, np.float64) @ W["W_k"].T)
    v = transpose_qkv(np.asarray(values, np.float64) @ W["W_v"].T)
    vl = None if valid_lens is None else np.repeat(np.asarray(valid_lens), num_heads, axis=0)
    out, _ = dot_product_attention(q, k, v, vl)
    out = out.reshape(-1, num_heads, out.shape[1], out.shape[2]).transpose(0, 2, 1, 3)
    out = out.reshape(out.shape[0], out.shape[1], -1)
    return out @ W["W_o"].T


def positional_encoding(max_len: int, num_hiddens: int) -> np.ndarray:
    """``P[i, 2j] = sin(i / 10000^(2j/d))``, ``P[i, 2j+1] = cos(i / 10000^(2j/d))``,
    element by element from the formula."""
    P = np.zeros((max_len, num_hiddens))
    for i in range(max_len):
        for col in range(num_hiddens):
            j = col // 2
            angle = i / 10000 ** (2 * j / num_hiddens)
            P[i, col] = math.sin(angle) if col % 2 == 0 else math.cos(angle)
    return P


def vocab(tokens: list[list[str]], min_freq: int = 0,
          reserved_tokens: list[str] | None = None) -> list[str]:
    """The book's ``idx_to_token``: ``<unk>``, the reserved tokens, then every token
    seen ``>= min_freq`` times by decreasing count (ties: first seen first)."""
    counts: dict[str, int] = {}
    order: list[str] = []
    for line in tokens:
        for t in line:
            if t not in counts:
                counts[t] = 0
                order.append(t)
            counts[t] += 1
    out = ["<unk>"] + list(reserved_tokens or [])
    ranked = sorted(order, key=lambda t: (-counts[t], order.index(t)))
    for t in ranked:
        if counts[t] >= min_freq and t not in out:
            out.append(t)
    return out


def seq_data_iter_random(corpus: list[int], batch_size: int, num_steps: int, offset: int,
                         order: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The book's random partitioning for a given ``offset`` and shuffled subsequence
    ``order`` (a permutation of the subsequence indices)."""
    corpus = corpus[offset:]
    num_subseqs = (len(corpus) - 1) // num_steps
    initial = [list(range(0, num_subseqs * num_steps, num_steps))[i] for i in order]
    out = []
    for i in range(0, batch_size * (num_subseqs // batch_size), batch_size):
        starts = initial[i: i + batch_size]
        X = np.array([corpus[j: j + num_steps] for j in starts])
        Y = np.array([corpus[j + 1: j + 1 + num_steps] for j in starts])
        out.append((X, Y))
    return out


def seq_data_iter_sequential(corpus: list[int], batch_size: int, num_steps: int,
                             offset: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The book's sequential partitioning for a given ``offset``."""
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = np.array(corpus[offset: offset + num_tokens]).reshape(batch_size, -1)
    Ys = np.array(corpus[offset + 1: offset + 1 + num_tokens]).reshape(batch_size, -1)
    num_batches = Xs.shape[1] // num_steps
    return [(Xs[:, i: i + num_steps], Ys[:, i: i + num_steps])
            for i in range(0, num_steps * num_batches, num_steps)]


def bleu(pred_seq: str, label_seq: str, k: int) -> float:
    """The book's BLEU (§10.7): brevity penalty times the ``p_n^(1/2^n)``."""
    pred, label = pred_seq.split(" "), label_seq.split(" ")
    lp, ll = len(pred), len(label)
    score = math.exp(min(0, 1 - ll / lp))
    for n in range(1, min(k, lp) + 1):
        matches = 0
        subs: collections.Counter[str] = collections.Counter(
            " ".join(label[i: i + n]) for i in range(ll - n + 1))
        for i in range(lp - n + 1):
            gram = " ".join(pred[i: i + n])
            if subs[gram] > 0:
                matches += 1
                subs[gram] -= 1
        score *= math.pow(matches / (lp - n + 1), math.pow(0.5, n))
    return score
