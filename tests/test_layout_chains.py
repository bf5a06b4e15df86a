"""Layout chains (`d2lcompat.nn._layout`): a run of conv / pool / BatchNorm / activation
children of a `Sequential` that the adapter keeps in its preferred layout.

Only a channels-last backend (TensorFlow) plans chains by itself; every test here also
switches them on and off by hand (`_layers._CHAINS`), so that the chained path — on
the other backends through the default NHWC primitives of `Backend` — is checked
against the per-layer path on all four backends: the same values, forward and
gradients, the same BatchNorm statistics and the same errors, with every child still
seeing NCHW where the user can look."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import ShapeError, autograd, init, nn, ops
from d2lcompat._registry import active
from d2lcompat.nn import _layers, _layout
from d2lcompat.nn._layout import Chain


def _np(x: Any) -> np.ndarray:
    return ops.to_numpy(x)


def _img(*shape: int, seed: int = 0) -> Any:
    return ops.tensor(np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32))


@pytest.fixture
def chains(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Chains planned on this backend too (the default NHWC primitives of `Backend`)."""
    monkeypatch.setattr(_layers, "_CHAINS", True)
    yield


def _net() -> nn.Sequential:
    # LeNet with BatchNorm, a separate activation and a nested plain Sequential.
    return nn.Sequential(
        nn.Conv2D(6, kernel_size=5, padding=2, activation="sigmoid"),
        nn.AvgPool2D(2, 2),
        nn.Sequential(nn.Conv2D(8, kernel_size=3), nn.BatchNorm(), nn.Activation("relu")),
        nn.MaxPool2D(3, strides=2, padding=1),
        nn.Flatten(),
        nn.Dense(12, activation="relu"),
        nn.Dense(3),
    )


def _pair() -> tuple[nn.Sequential, nn.Sequential, Any]:
    """Two copies of `_net` with the same values, and an input; both ready."""
    d2lcompat.seed(0)
    a, b = _net(), _net()
    a.initialize(init.Xavier())
    b.initialize(init.Xavier())
    x = _img(4, 1, 12, 12)
    a(x)
    b(x)
    for p, q in zip(a.collect_params().values(), b.collect_params().values()):
        q.set_data(p.data())
    return a, b, x


