"""The chapter 6–8 layers (nn.Conv*, pooling, BatchNorm, LayerNorm, Embedding) on this
process's backend: shapes, errors, deferred init, hybridize, save/load, gradients.
Values against NumPy live in the LY conformance scenarios; these test the mechanics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import D2LCompatError, ShapeError, autograd, init, nn, ops
from d2lcompat_conformance import reference as ref
from d2lcompat_conformance.models import Residual, lenet_bn, vgg_block


def _np(x: Any) -> np.ndarray:
    return ops.to_numpy(x)


def _img(*shape: int, seed: int = 0) -> Any:
    return ops.tensor(np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32))


# ------------------------------------------------------------------------ shapes


@pytest.mark.parametrize(
    ("kw", "x_shape", "out_shape"),
    [
        ({"channels": 6, "kernel_size": 5, "padding": 2}, (2, 1, 28, 28), (2, 6, 28, 28)),
        ({"channels": 4, "kernel_size": 3, "strides": 2}, (1, 3, 9, 9), (1, 4, 4, 4)),
        ({"channels": 4, "kernel_size": 3, "dilation": 2}, (1, 3, 9, 9), (1, 4, 5, 5)),
        ({"channels": 4, "kernel_size": (1, 3), "padding": (0, 1)}, (1, 2, 5, 6), (1, 4, 5, 6)),
        ({"channels": 8, "kernel_size": 3, "groups": 4, "padding": 1}, (1, 4, 6, 6), (1, 8, 6, 6)),
    ],
)
def test_conv2d_shapes_and_weight_layout(
    kw: dict[str, Any], x_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> None:
    conv = nn.Conv2D(**kw)
    conv.initialize()
    k = kw["kernel_size"]
    k = (k, k) if isinstance(k, int) else k
    assert conv.weight.shape == (kw["channels"], 0, *k)
    assert ops.shape(conv(_img(*x_shape))) == out_shape
    assert conv.weight.shape == (kw["channels"], x_shape[1] // kw.get("groups", 1), *k)
    assert conv.bias is not None and conv.bias.shape == (kw["channels"],)


def test_conv_in_channels_given_needs_no_forward() -> None:
    conv = nn.Conv2D(4, 3, in_channels=2, use_bias=False)
    conv.initialize()
    assert conv.weight.shape == (4, 2, 3, 3) and conv.bias is None
    assert list(conv.collect_params()) == ["weight"]
    assert _np(conv.weight.data()).shape == (4, 2, 3, 3)


def test_conv1d_and_pool1d_shapes() -> None:
    x = _img(2, 3, 10)
    conv = nn.Conv1D(5, 3, padding=1, activation="relu")
    conv.initialize()
    y = conv(x)
    assert ops.shape(y) == (2, 5, 10) and float(_np(y).min()) >= 0.0
    assert ops.shape(nn.MaxPool1D(2)(y)) == (2, 5, 5)
    assert ops.shape(nn.AvgPool1D(3, strides=1, padding=1)(y)) == (2, 5, 10)


def test_pool_defaults_strides_to_pool_size() -> None:
    x = _img(1, 2, 6, 6)
    assert ops.shape(nn.MaxPool2D()(x)) == (1, 2, 3, 3)
    assert ops.shape(nn.AvgPool2D(3)(x)) == (1, 2, 2, 2)
    assert ops.shape(nn.MaxPool2D(3, strides=1)(x)) == (1, 2, 4, 4)
    assert ops.shape(nn.GlobalAvgPool2D()(x)) == (1, 2, 1, 1)


def test_avg_pool_counts_padding() -> None:
    x = ops.ones((1, 1, 3, 3))
    y = _np(nn.AvgPool2D(3, strides=1, padding=1)(x))[0, 0]
    assert y[0, 0] == pytest.approx(4 / 9) and y[1, 1] == pytest.approx(1.0)
    m = _np(nn.MaxPool2D(3, strides=1, padding=1)(-ops.ones((1, 1, 3, 3))))
    assert (m == -1).all()  # -inf padding never wins


# ------------------------------------------------------------------------ errors


def test_conv2d_errors_name_the_layer_and_the_fix() -> None:
    net = nn.Sequential(nn.Conv2D(4, 3))
    net.initialize()
    with pytest.raises(ShapeError, match=r"Conv2D '0' expects a 4-D input \(N, C, H, W\)"):
        net(ops.ones((1, 8, 8)))
    with pytest.raises(ShapeError, match="larger than the padded input"):
        nn.Conv2D(2, kernel_size=3, dilation=2)(ops.ones((1, 1, 4, 4)))
    with pytest.raises(ShapeError, match="not divisible by groups=3"):
        nn.Conv2D(4, 1, groups=3)
    with pytest.raises(ShapeError, match="not divisible by groups=2"):
        nn.Conv2D(4, 1, groups=2, in_channels=3)
    net(ops.ones((1, 2, 5, 5)))
    with pytest.raises(ShapeError, match="expects inputs with 2 channels.*received shape"):
        net(ops.ones((1, 5, 5, 5)))
    with pytest.raises(D2LCompatError, match="kernel_size must be an int or a tuple of 2"):
        nn.Conv2D(4, (3, 3, 3))
    with pytest.raises(D2LCompatError, match="strides must be >= 1"):
        nn.Conv2D(4, 3, strides=0)


def test_pool_and_norm_errors() -> None:
    with pytest.raises(ShapeError, match="at most half"):
        nn.AvgPool2D(2, padding=2)
    with pytest.raises(ShapeError, match="pool size 4 along W"):
        nn.MaxPool2D((1, 4))(ops.ones((1, 1, 4, 3)))
    bn = nn.BatchNorm()
    bn.initialize()
    bn(ops.ones((2, 3, 4, 4)))
    with pytest.raises(ShapeError, match="expects 3 channels along axis 1"):
        bn(ops.ones((2, 4, 4, 4)))
    with pytest.raises(ShapeError, match="normalizes over axis 1"):
        nn.BatchNorm()(ops.ones((3,)))
    with pytest.raises(D2LCompatError, match="momentum"):
        nn.BatchNorm(momentum=1.5)
    with pytest.raises(D2LCompatError, match="input_dim"):
        nn.Embedding(0, 3)


# ------------------------------------------------------------- deferred / repr


def test_deferred_parameters_raise_until_the_first_call() -> None:
    net = nn.Sequential(nn.Conv2D(3, 3), nn.BatchNorm(), nn.LayerNorm())
    net.initialize()
    with pytest.raises(d2lcompat.DeferredInitializationError, match="0.weight"):
        net[0].weight.data()
    with pytest.raises(d2lcompat.DeferredInitializationError, match="1.running_mean"):
        net[1].running_mean.data()
    net(_img(2, 4, 5, 5))
    assert net[0].weight.shape == (3, 4, 3, 3)
    assert net[1].running_var.shape == (3,) and (_np(net[1].running_var.data()) == 1).all()
    assert net[2].gamma.shape == (3,)
    text = repr(net)
    assert "Conv2D(4 -> 3, kernel_size=(3, 3)" in text and "BatchNorm(axis=1" in text


def test_never_initialized_net_initializes_itself() -> None:
    net = nn.Sequential(nn.Conv2D(2, 3, padding=1), nn.MaxPool2D(), nn.Flatten(), nn.Dense(3))
    assert ops.shape(net(_img(2, 1, 4, 4))) == (2, 3)


# ----------------------------------------------------------------- BatchNorm


def test_batchnorm_modes_and_running_statistics() -> None:
    x = _img(6, 2, 3, 3, seed=3) * 2 + 1
    host = _np(x)
    bn = nn.BatchNorm(momentum=0.8, epsilon=1e-3)
    bn.initialize()
    y = bn(x)  # predict mode: running stats 0 / 1
    np.testing.assert_allclose(_np(y), host / np.sqrt(1 + 1e-3), rtol=1e-5)
    with autograd.train_mode():
        bn(x)
    mean, var = ref.batch_stats(host)
    np.testing.assert_allclose(_np(bn.running_mean.data()), 0.2 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(bn.running_var.data()), 0.8 + 0.2 * var, rtol=1e-5)
    before = _np(bn.running_mean.data()).copy()
    bn(x)
    bn(x)
    np.testing.assert_array_equal(_np(bn.running_mean.data()), before)


def test_batchnorm_trains_and_its_statistics_are_not_trainable() -> None:
    d2lcompat.seed(3)
    net = lenet_bn(pad=2)
    net.initialize(init.Xavier())
    X = ops.random.uniform((8, 1, 8, 8))
    params = net.collect_params()
    with autograd.record():
        loss, grads = autograd.grad(lambda: ops.mean(ops.square(net(X))), params)
    assert not any(k.endswith(("running_mean", "running_var")) for k in grads)
    assert {"1.gamma", "1.beta", "0.weight"} <= set(grads)
    assert float(np.abs(_np(params["1.running_mean"].data())).max()) > 0
    d2lcompat.optim.SGD(params, lr=0.01).step(grads)
    with autograd.record():
        loss2, _ = autograd.grad(lambda: ops.mean(ops.square(net(X))), params)
    assert float(ops.item(loss2)) < float(ops.item(loss))


# -------------------------------------------------------------- hybridize, IO


def test_hybridized_cnn_matches_eager_after_training_steps() -> None:
    d2lcompat.seed(4)
    net = nn.Sequential(vgg_block(1, 4), Residual(4), nn.GlobalAvgPool2D(), nn.Flatten(),
                        nn.Dense(3))
    net.initialize(init.Xavier())
    X = ops.random.uniform((2, 3, 8, 8))
    with autograd.record():
        net(X)
    eager = _np(net(X))
    net.hybridize()
    for _ in range(2):
        np.testing.assert_allclose(_np(net(X)), eager, rtol=1e-5, atol=1e-5)
    with autograd.record():  # training mode runs eagerly and still moves the statistics
        net(X)
    assert not np.allclose(_np(net(X)), eager, atol=1e-7)


def test_save_load_round_trip_with_names(tmp_path: Path) -> None:
    d2lcompat.seed(5)
    net = lenet_bn(pad=2)
    net.initialize(init.Xavier())
    X = ops.random.uniform((4, 1, 8, 8))
    with autograd.record():
        net(X)
    path = tmp_path / "lenet.safetensors"
    net.save_parameters(path)
    stored = d2lcompat.load(path)
    assert "1.running_mean" in stored and "0.weight" in stored and "13.gamma" in stored
    assert ops.shape(stored["0.weight"]) == (6, 1, 5, 5)
    clone = lenet_bn(pad=2)
    clone.load_parameters(path)  # deferred: shapes come from the file
    np.testing.assert_array_equal(_np(clone(X)), _np(net(X)))
    for k, p in clone.collect_params().items():
        np.testing.assert_array_equal(_np(p.data()), _np(stored[k]), err_msg=k)


def test_embedding_float_indices_and_shapes() -> None:
    emb = nn.Embedding(5, 2)
    emb.initialize(init.Constant(0.0))
    emb.weight.set_data(np.arange(10, dtype=np.float32).reshape(5, 2))
    out = _np(emb(ops.tensor([[4.0, 0.0]])))
    assert out.tolist() == [[[8.0, 9.0], [0.0, 1.0]]]
    assert ops.shape(emb(ops.tensor([1, 2, 3]))) == (3, 2)


def test_layer_norm_matches_reference() -> None:
    x = _img(2, 3, 4, seed=9)
    ln = nn.LayerNorm(epsilon=1e-3)
    ln.initialize()
    np.testing.assert_allclose(
        _np(ln(x)), ref.layer_norm(_np(x), np.ones(4), np.zeros(4), eps=1e-3), rtol=1e-5,
        atol=1e-6,
    )


def test_compiled_train_step_with_batchnorm_equals_eager() -> None:
    """A hybridized LeNet with BatchNorm trains in one compiled step (jax.jit,
    tf.function, ...) to the same parameters and running statistics as the eager loop."""
    from d2lcompat import loss

    host = np.random.default_rng(6).uniform(size=(16, 1, 8, 8)).astype(np.float32)
    X, y = ops.tensor(host), ops.tensor(np.arange(16) % 10)
    finals = []
    for hybrid in (False, True):
        d2lcompat.seed(6)
        net = lenet_bn(pad=2)
        net.initialize(init.Xavier())
        net(X)
        if hybrid:
            net.hybridize()
        trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5})
        step = d2lcompat.train_step(net, loss.SoftmaxCrossEntropyLoss(), trainer)
        losses = [float(ops.item(step(X, y))) for _ in range(3)]
        finals.append((losses, {k: _np(p.data()) for k, p in net.collect_params().items()}))
    (l_eager, p_eager), (l_comp, p_comp) = finals
    np.testing.assert_allclose(l_comp, l_eager, rtol=1e-5)
    assert l_eager[-1] < l_eager[0]
    for k, v in p_eager.items():
        np.testing.assert_allclose(p_comp[k], v, rtol=1e-4, atol=1e-5, err_msg=k)
    assert np.abs(p_eager["1.running_mean"]).max() > 0


@pytest.mark.parametrize("flatten", [True, False])
def test_dense_with_a_large_weight_equals_numpy(flatten: bool) -> None:
    # 600 x 256 weight entries: above the size from which an adapter may pick another
    # GEMM form (TensorFlow: BatchMatMulV2 with adj_y); forward (2-D and 3-D input,
    # eager and hybridized) and the gradients in Gluon's (out, in) layout.
    rng = np.random.default_rng(3)
    w = rng.normal(size=(600, 256)).astype(np.float32) / 16
    b = rng.normal(size=(600,)).astype(np.float32)
    x = rng.normal(size=(5, 256)).astype(np.float32)
    x3 = rng.normal(size=(2, 3, 256)).astype(np.float32)
    layer = nn.Dense(600, in_units=256, flatten=flatten)
    layer.initialize()
    layer.weight.set_data(ops.tensor(w))
    layer.bias.set_data(ops.tensor(b))
    np.testing.assert_allclose(_np(layer(ops.tensor(x))), x @ w.T + b, rtol=1e-4, atol=1e-4)
    if not flatten:
        np.testing.assert_allclose(_np(layer(ops.tensor(x3))), x3 @ w.T + b, rtol=1e-4, atol=1e-4)
    g = rng.normal(size=(5, 600)).astype(np.float32)
    params = layer.collect_params()
    with autograd.record():
        _, grads = autograd.grad(lambda: ops.sum(layer(ops.tensor(x)) * ops.tensor(g)), params)
    np.testing.assert_allclose(_np(grads["weight"]), g.T @ x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_np(grads["bias"]), g.sum(0), rtol=1e-4, atol=1e-4)
    layer.hybridize()
    for _ in range(2):
        np.testing.assert_allclose(_np(layer(ops.tensor(x))), x @ w.T + b, rtol=1e-4, atol=1e-4)
    layer.weight.set_data(ops.tensor(2 * w))  # a write after compiling is seen
    np.testing.assert_allclose(_np(layer(ops.tensor(x))), 2 * x @ w.T + b, rtol=1e-4, atol=1e-4)
