"""The book's Transformer encoder-decoder (§11.7, MXNet tab) on a synthetic task:
reversing digit strings. Used by AT04 and XB06 (`xb_transformer`).

The training step is d2lcompat's `train_step` (compiled where the backend compiles a
whole step): the encoder input, the decoder input and the valid lengths travel packed
in one int tensor ``(B, 2T + 1)`` and the labels in ``(B, T + 1)``, so that the step
keeps its ``step(X, y)`` form.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import autograd, data, nn, ops
from d2lcompat._registry import active

DIGITS = [str(d) for d in range(10)]
RESERVED = ["<pad>", "<bos>", "<eos>"]


def reverse_task(n: int, num_steps: int, seed: int, min_len: int = 3,
                 max_len: int | None = None) -> tuple[data.Vocab, np.ndarray, np.ndarray, list[list[str]], list[list[str]]]:
    """``n`` random digit strings and their reversals: ``(vocab, X, y, sources, targets)``
    with ``X`` the packed ``(n, 2T + 1)`` model input and ``y`` the packed labels."""
    max_len = num_steps - 1 if max_len is None else max_len
    rng = np.random.default_rng(seed)
    vocab = data.Vocab([DIGITS], reserved_tokens=RESERVED)
    pad, bos, eos = vocab["<pad>"], vocab["<bos>"], vocab["<eos>"]
    sources, targets = [], []
    X = np.zeros((n, 2 * num_steps + 1), dtype=np.int64)
    y = np.zeros((n, num_steps + 1), dtype=np.int64)
    for i in range(n):
        src = [DIGITS[d] for d in rng.integers(0, 10, size=int(rng.integers(min_len, max_len + 1)))]
        tgt = src[::-1]
        sources.append(src)
        targets.append(tgt)
        enc = data.truncate_pad(vocab[src] + [eos], num_steps, pad)
        label = data.truncate_pad(vocab[tgt] + [eos], num_steps, pad)
        X[i, :num_steps] = enc
        X[i, num_steps:2 * num_steps] = [bos] + label[:-1]  # teacher forcing
        X[i, -1] = len(src) + 1
        y[i, :num_steps] = label
        y[i, -1] = len(tgt) + 1
    return vocab, X, y, sources, targets


class TransformerEncoder(nn.Block):
    """The book's ``TransformerEncoder``."""

    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 num_blks: int, dropout: float, use_bias: bool = False) -> None:
        super().__init__()
        self.num_hiddens = num_hiddens
        self.embedding = nn.Embedding(vocab_size, num_hiddens)
        self.pos_encoding = nn.PositionalEncoding(num_hiddens, dropout)
        self.blks = nn.Sequential()
        for _ in range(num_blks):
            self.blks.add(nn.TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout, use_bias))

    def forward(self, X: Any, valid_lens: Any) -> Any:
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens))
        for blk in self.blks:
            X = blk(X, valid_lens)
        return X


class TransformerDecoder(nn.Block):
    """The book's ``TransformerDecoder``."""

    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 num_blks: int, dropout: float) -> None:
        super().__init__()
        self.num_hiddens = num_hiddens
        self.num_blks = num_blks
        self.embedding = nn.Embedding(vocab_size, num_hiddens)
        self.pos_encoding = nn.PositionalEncoding(num_hiddens, dropout)
        self.blks = nn.Sequential()
        for i in range(num_blks):
            self.blks.add(nn.TransformerDecoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout, i))
        self.dense = nn.Dense(vocab_size, flatten=False)

    def init_state(self, enc_outputs: Any, enc_valid_lens: Any) -> list[Any]:
        return [enc_outputs, enc_valid_lens, [None] * self.num_blks]

    def forward(self, X: Any, state: list[Any]) -> tuple[Any, list[Any]]:
        # The position of X's first token: the length of the cache (0 when training).
        # The book always adds position 0's encoding here, which a one-token-at-a-time
        # greedy decoder then sees at every step (docs/sequence.md).
        offset = 0 if state[2][0] is None else ops.shape(state[2][0])[1]
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens), offset)
        for blk in self.blks:
            X, state = blk(X, state)
        return self.dense(X), state


