"""An encoder-decoder Transformer (the book's §11.7) learns to reverse digit strings.

Synthetic data made with NumPy (no download): sources of 3 to 7 random digits, targets
the same digits reversed, ``<eos>``-terminated and padded to 8 steps. The model is the
book's TransformerEncoder/TransformerDecoder built from ``nn.TransformerEncoderBlock``
and ``nn.TransformerDecoderBlock`` (2 blocks, 4 heads, 32 hidden units), trained with
the book's masked cross-entropy and Adam (400 steps, the learning rate decaying
linearly over the second half), then decoded greedily one token at a time
(the decoder blocks' caches grow). Prints the token accuracy and the mean BLEU
(``data.bleu``, k=2) on 200 held-out strings. Run it under any backend::

    D2LCOMPAT_BACKEND=jax python examples/transformer_reverse.py
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import autograd, data, loss, nn, ops
from d2lcompat._registry import active

NUM_STEPS = 8
DIGITS = [str(d) for d in range(10)]


def make_data(n: int, seed: int, vocab: data.Vocab) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """``(X, y, targets)``: ``X`` packs (encoder input, decoder input, source length) in
    one ``(n, 2T + 1)`` int array, ``y`` (target tokens, target length) in ``(n, T + 1)``,
    so that ``d2lcompat.train_step``'s ``step(X, y)`` carries them."""
    rng = np.random.default_rng(seed)
    T, pad, bos, eos = NUM_STEPS, vocab["<pad>"], vocab["<bos>"], vocab["<eos>"]
    X = np.zeros((n, 2 * T + 1), dtype=np.int64)
    y = np.zeros((n, T + 1), dtype=np.int64)
    targets = []
    for i in range(n):
        src = [DIGITS[d] for d in rng.integers(0, 10, size=int(rng.integers(3, T)))]
        tgt = src[::-1]
        targets.append(tgt)
        label = data.truncate_pad(vocab[tgt] + [eos], T, pad)
        X[i, :T] = data.truncate_pad(vocab[src] + [eos], T, pad)
        X[i, T:2 * T] = [bos] + label[:-1]  # teacher forcing: the target shifted right
        X[i, -1] = len(src) + 1
        y[i, :T], y[i, -1] = label, len(tgt) + 1
    return X, y, targets


class TransformerEncoder(nn.Block):
    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 num_blks: int, dropout: float) -> None:
        super().__init__()
        self.num_hiddens = num_hiddens
        self.embedding = nn.Embedding(vocab_size, num_hiddens)
        self.pos_encoding = nn.PositionalEncoding(num_hiddens, dropout)
        self.blks = nn.Sequential()
        for _ in range(num_blks):
            self.blks.add(nn.TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout))

    def forward(self, X: Any, valid_lens: Any) -> Any:
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens))
        for blk in self.blks:
            X = blk(X, valid_lens)
        return X


class TransformerDecoder(nn.Block):
    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 num_blks: int, dropout: float) -> None:
        super().__init__()
        self.num_hiddens, self.num_blks = num_hiddens, num_blks
        self.embedding = nn.Embedding(vocab_size, num_hiddens)
        self.pos_encoding = nn.PositionalEncoding(num_hiddens, dropout)
        self.blks = nn.Sequential()
        for i in range(num_blks):
            self.blks.add(nn.TransformerDecoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout, i))
        self.dense = nn.Dense(vocab_size, flatten=False)

    def init_state(self, enc_outputs: Any, enc_valid_lens: Any) -> list[Any]:
        return [enc_outputs, enc_valid_lens, [None] * self.num_blks]

    def forward(self, X: Any, state: list[Any]) -> tuple[Any, list[Any]]:
        # offset: the position of X's first token, the length of the blocks' cache (the
        # book adds position 0's encoding to every token it decodes one at a time).
        offset = 0 if state[2][0] is None else ops.shape(state[2][0])[1]
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens), offset)
        for blk in self.blks:
            X, state = blk(X, state)
        return self.dense(X), state


