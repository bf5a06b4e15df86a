"""TX — text data (chapter 9; API.md §19)."""

from __future__ import annotations

import collections
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from d2lcompat import DataError, data, ops

from .. import reference_seq as ref
from .._registry import Context, scenario


def excerpt_path() -> Path:
    """The opening of H. G. Wells' *The Time Machine* (public domain), shipped with the
    conformance package in the layout of the book's ``timemachine.txt``."""
    return Path(str(resources.files("d2lcompat_conformance") / "data" / "time_machine_excerpt.txt"))


def _data_error(fn: Any, *words: str) -> None:
    try:
        fn()
    except DataError as exc:
        for w in words:
            assert w in str(exc), f"{w!r} not in the message: {exc}"
        return
    raise AssertionError("expected a DataError")


@scenario("TX01", "tokenize, Vocab (ids by frequency, <unk> = 0, reserved tokens, to_tokens) on a fixed text")
def tx01(ctx: Context) -> None:
    path = excerpt_path()
    lines = data.time_machine(path)
    raw = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(raw)
    assert lines[0] == "the time machine by h g wells", lines[0]
    for got, line in zip(lines, raw):
        assert got == " ".join(re.findall("[a-z]+", line.lower())), (got, line)
    words = data.tokenize(lines)
    chars = data.tokenize(lines, token="char")
    assert words[0] == ["the", "time", "machine", "by", "h", "g", "wells"]
    assert chars[0][:4] == ["t", "h", "e", " "] and all(len(c) == len(line) for c, line in zip(chars, lines))
    for tokens, kw in ((words, {}), (chars, {}), (words, {"min_freq": 2, "reserved_tokens": ["<pad>", "<bos>"]})):
        vocab = data.Vocab(tokens, **kw)
        want = ref.vocab(tokens, **kw)
        assert vocab.idx_to_token == want, (vocab.idx_to_token[:10], want[:10])
        assert len(vocab) == len(want) and vocab.unk == 0 and vocab["<unk>"] == 0
        flat = [t for line in tokens for t in line]
        counts = collections.Counter(flat)
        assert dict(vocab.token_freqs) == dict(counts)
        assert [c for _, c in vocab.token_freqs] == sorted(counts.values(), reverse=True)
        assert vocab[flat[:20]] == [want.index(t) if t in want else 0 for t in flat[:20]]
        assert vocab.to_tokens(vocab[flat[:20]]) == [t if t in want else "<unk>" for t in flat[:20]]
        assert vocab.to_tokens(ops.tensor([0, 1])) == want[:2]
    vocab = data.Vocab(words, min_freq=2, reserved_tokens=["<pad>", "<bos>"])
    assert vocab.idx_to_token[:4] == ["<unk>", "<pad>", "<bos>", "the"], vocab.idx_to_token[:4]
    assert vocab["paradox"] == 0, "a word seen once is <unk> with min_freq=2"
    long = next(w for w in words if len(w) > 5)
    assert data.truncate_pad(vocab[long], 5, vocab["<pad>"]) == vocab[long][:5]
    assert data.truncate_pad([3, 4], 4, 1) == [3, 4, 1, 1]
    _data_error(lambda: data.tokenize(lines, token="bpe"), "'bpe'", "'word' or 'char'")
    _data_error(lambda: vocab.to_tokens(len(vocab)), str(len(vocab)))
    _data_error(lambda: data.time_machine(ctx.tmp / "missing.txt"), "missing.txt", "downloads nothing")


@scenario("TX02", "SequenceLoader random and sequential partitions are the book's; Y is X shifted by one; "
                  "the same seed gives the same batches")
def tx02(ctx: Context) -> None:
    lines = data.time_machine(excerpt_path())
    tokens = data.tokenize(lines, token="char")
    vocab = data.Vocab(tokens)
    corpus = [vocab[t] for line in tokens for t in line]
    bs, T = 4, 7
    for random in (True, False):
        loader = data.SequenceLoader(corpus, bs, T, random=random, seed=11)
        epochs = [[(ops.to_numpy(X), ops.to_numpy(Y)) for X, Y in loader] for _ in range(2)]
        # The book's partitioning from the same draws: the offset, then the order.
        rng = np.random.default_rng(11)
        for batches in epochs:
            if random:
                offset = int(rng.integers(0, T))
                order = rng.permutation((len(corpus) - offset - 1) // T)
                want = ref.seq_data_iter_random(corpus, bs, T, offset, order)
            else:
                want = ref.seq_data_iter_sequential(corpus, bs, T, int(rng.integers(0, T + 1)))
            assert len(batches) == len(want) > 0
            for (X, Y), (wX, wY) in zip(batches, want):
                assert X.shape == (bs, T) and np.array_equal(X, wX) and np.array_equal(Y, wY)
        # Y is X shifted by one token of the corpus, row by row.
        text = np.asarray(corpus)
        for X, Y in epochs[0]:
            for x, y in zip(X, Y):
                starts = [s for s in range(len(text) - T) if np.array_equal(text[s:s + T], x)]
                assert any(np.array_equal(text[s + 1:s + 1 + T], y) for s in starts)
        if not random:  # row i of batch t + 1 continues row i of batch t
            for i in range(bs):
                row = np.concatenate([X[i] for X, _ in epochs[0]])
                assert _find(text, row) >= 0, f"row {i} is not one contiguous stretch of the corpus"
        # The same seed gives the same batches; another seed others.
        again = [(ops.to_numpy(X), ops.to_numpy(Y)) for X, Y in data.SequenceLoader(corpus, bs, T, random, seed=11)]
        assert all(np.array_equal(a[0], b[0]) for a, b in zip(again, epochs[0]))
    _data_error(lambda: data.SequenceLoader(corpus[:30], 4, 7), "30 tokens", "too short")
    _data_error(lambda: data.SequenceLoader(corpus, 0, 7), "batch_size")
    _data_error(lambda: data.SequenceLoader(np.zeros((3, 50), dtype=np.int64), 2, 3), "flat")


def _find(text: np.ndarray, x: np.ndarray) -> int:
    """The first position of the window ``x`` in ``text``, or -1."""
    n = len(x)
    for s in range(len(text) - n + 1):
        if np.array_equal(text[s:s + n], x):
            return s
    return -1
