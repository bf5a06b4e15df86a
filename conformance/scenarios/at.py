"""AT — attention and the Transformer (chapter 11; API.md §19)."""

from __future__ import annotations

from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import ShapeError, autograd, data, nn, ops

from .. import reference_seq as ref
from .._registry import Context, scenario
from ..models import assert_close, to_np


def _rand(shape: tuple[int, ...], seed: int) -> tuple[Any, np.ndarray]:
    host = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return ops.tensor(host), host


def _shape_error(fn: Any, *words: str) -> None:
    try:
        fn()
    except ShapeError as exc:
        for w in words:
            assert w in str(exc), f"{w!r} not in the message: {exc}"
        return
    raise AssertionError("expected a ShapeError")


@scenario("AT01", "masked_softmax and sequence_mask equal NumPy for 1-D and 2-D valid_lens")
def at01(ctx: Context) -> None:
    X, host = _rand((2, 3, 5), 1)
    # sequence_mask: 2-D and 3-D inputs, value 0 and -1, int and float lengths.
    M, mhost = _rand((3, 4), 2)
    for lens in ([1, 4, 0], [2.0, 3.0, 1.0]):
        assert_close(ops.sequence_mask(M, ops.tensor(lens)), ref.sequence_mask(mhost, np.array(lens)))
    assert_close(ops.sequence_mask(X, ops.tensor([1, 2]), value=-1),
                 ref.sequence_mask(host, np.array([1, 2]), -1.0))
    ints = ops.tensor([[1, 2, 3], [4, 5, 6]])
    masked = ops.sequence_mask(ints, ops.tensor([1, 2]))
    assert ops.dtype(masked) == ops.dtype(ints) and to_np(masked).tolist() == [[1, 0, 0], [4, 5, 0]]
    assert to_np(ints).tolist() == [[1, 2, 3], [4, 5, 6]], "sequence_mask changed its input"
    # masked_softmax: None, (B,) and (B, Q) lengths, a length 0 (uniform, as the book).
    assert_close(ops.masked_softmax(X, None), ref.masked_softmax(host, None))
    for lens in (np.array([2, 3]), np.array([0, 5]), np.array([[1, 3, 2], [2, 4, 0]])):
        got = ops.masked_softmax(X, ops.tensor(lens))
        assert_close(got, ref.masked_softmax(host, lens), rtol=1e-5, atol=1e-6)
    zero = to_np(ops.masked_softmax(X, ops.tensor([0, 5])))[0]
    assert np.allclose(zero, 0.2), f"a fully masked row is uniform in the book, got {zero}"
    # Gradients flow through the unmasked scores only.
    W = d2lcompat.Parameter((2, 3, 5), init=d2lcompat.init.Constant(0.0))
    W.initialize()
    W.set_data(host)
    weights = ops.tensor(np.arange(30, dtype=np.float32).reshape(2, 3, 5))
    _, g = autograd.grad(lambda: ops.sum(ops.masked_softmax(W.data(), ops.tensor([2, 3])) * weights), [W])
    grad = to_np(next(iter(g.values())))
    assert np.all(grad[0, :, 2:] == 0) and np.all(grad[1, :, 3:] == 0), grad
    p = ref.masked_softmax(host, np.array([2, 3]))
    w = np.arange(30, dtype=np.float64).reshape(2, 3, 5)
    want = p * (w - (p * w).sum(-1, keepdims=True))
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-4)
    # Bad lengths: a ShapeError naming both shapes.
    _shape_error(lambda: ops.masked_softmax(X, ops.tensor([1, 2, 3])), "(3,)", "(2, 3, 5)")
    _shape_error(lambda: ops.sequence_mask(ops.ones((4,)), ops.tensor([1])), "(batch, steps")


@scenario("AT02", "MultiHeadAttention: shape, keys beyond valid_lens ignored, NumPy with its W_*; "
                  "DotProductAttention, AdditiveAttention equal NumPy")
