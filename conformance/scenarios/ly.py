"""LY — layers (chapters 6–8; API.md §13). Values against NumPy (`..reference`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import ShapeError, autograd, init, nn, ops

from .. import reference as ref
from .._registry import Context, scenario
from ..models import Residual, assert_close, lenet, lenet_bn, to_np, vgg_block


def _x(shape: tuple[int, ...], seed: int) -> tuple[Any, np.ndarray]:
    host = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    return ops.tensor(host), host


def _raises_shape_error(fn: Any, *words: str) -> None:
    try:
        fn()
    except ShapeError as exc:
        msg = str(exc)
        for w in words:
            assert w in msg, f"{w!r} not in the message: {msg}"
        return
    raise AssertionError("expected a ShapeError")


def _conv_case(cls: type, x_shape: tuple[int, ...], seed: int, **kw: Any) -> None:
    X, host = _x(x_shape, seed)
    layer = cls(**kw)
    layer.initialize(init.Normal(0.5))
    layer.bias.set_data(np.linspace(-1, 1, kw["channels"]).astype(np.float32))
    y = layer(X)
    n = len(x_shape) - 2

    def tup(v: Any, default: int) -> tuple[int, ...]:
        v = kw.get(v, default)
        return (v,) * n if isinstance(v, int) else tuple(v)

    k, s, p, d = tup("kernel_size", 1), tup("strides", 1), tup("padding", 0), tup("dilation", 1)
    want_shape = (x_shape[0], kw["channels"]) + tuple(
        ref.out_size(x_shape[2 + i], k[i], s[i], p[i], d[i]) for i in range(n)
    )
    assert ops.shape(y) == want_shape, f"{kw}: shape {ops.shape(y)}, expected {want_shape}"
    want = ref.conv(host, to_np(layer.weight.data()), to_np(layer.bias.data()), s, p, d,
                    kw.get("groups", 1))
    assert_close(y, want, rtol=1e-5, atol=1e-5)


@scenario("LY01", "Conv2D(6, 5, padding=2) on (2, 1, 28, 28): shape, deferred weight, NumPy values")
def ly01(ctx: Context) -> None:
    d2lcompat.seed(71)
    conv = nn.Conv2D(6, kernel_size=5, padding=2)
    conv.initialize()
    assert conv.weight.shape == (6, 0, 5, 5), conv.weight.shape
    X, host = _x((2, 1, 28, 28), 1)
    y = conv(X)
    assert ops.shape(y) == (2, 6, 28, 28), ops.shape(y)
    assert conv.weight.shape == (6, 1, 5, 5) and conv.bias.shape == (6,)
    conv.bias.set_data(np.arange(6, dtype=np.float32) / 10)
    want = ref.conv(host, to_np(conv.weight.data()), to_np(conv.bias.data()), (1, 1), (2, 2))
    assert_close(conv(X), want, rtol=1e-5, atol=1e-5)


@scenario("LY02", "Conv2D strides, padding, dilation, groups: shapes by the formula, NumPy values; ShapeErrors")
def ly02(ctx: Context) -> None:
    d2lcompat.seed(72)
    cases: list[dict[str, Any]] = [
        {"channels": 4, "kernel_size": 3, "strides": 2},
        {"channels": 4, "kernel_size": (3, 2), "padding": (1, 0), "strides": (1, 2)},
        {"channels": 3, "kernel_size": 3, "dilation": 2, "padding": 2},
        {"channels": 6, "kernel_size": 3, "dilation": (2, 1), "strides": 2, "padding": 1},
        {"channels": 6, "kernel_size": 3, "groups": 2, "padding": 1},
        {"channels": 4, "kernel_size": 1, "groups": 4},  # depthwise
        {"channels": 2, "kernel_size": 5, "strides": 3, "padding": 2, "use_bias": True},
    ]
    for i, kw in enumerate(cases):
        _conv_case(nn.Conv2D, (2, 4, 9, 11), 10 + i, **kw)
    # Bad input: a clear ShapeError naming the layer, what it expected and what it got.
    conv = nn.Conv2D(4, kernel_size=3)
    conv.initialize()
    _raises_shape_error(lambda: conv(ops.ones((1, 8, 8))), "4-D", "(1, 8, 8)")
    _raises_shape_error(lambda: nn.Conv2D(4, kernel_size=5)(ops.ones((1, 1, 3, 3))),
                        "kernel", "larger than the padded input")
    _raises_shape_error(lambda: nn.Conv2D(4, kernel_size=5, padding=1)(ops.ones((1, 1, 2, 9))),
                        "2 + 2*1 = 4")
    _raises_shape_error(lambda: nn.Conv2D(5, kernel_size=1, groups=2), "groups=2")
    _raises_shape_error(lambda: nn.Conv2D(4, kernel_size=1, groups=2)(ops.ones((1, 3, 4, 4))),
                        "3 input channels", "groups=2")
    conv(ops.ones((1, 2, 5, 5)))  # infers 2 input channels
    _raises_shape_error(lambda: conv(ops.ones((1, 3, 5, 5))), "expects inputs with 2 channels")


@scenario("LY03", "Conv1D values equal NumPy's (strides, padding, dilation, groups)")
def ly03(ctx: Context) -> None:
    d2lcompat.seed(73)
    cases: list[dict[str, Any]] = [
        {"channels": 3, "kernel_size": 3},
        {"channels": 4, "kernel_size": 2, "strides": 2, "padding": 1},
        {"channels": 4, "kernel_size": 3, "dilation": 3, "groups": 2},
    ]
    for i, kw in enumerate(cases):
        _conv_case(nn.Conv1D, (3, 2, 13), 20 + i, **kw)
    _raises_shape_error(lambda: nn.Conv1D(2, 3)(ops.ones((1, 1, 4, 4))), "3-D", "(N, C, W)")


@scenario("LY04", "MaxPool/AvgPool 1D/2D with padding and strides equal NumPy's; global pools")
def ly04(ctx: Context) -> None:
    X, host = _x((2, 3, 7, 8), 4)
    cases: list[tuple[Any, str, tuple[int, ...], tuple[int, ...] | None, tuple[int, ...] | None]] = [
        (nn.MaxPool2D(2), "max", (2, 2), None, None),
        (nn.AvgPool2D(2), "avg", (2, 2), None, None),
        (nn.MaxPool2D(3, strides=2, padding=1), "max", (3, 3), (2, 2), (1, 1)),
        (nn.AvgPool2D(3, strides=2, padding=1), "avg", (3, 3), (2, 2), (1, 1)),
        (nn.AvgPool2D((2, 3), strides=(1, 2), padding=(1, 1)), "avg", (2, 3), (1, 2), (1, 1)),
        (nn.MaxPool2D((3, 2), strides=1), "max", (3, 2), (1, 1), (0, 0)),
    ]
    for layer, kind, w, s, p in cases:
        want = ref.pool(host, kind, w, s, p)
        got = layer(X)
        assert ops.shape(got) == want.shape, f"{layer!r}: {ops.shape(got)} vs {want.shape}"
        assert_close(got, want, rtol=1e-6, atol=1e-6)
    X1, host1 = _x((2, 3, 11), 5)
    for layer, kind, w, s, p in [
        (nn.MaxPool1D(3, strides=2, padding=1), "max", (3,), (2,), (1,)),
        (nn.AvgPool1D(3, strides=2, padding=1), "avg", (3,), (2,), (1,)),
        (nn.AvgPool1D(2), "avg", (2,), None, None),
    ]:
        assert_close(layer(X1), ref.pool(host1, kind, w, s, p), rtol=1e-6, atol=1e-6)
    g = nn.GlobalAvgPool2D()(X)
    assert ops.shape(g) == (2, 3, 1, 1)
    assert_close(g, host.mean(axis=(2, 3), keepdims=True), rtol=1e-5, atol=1e-6)
    assert_close(nn.GlobalMaxPool2D()(X), host.max(axis=(2, 3), keepdims=True))
    _raises_shape_error(lambda: nn.MaxPool2D(2)(ops.ones((2, 4, 4))), "4-D")
    _raises_shape_error(lambda: nn.MaxPool2D(5)(ops.ones((1, 1, 3, 3))), "pool size 5")
    _raises_shape_error(lambda: nn.MaxPool2D(2, padding=2), "at most half")


@scenario("LY05", "BatchNorm: training normalizes and updates running stats; predict uses them; saved")
def ly05(ctx: Context) -> None:
    d2lcompat.seed(75)
    X, host = _x((8, 3, 4, 5), 7)
    host = host * np.array([1.0, 3.0, 0.5], np.float32)[None, :, None, None] + 2.0
    X = ops.tensor(host)
    bn = nn.BatchNorm(momentum=0.9)
    bn.initialize()
    with autograd.record():
        y = to_np(bn(X))
    m = y.mean(axis=(0, 2, 3))
    v = y.var(axis=(0, 2, 3))
    assert np.abs(m).max() < 1e-4 and np.abs(v - 1).max() < 1e-3, (m, v)
    bmean, bvar = ref.batch_stats(host)
    rm, rv = 0.1 * bmean, 0.9 + 0.1 * bvar
    assert_close(bn.running_mean.data(), rm, rtol=1e-5, atol=1e-6)
    assert_close(bn.running_var.data(), rv, rtol=1e-5, atol=1e-6)
    assert bn.running_mean.grad_req == "null" and bn.running_var.grad_req == "null"
    assert list(bn.collect_params()) == ["gamma", "beta", "running_mean", "running_var"]
    # Inside autograd.grad the update is collected and applied once, after the gradient.
    bn.gamma.set_data(np.array([1.0, 2.0, 0.5], np.float32))
    with autograd.record():
        _, grads = autograd.grad(lambda: ops.sum(bn(X) * X), bn.collect_params())
    assert "running_mean" not in grads and set(grads) == {"gamma", "beta"}
    rm, rv = 0.9 * rm + 0.1 * bmean, 0.9 * rv + 0.1 * bvar
    assert_close(bn.running_mean.data(), rm, rtol=1e-5, atol=1e-6)
    assert_close(bn.running_var.data(), rv, rtol=1e-5, atol=1e-6)
    # d/dbeta sum(y * x) = sum of x per channel
    assert_close(grads["beta"], host.sum(axis=(0, 2, 3)), rtol=1e-4, atol=1e-3)
    # Predict mode (the default outside record()): the running statistics.
    gamma = to_np(bn.gamma.data())
    want = ref.batch_norm(host, gamma, np.zeros(3), rm, rv)
    assert_close(bn(X), want, rtol=1e-5, atol=1e-5)
    assert_close(bn.running_mean.data(), rm, rtol=1e-5, atol=1e-6)  # unchanged by predict
    # A (N, C) input after a Dense layer: statistics over the batch axis.
    bn2 = nn.BatchNorm()
    bn2.initialize()
    h2 = np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32)
    with autograd.train_mode():
        y2 = to_np(bn2(ops.tensor(h2)))
    mean2, var2 = ref.batch_stats(h2)
    assert_close(y2, ref.batch_norm(h2, np.ones(4), np.zeros(4), mean2, var2), rtol=1e-4, atol=1e-5)
    # Saved and restored with the parameters.
    path = Path(ctx.tmp) / "bn.safetensors"
    bn.save_parameters(path)
    clone = nn.BatchNorm()
    clone.load_parameters(path)
    assert_close(clone.running_mean.data(), rm, rtol=1e-5, atol=1e-6)
    assert_close(clone.running_var.data(), rv, rtol=1e-5, atol=1e-6)
    assert_close(clone(X), bn(X), rtol=1e-6, atol=1e-6)


@scenario("LY06", "LayerNorm and Embedding values (and Embedding gradients) equal NumPy's")
def ly06(ctx: Context) -> None:
    d2lcompat.seed(76)
    X, host = _x((3, 4, 6), 8)
    ln = nn.LayerNorm()
    ln.initialize()
    ln(X)
    gamma = np.linspace(0.5, 1.5, 6).astype(np.float32)
    beta = np.linspace(-1, 1, 6).astype(np.float32)
    ln.gamma.set_data(gamma)
    ln.beta.set_data(beta)
    assert_close(ln(X), ref.layer_norm(host, gamma, beta), rtol=1e-5, atol=1e-5)
    ln1 = nn.LayerNorm(axis=1)
    ln1.initialize()
    assert_close(ln1(X), ref.layer_norm(host, np.ones(4), np.zeros(4), axis=1), rtol=1e-5,
                 atol=1e-5)
    emb = nn.Embedding(10, 4)
    emb.initialize(init.Normal(1.0))
    idx = np.array([[1, 2, 2], [9, 0, 1]], np.int64)
    y = emb(ops.tensor(idx))
    assert ops.shape(y) == (2, 3, 4)
    weight = to_np(emb.weight.data())
    assert_close(y, ref.embedding(weight, idx))
    # A repeated index accumulates its gradient: d sum(emb(idx)) / dW[i] = count(i).
    _, g = autograd.grad(lambda: ops.sum(emb(ops.tensor(idx))), emb.collect_params())
    counts = np.bincount(idx.ravel(), minlength=10).astype(np.float32)
    assert_close(g["weight"], np.repeat(counts[:, None], 4, axis=1))


@scenario("LY07", "LeNet, a VGG block and a ResNet residual block: deferred shapes, the book's per-layer shapes")
def ly07(ctx: Context) -> None:
    d2lcompat.seed(77)
    net = lenet()
    net.initialize(init.Xavier())
    X = ops.random.uniform((1, 1, 28, 28))
    shapes = []
    for layer in net:
        X = layer(X)
        shapes.append((type(layer).__name__, ops.shape(X)))
    assert shapes == [  # §7.6, "Conv2D output shape: (1, 6, 28, 28)" ...
        ("Conv2D", (1, 6, 28, 28)),
        ("AvgPool2D", (1, 6, 14, 14)),
        ("Conv2D", (1, 16, 10, 10)),
        ("AvgPool2D", (1, 16, 5, 5)),
        ("Flatten", (1, 400)),
        ("Dense", (1, 120)),
        ("Dense", (1, 84)),
        ("Dense", (1, 10)),
    ], shapes
    assert net[2].weight.shape == (16, 6, 5, 5) and net[5].weight.shape == (120, 400)
    text = repr(net)
    assert "Conv2D(1 -> 6" in text and "AvgPool2D" in text, text
    bn = lenet_bn()
    bn.initialize()
    assert ops.shape(bn(ops.random.uniform((2, 1, 28, 28)))) == (2, 10)
    names = list(bn.collect_params())
    assert names[:6] == ["0.weight", "0.bias", "1.gamma", "1.beta", "1.running_mean",
                         "1.running_var"], names
    assert bn[9].weight.shape == (120, 256)  # 16 * 4 * 4 without padding (§8.5)
    blk = vgg_block(2, 8)
    blk.initialize()
    assert ops.shape(blk(ops.random.uniform((1, 3, 16, 16)))) == (1, 8, 8, 8)
    assert blk[1].weight.shape == (8, 8, 3, 3)
    res = Residual(3)
    res.initialize()
    assert ops.shape(res(ops.random.uniform((4, 3, 6, 6)))) == (4, 3, 6, 6)  # §8.6
    res2 = Residual(6, use_1x1conv=True, strides=2)
    res2.initialize()
    assert ops.shape(res2(ops.random.uniform((4, 3, 6, 6)))) == (4, 6, 3, 3)
    assert res2.conv3 is not None and res2.conv3.weight.shape == (6, 3, 1, 1)


@scenario("LY08", "every LY layer gives the same output after hybridize()")
def ly08(ctx: Context) -> None:
    d2lcompat.seed(78)
    img, _ = _x((2, 4, 9, 9), 11)
    seq, _ = _x((2, 4, 10), 12)
    bn = nn.BatchNorm()
    layers: list[tuple[nn.Block, Any]] = [
        (nn.Conv2D(6, 3, strides=2, padding=1, dilation=1, groups=2, activation="relu"), img),
        (nn.Conv1D(4, 3, padding=1, dilation=2), seq),
        (nn.MaxPool2D(3, strides=2, padding=1), img),
        (nn.AvgPool2D(2), img),
        (nn.MaxPool1D(2), seq),
        (nn.AvgPool1D(3, strides=1, padding=1), seq),
        (nn.GlobalAvgPool2D(), img),
        (nn.GlobalMaxPool2D(), img),
        (bn, img),
        (nn.LayerNorm(), seq),
        (nn.Embedding(20, 3), ops.tensor(np.array([[1, 5], [19, 0]], np.int64))),
        (lenet_bn(pad=2), ops.random.uniform((3, 1, 8, 8))),
        (Residual(4, use_1x1conv=True, strides=2), img),
    ]
    for layer, x in layers:
        layer.initialize(init.Xavier())
        with autograd.record():  # moves the running statistics of every BatchNorm
            layer(x)
        eager = to_np(layer(x))
        layer.hybridize()
        for _ in range(3):
            assert_close(layer(x), eager, rtol=1e-5, atol=1e-5)
        layer.hybridize(False)
    assert float(np.abs(to_np(bn.running_mean.data())).max()) > 0  # predict used moved stats
