"""HY — compilation (``hybridize``, §9 of the API)."""

from __future__ import annotations

import warnings

import d2lcompat
from d2lcompat import ops

from .._registry import Context, scenario
from ..models import MLP, FixedHiddenMLP, assert_close, mlp_sequential, to_np


@scenario("HY01", "hybridize() MLP gives the same output as eager")
def hy01(ctx: Context) -> None:
    d2lcompat.seed(61)
    for net in (mlp_sequential(), MLP()):
        net.initialize()
        X = ops.random.uniform((2, 20))
        X2 = ops.random.uniform((5, 20))
        eager, eager2 = to_np(net(X)), to_np(net(X2))
        assert net.hybridize() is net
        # The first call after hybridize() runs eagerly; the later ones run compiled.
        for _ in range(3):
            assert_close(net(X), eager, rtol=1e-5)
        assert_close(net(X2), eager2, rtol=1e-5)  # a new batch size (re-traced or not)
        # Parameters are inputs of the compiled function, not constants baked into it.
        first = next(iter(net.collect_params().values()))
        first.set_data(to_np(first.data()) * 2)
        hybrid = to_np(net(X))
        net.hybridize(False)
        assert_close(hybrid, net(X), rtol=1e-5)
        assert float(abs(hybrid - eager).max()) > 1e-6  # the new values were used


@scenario("HY02", "a net with value-dependent control flow still runs after hybridize(), same output")
def hy02(ctx: Context) -> None:
    d2lcompat.seed(62)
    net = FixedHiddenMLP()
    net.initialize()
    X = ops.random.uniform((2, 20))
    eager = to_np(net(X))
    net.hybridize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = [to_np(net(X)) for _ in range(3)]
    for out in outs:
        assert_close(out, eager, rtol=1e-5)
    ours = [w for w in caught if issubclass(w.category, d2lcompat.D2LCompatWarning)]
    # Traced (torch.compile graph breaks, AutoGraph, Paddle SOT): no warning; eager
    # fallback (jax.jit): exactly one, naming the block.
    assert len(ours) <= 1, [str(w.message) for w in ours]
    if ours:
        assert "FixedHiddenMLP" in str(ours[0].message), str(ours[0].message)
