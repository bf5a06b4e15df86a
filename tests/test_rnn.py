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