def _run(net: nn.Sequential, x: Any, chained: bool) -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One training-mode forward and backward: loss, gradients, BatchNorm statistics."""
    old = _layers._CHAINS
    _layers._CHAINS = chained
    try:
        params = {k: p for k, p in net.collect_params().items() if p.grad_req != "null"}
        with autograd.record():
            loss, grads = autograd.grad(lambda: ops.mean(ops.square(net(x))), list(params.values()))
        out = _np(net(x))  # predict mode, the statistics just written
    finally:
        _layers._CHAINS = old
    stats = {k: _np(p.data()) for k, p in net.collect_params().items() if p.grad_req == "null"}
    grads = dict(zip(params, grads)) if not isinstance(grads, dict) else grads
    return (float(ops.item(loss)), out), {k: _np(g) for k, g in grads.items()}, stats


def test_only_a_channels_last_backend_plans_chains_by_itself() -> None:
    assert _layers._CHAINS is active().LAYOUT_CHAINS
    assert active().LAYOUT_CHAINS is (d2lcompat.backend() == "tensorflow")


def test_the_plan_chains_the_conv_run_once_per_structure(chains: None) -> None:
    net, _, x = _pair()
    steps = _layout.plan(net)
    assert steps is not None
    chain = steps[0]
    assert isinstance(chain, Chain)
    inner = net[2]
    assert chain.layers == (net[0], net[1], inner[0], inner[1], inner[2], net[3])
    assert steps[1:] == (net[4], net[5], net[6])
    assert net._plan == (net._version, steps)  # cached: forward reads it, plans no more
    before = net._plan
    net(x)
    assert net._plan is before


def test_a_plan_waits_for_deferred_parameters(chains: None) -> None:
    net = _net()
    net.initialize()
    assert _layout.plan(net) is None  # nothing is ready: per layer, not cached
    assert net._plan[0] == -1
    net(_img(2, 1, 12, 12))  # the first call runs per layer and creates the parameters
    net(_img(2, 1, 12, 12))
    assert net._plan[0] == net._version and isinstance(net._plan[1][0], Chain)


def test_what_stays_out_of_a_chain(chains: None) -> None:
    class MyConv(nn.Conv2D):  # a subclass may override forward: never chained
        pass

    net = nn.Sequential(
        nn.BatchNorm(),  # before any conv or pool: runs on its own, in NCHW
        nn.Conv2D(4, 3, padding=1, activation="softmax"),  # not elementwise
        nn.Conv2D(4, 3, padding=1),
        nn.Activation("relu"),
        MyConv(4, 3, padding=1),
        nn.MaxPool2D(2),
        nn.BatchNorm(axis=2),  # not the channel axis
        nn.Sequential(nn.Activation("relu"), nn.Conv2D(4, 1)),  # starts with an activation
        nn.AvgPool2D(1),  # a run of one
    )
    net.initialize()
    x = _img(2, 3, 6, 6)
    net(x)
    steps = net._plan[1] if net._plan[0] == net._version else _layout.plan(net)
    kinds = [s.layers if isinstance(s, Chain) else s for s in steps]
    assert kinds == [net[0], net[1], (net[2], net[3]), net[4], net[5], net[6], net[7], net[8]]


def test_chained_equals_per_layer_forward_gradients_and_statistics(chains: None) -> None:
    a, b, x = _pair()
    assert isinstance(_layout.plan(a)[0], Chain)
    (loss_a, out_a), grads_a, stats_a = _run(a, x, chained=True)
    (loss_b, out_b), grads_b, stats_b = _run(b, x, chained=False)
    assert set(grads_a) == set(grads_b) and len(grads_a) == 10
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
    np.testing.assert_allclose(out_a, out_b, rtol=1e-5, atol=1e-6)
    # BatchNorm sums over (N, H, W) in the other memory order: float32 rounding only
    # (the conv bias before it has a gradient of 0 up to that rounding).
    scale = max(float(np.abs(g).max()) for g in grads_b.values())
    assert scale > 1e-3
    for k in grads_a:
        np.testing.assert_allclose(grads_a[k], grads_b[k], rtol=1e-4, atol=1e-4 * scale, err_msg=k)
    assert set(stats_a) == {"2.1.running_mean", "2.1.running_var"}
    for k in stats_a:
        assert np.abs(stats_a[k]).max() > 0
        np.testing.assert_allclose(stats_a[k], stats_b[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_hybridized_chained_equals_eager_per_layer(chains: None) -> None:
    a, b, x = _pair()
    _layers._CHAINS = False
    eager = _np(b(x))
    _layers._CHAINS = True
    a.hybridize()
    for _ in range(3):
        np.testing.assert_allclose(_np(a(x)), eager, rtol=1e-5, atol=1e-6)


def test_a_replaced_forward_sees_nchw_and_leaves_the_chain(chains: None) -> None:
    net, _, x = _pair()
    expected = _np(net(x))
    conv = net[2][0]
    seen: list[tuple[int, ...]] = []
    eager = conv.forward

    def spy(inp: Any) -> Any:
        seen.append(tuple(ops.shape(inp)))
        out = eager(inp)
        seen.append(tuple(ops.shape(out)))
        return out

    version = net._version
    conv.forward = spy
    assert net._version != version  # a new structure: planned again
    np.testing.assert_allclose(_np(net(x)), expected, rtol=1e-6, atol=1e-6)
    assert seen == [(4, 6, 6, 6), (4, 8, 4, 4)]  # NCHW in and out
    chains_now = [s.layers for s in net._plan[1] if isinstance(s, Chain)]
    assert chains_now == [(net[0], net[1])]  # net[2] runs whole, its conv observed
    del conv.forward
    net(x)
    assert [s.layers for s in net._plan[1] if isinstance(s, Chain)][0][2] is conv


def test_a_hybridized_child_leaves_the_chain(chains: None) -> None:
    net, _, x = _pair()
    expected = _np(net(x))
    version = net._version
    net[2].hybridize()
    assert net._version != version
    for _ in range(2):
        np.testing.assert_allclose(_np(net(x)), expected, rtol=1e-5, atol=1e-6)
    assert [s.layers for s in net._plan[1] if isinstance(s, Chain)] == [(net[0], net[1])]
    assert net[2] in net._plan[1]


def test_children_called_on_their_own_stay_nchw(chains: None) -> None:
    net, _, x = _pair()
    out = x
    for layer in net:  # the book's way of printing each layer's output shape
        out = layer(out)
        if layer is net[3]:
            assert tuple(ops.shape(out)) == (4, 8, 2, 2)
    np.testing.assert_allclose(_np(out), _np(net(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chained", [False, True])
def test_errors_inside_a_chain_are_the_per_layer_ones(chained: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_layers, "_CHAINS", chained)
    net = nn.Sequential(nn.Conv2D(2, 3), nn.MaxPool2D(4), nn.Flatten())
    net.initialize()
    net(_img(1, 1, 8, 8))
    net(_img(1, 1, 8, 8))
    assert (net._plan[1] is not None) is chained
    with pytest.raises(ShapeError) as small:
        net(_img(1, 1, 5, 5))  # the pool's window is larger than the conv's 3x3 result
    assert "MaxPool2D '1'" in str(small.value) and "(1, 2, 3, 3)" in str(small.value)
    with pytest.raises(ShapeError) as channels:
        net(_img(1, 3, 8, 8))
    assert "expects inputs with 1 channels" in str(channels.value)
    assert "(1, 3, 8, 8)" in str(channels.value)
    with pytest.raises(ShapeError) as rank:
        net(_img(3, 8, 8))
    assert "4-D input" in str(rank.value) and "(3, 8, 8)" in str(rank.value)
