"""Attention (API.md §19): the adapter's fused kernel equals the core composition,
values and gradients, fully masked rows included; the Transformer blocks keep the
book's state handling; the docstring examples of the new modules run."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

import d2lcompat
from d2lcompat import autograd, nn, ops
from d2lcompat._registry import active
from d2lcompat.nn import _attention as A

RNG = np.random.default_rng(7)


def _param(host: np.ndarray) -> d2lcompat.Parameter:
    p = d2lcompat.Parameter(host.shape)
    p.initialize()
    p.set_data(host)
    return p


def _composed(q, k, v, valid_lens):  # noqa: ANN001, ANN202 - test helper
    keep = None if valid_lens is None else A._mask4(valid_lens, active(), (ops.shape(q)[0], ops.shape(q)[1], ops.shape(k)[1]), q, "t")
    return A._composed(q, k, v, keep, None)[0]


@pytest.mark.parametrize(
    "lens",
    [None, np.array([0, 3, 7]), np.array([[1, 0, 3, 7, 2], [7, 7, 6, 0, 1], [2, 2, 2, 2, 0]])],
    ids=["none", "per-batch", "per-query"],
)
def test_fused_attention_equals_the_composition_values_and_gradients(lens: np.ndarray | None) -> None:
    hosts = [RNG.normal(size=s).astype(np.float32) for s in ((3, 5, 2, 4), (3, 7, 2, 4), (3, 7, 2, 4))]
    params = [_param(h) for h in hosts]
    vl = None if lens is None else ops.tensor(lens)
    weights = ops.tensor(RNG.normal(size=(3, 5, 2, 4)).astype(np.float32))
    fused = active().attention(*[p.data() for p in params], None) is not None

    def loss(fn):  # noqa: ANN001, ANN202
        return lambda: ops.sum(fn(*[p.data() for p in params], vl) * weights)

    a, ga = autograd.grad(loss(A.attend), params)
    b, gb = autograd.grad(loss(_composed), params)
    np.testing.assert_allclose(ops.to_numpy(a), ops.to_numpy(b), rtol=1e-5, atol=1e-5)
    for key in ga:
        np.testing.assert_allclose(ops.to_numpy(ga[key]), ops.to_numpy(gb[key]), rtol=1e-4, atol=1e-5)
    if lens is not None and lens.ndim == 1:
        # Batch element 0 has no valid key: uniform weights, the mean of the values
        # (the book's -1e6), on the fused path (when there is one) and the composed one.
        out = ops.to_numpy(A.attend(*[p.data() for p in params], vl))
        want = np.broadcast_to(hosts[2][0].mean(0), out[0].shape)
        np.testing.assert_allclose(out[0], want, rtol=1e-5, atol=1e-5)
    assert fused or active().name == "tensorflow", "a backend lost its fused kernel"


def test_attention_dropout_is_seeded_and_uses_the_composition() -> None:
    attn = nn.DotProductAttention(0.5)
    q, k, v = (ops.tensor(RNG.normal(size=s).astype(np.float32)) for s in ((2, 3, 4), (2, 6, 4), (2, 6, 5)))
    outs = []
    for _ in range(2):
        d2lcompat.seed(3)
        with autograd.record():
            outs.append(ops.to_numpy(attn(q, k, v, ops.tensor([2, 6]))))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.allclose(outs[0], ops.to_numpy(attn(q, k, v, ops.tensor([2, 6]))))


def test_decoder_block_state_is_the_books() -> None:
    d2lcompat.seed(5)
    blk = nn.TransformerDecoderBlock(8, 16, 2, 0.0, 1)
    blk.initialize()
    enc = ops.tensor(RNG.normal(size=(2, 4, 8)).astype(np.float32))
    X = ops.tensor(RNG.normal(size=(2, 3, 8)).astype(np.float32))
    state = [enc, ops.tensor([2, 4]), [None, None]]
    with autograd.train_mode():
        full, _ = blk(X, state)
    assert state[2][0] is None and ops.shape(state[2][1]) == (2, 3, 8)
    # Predict mode, one step at a time with the cache: the same outputs as the masked
    # (causal) training pass, dropout being 0.
    state = [enc, ops.tensor([2, 4]), [None, None]]
    steps = []
    for t in range(3):
        y, state = blk(ops.tensor(ops.to_numpy(X)[:, t:t + 1]), state)
        steps.append(ops.to_numpy(y))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), ops.to_numpy(full), rtol=1e-4, atol=1e-5)
    assert ops.shape(state[2][1]) == (2, 3, 8)


def test_bad_arguments_raise_named_errors() -> None:
    with pytest.raises(d2lcompat.D2LCompatError, match="multiple of num_heads"):
        nn.MultiHeadAttention(10, 3)
    with pytest.raises(d2lcompat.D2LCompatError, match="call it first"):
        _ = nn.DotProductAttention().attention_weights
    mha = nn.MultiHeadAttention(8, 2)
    mha.initialize()
    with pytest.raises(d2lcompat.ShapeError, match="valid_lens"):
        mha(ops.ones((2, 3, 8)), ops.ones((2, 4, 8)), ops.ones((2, 4, 8)), ops.tensor([1, 2, 3]))


def test_dense_flatten_keyword() -> None:
    d = nn.Dense(3, flatten=False)
    d.initialize()
    assert ops.shape(d(ops.ones((2, 4, 5)))) == (2, 4, 3) and d.weight.shape == (3, 5)
    f = nn.Dense(3)
    f.initialize()
    assert ops.shape(f(ops.ones((2, 4, 5)))) == (2, 3) and f.weight.shape == (3, 20)


@pytest.mark.parametrize(
    "module", ["d2lcompat.ops._sequence", "d2lcompat.nn._attention", "d2lcompat.nn._transformer"]
)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