class Seq2Seq(nn.Block):
    def __init__(self, vocab_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.encoder = TransformerEncoder(vocab_size, 32, 64, 4, 2, dropout)
        self.decoder = TransformerDecoder(vocab_size, 32, 64, 4, 2, dropout)

    def forward(self, X: Any) -> Any:
        T = NUM_STEPS
        valid = ops.cast(X[:, 2 * T], "float32")
        state = self.decoder.init_state(self.encoder(X[:, :T], valid), valid)
        return self.decoder(X[:, T:2 * T], state)[0]


class MaskedSoftmaxCELoss(nn.Block):
    """The book's: softmax cross-entropy per token, zero beyond the valid length,
    averaged over the steps."""

    def __init__(self) -> None:
        super().__init__()
        self.ce = loss.SoftmaxCrossEntropyLoss()

    def forward(self, pred: Any, label: Any) -> Any:
        T = ops.shape(pred)[1]
        tokens, valid = label[:, :T], ops.cast(label[:, T], "float32")
        weights = ops.sequence_mask(ops.cast(tokens, "float32") * 0.0 + 1.0, valid)
        onehot = ops.cast(ops.equal(ops.expand_dims(ops.cast(tokens, "int32"), -1),
                                    ops.arange(ops.shape(pred)[2], dtype="int32")), "float32")
        per_token = -ops.sum(ops.log_softmax(pred, axis=-1) * onehot, axis=-1)
        return ops.mean(per_token * weights, axis=1)


def greedy(net: Seq2Seq, vocab: data.Vocab, X: np.ndarray) -> list[list[str]]:
    """Decode every row of ``X`` at once, one token per step, in predict mode."""
    T = NUM_STEPS
    valid = ops.tensor(X[:, 2 * T].astype(np.float32))
    with autograd.predict_mode():
        state = net.decoder.init_state(net.encoder(ops.tensor(X[:, :T]), valid), valid)
        tok = ops.tensor(np.full((len(X), 1), vocab["<bos>"], dtype=np.int64))
        steps = []
        for _ in range(T):
            logits, state = net.decoder(tok, state)
            nxt = ops.to_numpy(logits).argmax(axis=-1)
            steps.append(nxt[:, 0])
            tok = ops.tensor(nxt.astype(np.int64))
    out = []
    for row in np.stack(steps, axis=1).tolist():
        eos = vocab["<eos>"]
        out.append(vocab.to_tokens(row[: row.index(eos)] if eos in row else row))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--compile", choices=["auto", "yes", "no"], default="auto",
                        help="hybridize the model (auto: where the backend compiles a training step)")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    vocab = data.Vocab([DIGITS], reserved_tokens=["<pad>", "<bos>", "<eos>"])
    X, y, _ = make_data(2000, 1, vocab)
    Xt, _, targets = make_data(200, 2, vocab)
    d2lcompat.seed(args.seed)
    net = Seq2Seq(len(vocab))
    net.initialize(d2lcompat.init.Xavier())
    if args.compile == "yes" or (args.compile == "auto" and active().COMPILES_TRAIN_STEP):
        # One compiled training step where the backend compiles one (JAX, TensorFlow);
        # torch and Paddle train faster eagerly on a CPU (docs/training.md).
        net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), "adam", {"learning_rate": args.lr})
    step = d2lcompat.train_step(net, MaskedSoftmaxCELoss(), trainer)
    rng = np.random.default_rng(4)
    order = np.empty(0, dtype=np.int64)
    losses, start = [], time.perf_counter()
    decay_from = args.steps // 2  # then the learning rate falls linearly to a tenth
    for i in range(args.steps):
        if i >= decay_from:
            trainer.set_learning_rate(args.lr * (1.0 - 0.9 * (i - decay_from) / max(1, args.steps - decay_from)))
        if len(order) < 64:
            order = np.concatenate([order, rng.permutation(len(X))])
        idx, order = order[:64], order[64:]
        losses.append(float(ops.item(step(ops.tensor(X[idx]), ops.tensor(y[idx])))))
        if not args.quiet and (i + 1) % 50 == 0:
            print(f"step {i + 1:4d}  loss {np.mean(losses[-50:]):.4f}")
    seconds = time.perf_counter() - start
    pred = greedy(net, vocab, Xt)
    right = total = 0
    for p, t in zip(pred, targets):
        want, got = t + ["<eos>"], p + ["<eos>"]
        total += len(want)
        right += sum(1 for j, w in enumerate(want) if j < len(got) and got[j] == w)
    accuracy = right / total
    bleu = float(np.mean([data.bleu(" ".join(p) or "<empty>", " ".join(t), k=2) for p, t in zip(pred, targets)]))
    result = {"backend": d2lcompat.backend(), "loss": losses, "token_accuracy": accuracy,
              "bleu": bleu, "train_seconds": seconds}
    if not args.quiet:
        for p, t in list(zip(pred, targets))[:3]:
            print(f"{''.join(t[::-1])} -> {''.join(p)}  (want {''.join(t)})")
        print(f"{d2lcompat.backend()}: token accuracy {accuracy:.3f}, BLEU {bleu:.3f}, "
              f"{args.steps} steps in {seconds:.1f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f)
    return result


if __name__ == "__main__":
    main()