def at02(ctx: Context) -> None:
    d2lcompat.seed(202)
    B, Q, K, d, h = 2, 4, 6, 16, 4
    attn = nn.MultiHeadAttention(d, h, 0.5)
    attn.initialize(d2lcompat.init.Xavier())
    X, xh = _rand((B, Q, 12), 3)
    Y, yh = _rand((B, K, 10), 4)
    lens = np.array([3, 6])
    out = attn(X, Y, Y, ops.tensor(lens))
    assert ops.shape(out) == (B, Q, d), ops.shape(out)
    assert list(attn.collect_params()) == ["W_q.weight", "W_k.weight", "W_v.weight", "W_o.weight"]
    W = {n: to_np(getattr(attn, n).weight.data()).astype(np.float64) for n in ("W_q", "W_k", "W_v", "W_o")}
    assert W["W_k"].shape == (d, 10) and W["W_q"].shape == (d, 12)
    assert_close(out, ref.multi_head_attention(xh, yh, yh, lens, W, h), rtol=1e-4, atol=1e-5)
    # Keys and values beyond valid_lens do not change the output.
    yh2 = yh.copy()
    yh2[0, 3:] = 100.0
    assert_close(attn(X, ops.tensor(yh2), ops.tensor(yh2), ops.tensor(lens)), out, rtol=1e-5, atol=1e-5)
    # Per-query lengths, no lengths, and a query with no valid key (uniform weights).
    for vl in (np.array([[1, 2, 3, 4], [6, 5, 0, 2]]), None):
        got = attn(X, Y, Y, None if vl is None else ops.tensor(vl))
        assert_close(got, ref.multi_head_attention(xh, yh, yh, vl, W, h), rtol=1e-4, atol=1e-5)
    weights = to_np(attn.attention.attention_weights)
    assert weights.shape == (B * h, Q, K), weights.shape
    # DotProductAttention (values of another width) and AdditiveAttention.
    dot = nn.DotProductAttention(0.5)
    q, qh = _rand((B, 1, 2), 5)
    k, kh = _rand((B, 10, 2), 6)
    v, vh = _rand((B, 10, 4), 7)
    vl = np.array([2, 6])
    want, want_w = ref.dot_product_attention(qh, kh, vh, vl)
    assert_close(dot(q, k, v, ops.tensor(vl)), want, rtol=1e-5, atol=1e-5)
    assert_close(dot.attention_weights, want_w, rtol=1e-5, atol=1e-6)
    add = nn.AdditiveAttention(8, 0.1)
    add.initialize(d2lcompat.init.Normal(0.5))
    got = add(q, k, v, ops.tensor(vl))
    Wa = {n: to_np(getattr(add, n).weight.data()).astype(np.float64) for n in ("W_q", "W_k", "w_v")}
    assert_close(got, ref.additive_attention(qh, kh, vh, vl, Wa["W_q"], Wa["W_k"], Wa["w_v"]),
                 rtol=1e-5, atol=1e-5)
    # Training mode: dropout on the weights keeps the shape, the mean weight is unbiased.
    with autograd.record():
        assert ops.shape(attn(X, Y, Y, ops.tensor(lens))) == (B, Q, d)
    _shape_error(lambda: dot(q, ops.ones((B, 10, 3)), v), "queries", "keys")


@scenario("AT03", "PositionalEncoding equals the sin/cos formula")
def at03(ctx: Context) -> None:
    for d in (32, 7):
        pe = nn.PositionalEncoding(d, 0.5, max_len=60)
        want = ref.positional_encoding(60, d)
        assert ops.shape(pe.P) == (1, 60, d)
        assert_close(pe.P, want[None], rtol=1e-5, atol=1e-6)
        X, host = _rand((2, 50, d), 8)
        assert_close(pe(X), host + want[None, :50], rtol=1e-5, atol=1e-5)  # predict mode: no dropout
        assert pe.collect_params() == {} or len(pe.collect_params()) == 0, "P is no parameter"
    _shape_error(lambda: nn.PositionalEncoding(8, 0.0, max_len=10)(ops.ones((1, 11, 8))), "max_len")


@scenario("AT04", "a Transformer encoder-decoder learns to reverse digit strings (>= 95 % token accuracy, "
                  "greedy decoding); data.bleu equals the book's formula")
def at04(ctx: Context) -> None:
    from .. import seq2seq

    T = 8
    vocab, X, y, _, _ = seq2seq.reverse_task(2000, T, seed=1, min_len=3, max_len=7)
    _, Xt, _, _, targets = seq2seq.reverse_task(200, T, seed=2, min_len=3, max_len=7)
    net = seq2seq.build(len(vocab), T, seed=3)
    curve = seq2seq.train(net, X, y, steps=400, batch_size=64, lr=0.003, seed=4, decay_from=200)
    assert curve[-20:].mean() < 0.2 * curve[0], curve[::30]
    pred = seq2seq.greedy_decode(net, vocab, Xt)
    acc = seq2seq.token_accuracy(pred, targets)
    assert acc >= 0.95, f"token accuracy {acc:.3f} < 0.95"
    scores = []
    for p, t in zip(pred, targets):
        got = data.bleu(" ".join(p) or "<empty>", " ".join(t), k=2)
        assert abs(got - ref.bleu(" ".join(p) or "<empty>", " ".join(t), 2)) < 1e-12
        scores.append(got)
    assert np.mean(scores) > 0.9, np.mean(scores)
    # BLEU on fixed cases: the book's formula (and its examples' extremes).
    for pred_s, label_s in (("a b c d", "a b c d"), ("a b", "a b c d"), ("a x c d e", "a b c d"), ("z", "a b")):
        assert abs(data.bleu(pred_s, label_s, 2) - ref.bleu(pred_s, label_s, 2)) < 1e-12
        assert abs(data.bleu(pred_s.split(), label_s.split(), 3) - ref.bleu(pred_s, label_s, 3)) < 1e-12
    assert data.bleu("a b c d", "a b c d", 4) == 1.0 and data.bleu("z", "a b", 2) == 0.0
