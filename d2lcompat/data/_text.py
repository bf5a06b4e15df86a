"""Text data (the book's chapter 9 and §10.7): `tokenize`, `Vocab`, `truncate_pad`,
`SequenceLoader`, `bleu`, `time_machine`.

Where is the randomness of `SequenceLoader`? `SequenceLoader.__iter__` draws the
offset (and, for random partitioning, the order of the subsequences) from a NumPy
generator (its own, seeded by ``seed``, or d2lcompat's seeded generator) on the host,
so the same seed gives the same batches on every backend. Nothing here downloads.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _device
from .._errors import DataError
from .._random import generator
from .._registry import active

__all__ = ["SequenceLoader", "Vocab", "bleu", "time_machine", "tokenize", "truncate_pad"]


def tokenize(lines: Sequence[str], token: str = "word") -> list[list[str]]:
    """Split each line into word tokens (``line.split()``) or character tokens.

    Examples
    --------
    >>> from d2lcompat import data
    >>> data.tokenize(["the time machine", "by h g"])
    [['the', 'time', 'machine'], ['by', 'h', 'g']]
    >>> data.tokenize(["ab c"], token="char")
    [['a', 'b', ' ', 'c']]
    """
    if isinstance(lines, str):
        raise DataError("tokenize expects a list of lines, got one string; pass [text] or text.splitlines().")
    if token == "word":
        return [line.split() for line in lines]
    if token == "char":
        return [list(line) for line in lines]
    raise DataError(f"tokenize: unknown token type {token!r}; use 'word' or 'char'.")


def _flatten(tokens: Any) -> list[Any]:
    if tokens and isinstance(tokens[0], (list, tuple)):
        return [t for line in tokens for t in line]
    return list(tokens)


class Vocab:
    """The book's vocabulary: ``<unk>`` is index 0, then ``reserved_tokens``, then every
    token seen at least ``min_freq`` times by decreasing frequency (ties: first seen
    first). ``vocab[token]`` (or a list of tokens) gives indices, unknown tokens 0;
    ``vocab.to_tokens(indices)`` the reverse; ``len(vocab)``; ``token_freqs`` is the
    list of ``(token, count)`` by decreasing count.

    Examples
    --------
    >>> from d2lcompat import data
    >>> vocab = data.Vocab(data.tokenize(["a b b c c c"]), reserved_tokens=["<pad>"])
    >>> vocab.idx_to_token, vocab["c"], vocab[["a", "zzz"]], len(vocab)
    (['<unk>', '<pad>', 'c', 'b', 'a'], 2, [4, 0], 5)
    >>> vocab.to_tokens([2, 3]), vocab.token_freqs[0]
    (['c', 'b'], ('c', 3))
    """

    def __init__(self, tokens: Any = None, min_freq: int = 0, reserved_tokens: Sequence[str] | None = None) -> None:
        flat = _flatten(tokens or [])
        reserved = list(reserved_tokens or [])
        if len(set(reserved)) != len(reserved) or "<unk>" in reserved:
            raise DataError(
                f"Vocab: reserved_tokens {reserved} repeat a token or contain '<unk>' (always index 0)."
            )
        counter = collections.Counter(flat)
        # sorted() is stable: equal counts keep the order in which tokens were first seen.
        self._token_freqs = sorted(counter.items(), key=lambda x: x[1], reverse=True)
        self.idx_to_token: list[str] = ["<unk>", *reserved]
        self.token_to_idx: dict[str, int] = {t: i for i, t in enumerate(self.idx_to_token)}
        for token, freq in self._token_freqs:
            if freq < min_freq:
                break
            if token not in self.token_to_idx:
                self.idx_to_token.append(token)
                self.token_to_idx[token] = len(self.idx_to_token) - 1

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __getitem__(self, tokens: Any) -> Any:
        if not isinstance(tokens, (list, tuple)):
            return self.token_to_idx.get(tokens, self.unk)
        return [self.__getitem__(t) for t in tokens]

    def to_tokens(self, indices: Any) -> Any:
        """The token of one index, or the list of tokens of a list of indices (ints,
        NumPy integers or a 1-D native tensor)."""
        b = active()
        if b.is_tensor(indices):
            indices = b.to_numpy(indices).tolist()
        if isinstance(indices, np.ndarray):
            indices = indices.tolist()
        if not isinstance(indices, (list, tuple)):
            return self._token(indices)
        return [self._token(i) for i in indices]

    def _token(self, index: Any) -> str:
        i = int(index)
        if not 0 <= i < len(self.idx_to_token):
            raise DataError(f"Vocab.to_tokens: index {i} is outside the vocabulary [0, {len(self)}).")
        return self.idx_to_token[i]

    @property
    def unk(self) -> int:
        """The index of ``<unk>``: 0."""
        return 0

    @property
    def token_freqs(self) -> list[tuple[str, int]]:
        """``(token, count)`` pairs by decreasing count."""
        return self._token_freqs

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"


def truncate_pad(line: Sequence[Any], num_steps: int, padding_token: Any) -> list[Any]:
    """``line`` cut to ``num_steps`` tokens or padded with ``padding_token`` to that length.

    Examples
    --------
    >>> from d2lcompat import data
    >>> data.truncate_pad([1, 2, 3], 5, 0), data.truncate_pad([1, 2, 3], 2, 0)
    ([1, 2, 3, 0, 0], [1, 2])
    """
    if int(num_steps) < 1:
        raise DataError(f"truncate_pad: num_steps must be >= 1, got {num_steps}.")
    line = list(line)
    if len(line) > num_steps:
        return line[:num_steps]
    return line + [padding_token] * (num_steps - len(line))


class SequenceLoader:
    """Minibatches ``(X, Y)`` of ``(batch_size, num_steps)`` token indices from one long
    ``corpus``, ``Y`` being ``X`` shifted by one token: the book's
    ``seq_data_iter_random`` (``random=True``: subsequences from a random offset, in a
    random order; neighbouring batches are not adjacent) or ``seq_data_iter_sequential``
    (``random=False``: row ``i`` of batch ``t + 1`` continues row ``i`` of batch ``t``).

    Each iteration (epoch) draws a new offset from the loader's generator (seeded by
    ``seed``) or d2lcompat's (`d2lcompat.seed`); the same seed gives the same batches
    on every backend. The batches are int64 native tensors on the default device.

    Examples
    --------
    >>> from d2lcompat import data, ops
    >>> loader = data.SequenceLoader(list(range(35)), batch_size=2, num_steps=5, random=False, seed=0)
    >>> batches = [(ops.to_numpy(X), ops.to_numpy(Y)) for X, Y in loader]
    >>> len(batches), batches[0][0].shape, bool((batches[0][1] == batches[0][0] + 1).all())
    (2, (2, 5), True)
    """

    def __init__(
        self, corpus: Sequence[int] | np.ndarray, batch_size: int, num_steps: int,
        random: bool = True, seed: int | None = None,
    ) -> None:
        b = active()
        if b.is_tensor(corpus):
            corpus = b.to_numpy(corpus)
        arr = np.asarray(corpus)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise DataError(
                f"SequenceLoader: corpus must be one flat sequence of token indices; got an "
                f"array of shape {arr.shape} and dtype {arr.dtype}. Use vocab[tokens] on the "
                "flattened tokens."
            )
        if int(batch_size) < 1 or int(num_steps) < 1:
            raise DataError(
                f"SequenceLoader: batch_size and num_steps must be >= 1; got {batch_size}, {num_steps}."
            )
        self.corpus = arr.astype(np.int64)
        self.batch_size, self.num_steps, self.random = int(batch_size), int(num_steps), bool(random)
        # The shortest corpus that gives one batch whatever the offset drawn.
        need = self.num_steps * (self.batch_size + 1) + (0 if self.random else 1)
        if len(self.corpus) < need:
            raise DataError(
                f"SequenceLoader: a corpus of {len(self.corpus)} tokens is too short for "
                f"batch_size={self.batch_size} and num_steps={self.num_steps} "
                f"({'random' if self.random else 'sequential'} partitioning needs at least "
                f"{need} tokens); lower batch_size or num_steps."
            )
        self._rng = None if seed is None else np.random.default_rng(int(seed))

    def _draw(self) -> list[tuple[np.ndarray, np.ndarray]]:
        rng = self._rng if self._rng is not None else generator()
        corpus, bs, T = self.corpus, self.batch_size, self.num_steps
        if self.random:
            corpus = corpus[int(rng.integers(0, T)):]  # Python's randint(0, T - 1)
            num_subseqs = (len(corpus) - 1) // T
            starts = np.arange(0, num_subseqs * T, T)[rng.permutation(num_subseqs)]
            out = []
            for i in range(0, bs * (num_subseqs // bs), bs):
                idx = starts[i: i + bs, None] + np.arange(T)
                out.append((corpus[idx], corpus[idx + 1]))
            return out
        offset = int(rng.integers(0, T + 1))  # Python's randint(0, T)
        num_tokens = ((len(corpus) - offset - 1) // bs) * bs
        Xs = corpus[offset: offset + num_tokens].reshape(bs, -1)
        Ys = corpus[offset + 1: offset + 1 + num_tokens].reshape(bs, -1)
        return [(Xs[:, i: i + T], Ys[:, i: i + T]) for i in range(0, T * (Xs.shape[1] // T), T)]

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        batches = self._draw()  # drawn now: the batches never depend on timing
        b = active()
        device = _device.resolve(None)
        for X, Y in batches:
            yield (b.from_numpy(np.ascontiguousarray(X), "int64", device),
                   b.from_numpy(np.ascontiguousarray(Y), "int64", device))


def bleu(pred_seq: str | Sequence[str], label_seq: str | Sequence[str], k: int) -> float:
    """The book's BLEU (§10.7): ``exp(min(0, 1 - len_label / len_pred)) * prod_n
    p_n^(1/2^n)`` for ``n = 1..k``, ``p_n`` the clipped precision of the n-grams.
    Sequences are strings of space-separated tokens (the book's) or lists of tokens.

    Examples
    --------
    >>> from d2lcompat import data
    >>> data.bleu("il a froid .", "il a froid .", k=2), round(data.bleu("il a .", "il a froid .", k=2), 3)
    (1.0, 0.603)
    """
    pred = pred_seq.split(" ") if isinstance(pred_seq, str) else [str(t) for t in pred_seq]
    label = label_seq.split(" ") if isinstance(label_seq, str) else [str(t) for t in label_seq]
    if int(k) < 1:
        raise DataError(f"bleu: k (the longest n-gram) must be >= 1, got {k}.")
    if not pred or not label:
        raise DataError("bleu: the predicted and the label sequences need at least one token each.")
    len_pred, len_label = len(pred), len(label)
    score = math.exp(min(0.0, 1 - len_label / len_pred))
    for n in range(1, min(int(k), len_pred) + 1):
        num_matches, label_subs = 0, collections.defaultdict[str, int](int)
        for i in range(len_label - n + 1):
            label_subs[" ".join(label[i: i + n])] += 1
        for i in range(len_pred - n + 1):
            gram = " ".join(pred[i: i + n])
            if label_subs[gram] > 0:
                num_matches += 1
                label_subs[gram] -= 1
        score *= math.pow(num_matches / (len_pred - n + 1), math.pow(0.5, n))
    return score


def time_machine(path: str | Path) -> list[str]:
    """The lines of H. G. Wells' *The Time Machine* from the user's own copy at ``path``
    (the book's ``timemachine.txt``), preprocessed as the book does: every run of
    non-letters becomes one space, lines are stripped and lower-cased. Nothing is
    downloaded.

    Examples
    --------
    >>> import tempfile, os
    >>> from d2lcompat import data
    >>> path = os.path.join(tempfile.mkdtemp(), "tm.txt")
    >>> _ = open(path, "w").write("The Time Machine, by H. G. Wells [1898]\\n\\nI\\n")
    >>> data.time_machine(path)
    ['the time machine by h g wells', '', 'i']
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"time_machine: no file at {str(p)!r}. d2lcompat downloads nothing: save the "
            "book's timemachine.txt (Project Gutenberg's text of The Time Machine) there "
            "and pass its path."
        )
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"time_machine: {str(p)!r} is not UTF-8 text ({exc}).") from None
    return [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in lines]
