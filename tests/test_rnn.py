"""Recurrent layers and clip_global_norm beyond the RN scenarios: compiled forwards,
misuse messages, repr."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import d2lcompat
from d2lcompat import D2LCompatError, ShapeError, nn, ops
from d2lcompat._registry import active


@pytest.mark.parametrize("layout", ["TNC", "NTC"])
def test_hybridized_layer_equals_eager(layout: str) -> None:
    d2lcompat.seed(3)
    layer = nn.LSTM(5, num_layers=2, bidirectional=True, layout=layout, input_size=3)
    layer.initialize()
    X = ops.random.uniform((4, 2, 3))
    eager = ops.to_numpy(layer(X))
    states = layer.begin_state(4 if layout == "NTC" else 2)
    out_eager, new_eager = layer(X, states)
    layer.hybridize()
    # Where the compiler cannot trace the framework's fused rnn op (Paddle's SOT), the
    # compiled calls warn (CompileFallbackWarning, naming the layer) with the same numbers.
    compiles = active().COMPILES_RNN
    expect = contextlib.nullcontext() if compiles else pytest.warns(
        d2lcompat.CompileFallbackWarning, match="LSTM"
    )
    with expect:
        for _ in range(2):  # the first call after hybridize() runs eagerly, the next compiled
            np.testing.assert_allclose(ops.to_numpy(layer(X)), eager, rtol=1e-5, atol=1e-6)
            out, new = layer(X, states)
            np.testing.assert_allclose(ops.to_numpy(out), ops.to_numpy(out_eager), rtol=1e-5,
                                       atol=1e-6)
            for a, b in zip(new, new_eager):
                np.testing.assert_allclose(ops.to_numpy(a), ops.to_numpy(b), rtol=1e-5, atol=1e-6)


def test_one_state_tensor_is_accepted_for_gru() -> None:
    gru = nn.GRU(4, input_size=2)
    gru.initialize()
    X = ops.ones((3, 2, 2))
    out, new = gru(X, gru.begin_state(2)[0])
    assert ops.shape(out) == (3, 2, 4) and len(new) == 1


def test_bad_arguments_say_what_to_do() -> None:
    with pytest.raises(D2LCompatError, match="hidden_size"):
        nn.LSTM(0)
    with pytest.raises(D2LCompatError, match="num_layers"):
        nn.GRU(4, num_layers=0)
    with pytest.raises(D2LCompatError, match="batch_size"):
        nn.LSTM(4).begin_state(0)
    cell = nn.GRUCell(4, input_size=2)
    cell.initialize()
    with pytest.raises(ShapeError, match="one time step"):
        cell(ops.ones((3, 2, 2)), cell.begin_state(2))
    with pytest.raises(D2LCompatError, match="valid_length"):
        cell.unroll(3, ops.ones((2, 3, 2)), valid_length=ops.ones((2,)))


def test_clip_global_norm_misuse() -> None:
    p = d2lcompat.Parameter((2,), init="ones")
    p.initialize()
    with pytest.raises(D2LCompatError, match="not a mix"):
        d2lcompat.clip_global_norm([p, ops.ones((2,))], 1.0)
    with pytest.raises(D2LCompatError, match="no parameter has a gradient"):
        d2lcompat.clip_global_norm([p], 1.0)
    with pytest.raises(D2LCompatError, match="empty"):
        d2lcompat.clip_global_norm([], 1.0)
    with pytest.raises(D2LCompatError, match="not a tensor"):
        d2lcompat.clip_global_norm({"a": [1.0, 2.0]}, 1.0)
    with pytest.raises(D2LCompatError, match="max_norm"):
        d2lcompat.clip_global_norm([ops.ones((2,))], float("inf"))


def test_repr_names_the_configuration() -> None:
    text = repr(nn.LSTM(8, num_layers=2, dropout=0.1, bidirectional=True, input_size=3))
    assert text == "LSTM(3 -> 8, TNC, num_layers=2, dropout=0.1, bidirectional)", text
    assert repr(nn.GRUCell(4)) == "GRUCell(None -> 4)"


def test_hybridized_layer_gradients_equal_eager() -> None:
    # The compiled forward (on Paddle: the fused rnn op recorded into SOT's graph) is
    # differentiated like the eager one.
    from d2lcompat import autograd

    d2lcompat.seed(4)
    layer = nn.LSTM(6, num_layers=2, bidirectional=True, input_size=3)
    layer.initialize()
    X = ops.random.uniform((5, 2, 3))
    params = layer.collect_params()
    _, eager = autograd.grad(lambda: ops.sum(layer(X) * layer(X)), params)
    eager = {k: ops.to_numpy(g) for k, g in eager.items()}
    layer.hybridize()
    for _ in range(2):  # the first call after hybridize() runs eagerly, the next compiled
        _, grads = autograd.grad(lambda: ops.sum(layer(X) * layer(X)), params)
        for k, g in grads.items():
            np.testing.assert_allclose(ops.to_numpy(g), eager[k], rtol=1e-5, atol=1e-6,
                                       err_msg=k)


def _loop_scan(fn, carry, xs, reverse):  # type: ignore[no-untyped-def]
    # A plain Python loop: the contract of `scan_layers`'s ``scan`` on any backend.
    steps = range(xs.shape[0] - 1, -1, -1) if reverse else range(xs.shape[0])
    outs = {}
    for t in steps:
        carry = fn(carry, xs[t])
        outs[t] = carry[0]
    return carry, ops.stack([outs[t] for t in sorted(outs)], axis=0)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
def test_scan_with_the_projection_hoisted_or_in_the_loop_equals_the_layer(mode: str) -> None:
    # `scan_layers` computes the same equations whichever way the adapter asks for the
    # input projection (JAX: in the loop for a forward, per size when differentiated).
    from d2lcompat.nn._rnn import scan_layers

    d2lcompat.seed(5)
    kind = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": lambda *a, **k: nn.RNN(*a, activation="tanh", **k)}
    layer = kind[mode](4, num_layers=2, bidirectional=True, input_size=3)
    layer.initialize()
    X = ops.random.uniform((5, 2, 3), -1.0, 1.0)
    states = [ops.random.uniform(s["shape"], -1.0, 1.0) for s in layer.state_info(2)]
    want_out, want_states = layer(X, states)
    weights = layer._weights()
    sizes: list[tuple[int, ...]] = []

    def by_layer(t: int, n: int, c: int, h: int) -> bool:
        sizes.append((t, n, c, h))
        return c == 3  # the first layer hoisted, the second not
    for hoist in (True, False, by_layer):
        out, new = scan_layers(mode, X, states, weights, 2, True, _loop_scan, hoist)
        np.testing.assert_allclose(ops.to_numpy(out), ops.to_numpy(want_out), rtol=1e-5, atol=1e-6)
        for a, b in zip(new, want_states):
            np.testing.assert_allclose(ops.to_numpy(a), ops.to_numpy(b), rtol=1e-5, atol=1e-6)
    assert sizes == [(5, 2, 3, 4)] * 2 + [(5, 2, 8, 4)] * 2  # asked per layer and direction
    # An adapter's `Remat` wraps only an LSTM layer that projects inside the loop, and
    # ``mark`` sees that layer's pre-activation gates (N, 4H) at every step; the values
    # are unchanged.
    wrapped: list[int] = []
    marked: list[tuple[int, ...]] = []

    def mark(z):  # type: ignore[no-untyped-def]
        marked.append(tuple(z.shape))
        return z

    def wrap(body):  # type: ignore[no-untyped-def]
        wrapped.append(1)
        return body

    sizes.clear()
    out, new = scan_layers(mode, X, states, weights, 2, True, _loop_scan, by_layer, (mark, wrap))
    np.testing.assert_allclose(ops.to_numpy(out), ops.to_numpy(want_out), rtol=1e-5, atol=1e-6)
    for a, b in zip(new, want_states):
        np.testing.assert_allclose(ops.to_numpy(a), ops.to_numpy(b), rtol=1e-5, atol=1e-6)
    if mode == "lstm":  # the second layer (not hoisted), both directions, 5 steps each
        assert wrapped == [1, 1] and marked == [(2, 16)] * 10
    else:
        assert wrapped == [] and marked == []
