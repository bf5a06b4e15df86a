"""A character-level LSTM language model (D2L §9.5-§10.1) with gradient clipping,
perplexity printed per epoch — the same script on every backend.

    D2LCOMPAT_BACKEND=jax python examples/char_lm.py                   # the shipped text
    D2LCOMPAT_BACKEND=torch python examples/char_lm.py --text timemachine.txt --epochs 50
    python examples/char_lm.py --plot docs/img/char-lm-loss.png        # (see --help)

The default text is the opening paragraph of H. G. Wells' *The Time Machine* (public
domain), shipped in conformance/data/; ``--text`` reads your own copy of the whole book
(https://www.gutenberg.org/ebooks/35), preprocessed as the book does: letters only,
lower case. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import init, loss, nn, ops

HERE = Path(__file__).resolve().parent
TEXT = HERE.parent / "conformance" / "data" / "time_machine_opening.txt"


def read_text(path: str | Path) -> str:
    """The book's preprocessing of *The Time Machine*: runs of non-letters become one
    space, everything lower case, lines joined."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return " ".join(re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in lines if line.strip())


class RNNModel(nn.Block):
    """Embedding -> LSTM (``NTC``) -> Dense over the vocabulary: ``(N, T)`` indices to
    ``(N, T, V)`` logits."""

    def __init__(self, vocab_size: int, num_hiddens: int, embed: int = 32, num_layers: int = 1):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embed)
        self.rnn = nn.LSTM(num_hiddens, num_layers=num_layers, layout="NTC", input_size=embed)
        self.dense = nn.Dense(vocab_size, in_units=num_hiddens)

    def forward(self, X: Any, state: Any = None) -> Any:
        if state is None:
            Y = self.rnn(self.embedding(X))
        else:
            Y, state = self.rnn(self.embedding(X), state)
        # The Dense read-out over the last axis (no reshape: shapes may be symbolic).
        dense = self.dense
        logits = ops.linear(Y, dense.weight.data(), dense.bias.data())
        return logits if state is None else (logits, state)


def windows(ids: np.ndarray, num_steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``num_steps`` characters from a random offset, shuffled (the book's
    random sampling): inputs and the targets shifted by one."""
    offset = int(rng.integers(0, num_steps))
    starts = rng.permutation(np.arange(offset, len(ids) - num_steps - 1, num_steps))
    X = np.stack([ids[s : s + num_steps] for s in starts])
    Y = np.stack([ids[s + 1 : s + num_steps + 1] for s in starts])
    return X, Y


def predict(net: RNNModel, prefix: str, num_preds: int, chars: list[str]) -> str:
    """Greedy continuation of ``prefix``: warm the state up on it, then feed back the argmax."""
    index = {c: i for i, c in enumerate(chars)}
    state = net.rnn.begin_state(1)
    out = [index.get(c, 0) for c in prefix]
    logits, state = net(ops.tensor(np.array([out[:-1] or out[:1]])), state) if len(out) > 1 else (None, state)
    for _ in range(num_preds):
        logits, state = net(ops.tensor(np.array([[out[-1]]])), state)
        out.append(int(ops.to_numpy(logits)[0, -1].argmax()))
    return "".join(chars[i] for i in out)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text", default=str(TEXT), help="a text file (default: the shipped opening)")
    p.add_argument("--repeat", type=int, default=10, help="repeat the text N times (1 for a whole book)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-steps", type=int, default=16)
    p.add_argument("--hiddens", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0, help="clip_global_norm's theta")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eager", action="store_true", help="do not hybridize the model")
    p.add_argument("--json", default=None, help="write the perplexity per epoch here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    text = " ".join([read_text(args.text)] * args.repeat)
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], dtype=np.int64)
    d2lcompat.seed(args.seed)
    net = RNNModel(len(chars), args.hiddens)
    net.initialize(init.Xavier())
    if not args.eager:
        net.hybridize()  # a compiled training step where the framework compiles one (JAX, TF)
    trainer = d2lcompat.Trainer(net.collect_params(), "adam", {"learning_rate": args.lr},
                                clip_global_norm=args.clip)
    step = d2lcompat.train_step(net, loss.SoftmaxCrossEntropyLoss(), trainer)
    rng = np.random.default_rng(args.seed)
    history: dict[str, Any] = {"backend": d2lcompat.backend(), "perplexity": [], "seconds": []}
    for epoch in range(args.epochs):
        start = time.perf_counter()
        X, Y = windows(ids, args.num_steps, rng)
        losses = []
        for i in range(0, len(X) - args.batch_size + 1, args.batch_size):
            Xb, Yb = ops.tensor(X[i : i + args.batch_size]), ops.tensor(Y[i : i + args.batch_size])
            losses.append(float(ops.item(step(Xb, Yb))))
        ppl = float(np.exp(np.mean(losses)))
        history["perplexity"].append(ppl)
        history["seconds"].append(time.perf_counter() - start)
        if not args.quiet:
            print(f"epoch {epoch + 1}: perplexity {ppl:.3f} ({history['seconds'][-1]:.2f} s)")
    sample = predict(net, "the time traveller", 40, chars)
    history["sample"] = sample
    if not args.quiet:
        print(sample)
    if args.json:
        Path(args.json).write_text(json.dumps(history), encoding="utf-8")
    return history


if __name__ == "__main__":
    main()