class Seq2Seq(nn.Block):
    """Encoder and decoder; ``net(X)`` takes the packed ``(B, 2T + 1)`` input."""

    def __init__(self, vocab_size: int, num_steps: int, num_hiddens: int = 32, ffn_num_hiddens: int = 64,
                 num_heads: int = 4, num_blks: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_steps = num_steps
        self.encoder = TransformerEncoder(vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout)
        self.decoder = TransformerDecoder(vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout)

    def forward(self, X: Any) -> Any:
        T = self.num_steps
        enc_valid_lens = ops.cast(X[:, 2 * T], "float32")
        enc_outputs = self.encoder(X[:, :T], enc_valid_lens)
        state = self.decoder.init_state(enc_outputs, enc_valid_lens)
        return self.decoder(X[:, T:2 * T], state)[0]


class MaskedSoftmaxCELoss(nn.Block):
    """The book's masked softmax cross-entropy: per sample, the mean over the ``T`` steps
    of the token losses with the steps beyond the valid length zeroed. ``label`` is the
    packed ``(B, T + 1)`` labels (tokens, valid length)."""

    def __init__(self) -> None:
        super().__init__()
        self.ce = d2lcompat.loss.SoftmaxCrossEntropyLoss()

    def forward(self, pred: Any, label: Any) -> Any:
        T = ops.shape(pred)[1]
        tokens = label[:, :T]
        valid = ops.cast(label[:, T], "float32")
        weights = ops.sequence_mask(ops.cast(tokens, "float32") * 0.0 + 1.0, valid)
        logp = ops.log_softmax(pred, axis=-1)
        onehot = ops.cast(ops.equal(ops.expand_dims(ops.cast(tokens, "int32"), -1),
                                    ops.arange(ops.shape(pred)[2], dtype="int32")), "float32")
        per_token = -ops.sum(logp * onehot, axis=-1)
        return ops.mean(per_token * weights, axis=1)


def build(vocab_size: int, num_steps: int, seed: int, dropout: float = 0.0) -> Seq2Seq:
    """A seeded model, initialized (Xavier) and shaped by one forward pass."""
    d2lcompat.seed(seed)
    net = Seq2Seq(vocab_size, num_steps, dropout=dropout)
    net.initialize(d2lcompat.init.Xavier())
    net(ops.tensor(np.zeros((1, 2 * num_steps + 1), dtype=np.int64) + 1))
    return net


def train(net: Seq2Seq, X: np.ndarray, y: np.ndarray, steps: int, batch_size: int, lr: float,
          seed: int, decay_from: int | None = None) -> np.ndarray:
    """``steps`` Adam steps on batches drawn from (X, y) in a seeded order; returns the
    loss curve. The step is one compiled function where the backend compiles a whole
    training step (JAX, TensorFlow); eager elsewhere (torch, Paddle: their eager step is
    the faster one on a CPU, docs/training.md). From step ``decay_from`` on, the
    learning rate falls linearly to a tenth of ``lr`` at the last step."""
    if active().COMPILES_TRAIN_STEP:
        net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), "adam", {"learning_rate": lr})
    step = d2lcompat.train_step(net, MaskedSoftmaxCELoss(), trainer)
    rng = np.random.default_rng(seed)
    losses = []
    order = np.empty(0, dtype=np.int64)
    for i in range(steps):
        if decay_from is not None and i >= decay_from:
            trainer.set_learning_rate(lr * (1.0 - 0.9 * (i - decay_from) / max(1, steps - decay_from)))
        if len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(len(X))])
        idx, order = order[:batch_size], order[batch_size:]
        losses.append(float(ops.item(step(ops.tensor(X[idx]), ops.tensor(y[idx])))))
    return np.asarray(losses, dtype=np.float64)


def greedy_decode(net: Seq2Seq, vocab: data.Vocab, X: np.ndarray) -> list[list[str]]:
    """The book's greedy ``predict_step``, in predict mode, for every row of ``X`` at once:
    the decoder sees one token per step and its blocks' caches grow."""
    T = net.num_steps
    enc_X = ops.tensor(X[:, :T])
    valid = ops.tensor(X[:, 2 * T].astype(np.float32))
    with autograd.predict_mode():
        enc_outputs = net.encoder(enc_X, valid)
        state = net.decoder.init_state(enc_outputs, valid)
        tok = ops.tensor(np.full((len(X), 1), vocab["<bos>"], dtype=np.int64))
        out = []
        for _ in range(T):
            logits, state = net.decoder(tok, state)
            nxt = ops.to_numpy(logits).argmax(axis=-1)
            out.append(nxt[:, 0])
            tok = ops.tensor(nxt.astype(np.int64))
    ids = np.stack(out, axis=1)
    eos = vocab["<eos>"]
    result = []
    for row in ids:
        row = list(row)
        row = row[: row.index(eos)] if eos in row else row
        result.append(vocab.to_tokens(row))
    return result


def token_accuracy(pred: list[list[str]], targets: list[list[str]]) -> float:
    """The share of target tokens (the ``<eos>`` included) the prediction got right, by
    position."""
    right = total = 0
    for p, t in zip(pred, targets):
        want = t + ["<eos>"]
        got = p + ["<eos>"]
        total += len(want)
        right += sum(1 for i, w in enumerate(want) if i < len(got) and got[i] == w)
    return right / total
