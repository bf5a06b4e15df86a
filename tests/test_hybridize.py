"""`Block.hybridize`: the compiled forward, on this process's backend.

Tests of the mechanism (fallback, training mode, parameters as inputs) swap the
backend's ``compile`` for a stand-in, so they are exact and fast on every backend;
the others use the framework's real compiler. No timing assertions: speed lives in
``benchmarks/``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import autograd, nn, ops
from d2lcompat._registry import active


def _np(x: Any) -> np.ndarray:
    return ops.to_numpy(x)


class _Traced(Exception):
    """Stands for a compiler's "this Python control flow needs a concrete value"."""


class FakeCompiler:
    """A stand-in for ``Backend.compile``: records calls, optionally raises `_Traced`."""

    def __init__(self) -> None:
        self.compiled = 0
        self.calls: list[list[Any]] = []
        self.fail = False

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.compiled += 1

        def run(values: list[Any], *args: Any) -> Any:
            self.calls.append(values)
            if self.fail:
                raise _Traced("bool() of a traced value")
            return fn(values, *args)

        return run


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCompiler]:
    compiler = FakeCompiler()
    b = active()
    monkeypatch.setattr(b, "compile", compiler)
    monkeypatch.setattr(b, "COMPILE_FALLBACK_ERRORS", (_Traced,))
    yield compiler


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Dense(16, activation="relu"), nn.Dense(4))


def test_not_hybridized_blocks_have_no_instance_forward() -> None:
    net = _mlp()
    assert "forward" not in net.__dict__
    assert net.hybridize() is net and "forward" in net.__dict__
    assert net.hybridize(False) is net and "forward" not in net.__dict__
    assert all("forward" not in child.__dict__ for child in net)  # only the root compiles


def test_first_call_is_eager_then_compiled_with_parameters_as_inputs(fake: FakeCompiler) -> None:
    d2lcompat.seed(0)
    net = _mlp().hybridize()  # deferred: in_units unknown until the first call
    net.initialize()
    X = ops.random.uniform((3, 5))
    first = _np(net(X))  # eager: creates the parameters
    assert fake.compiled == 1 and fake.calls == []
    assert net[0].weight.shape == (16, 5)
    np.testing.assert_allclose(_np(net(X)), first, rtol=1e-6)
    params = list(net.collect_params().values())
    assert len(fake.calls) == 1
    assert [id(v) for v in fake.calls[0]] == [id(p.native()) for p in params]


def test_compiled_result_follows_new_parameter_values(fake: FakeCompiler) -> None:
    net = _mlp().hybridize()
    net.initialize(d2lcompat.init.One())
    X = ops.ones((2, 5))
    net(X)
    net[1].bias.set_data(np.full((4,), 3.0, np.float32))
    hybrid = _np(net(X))
    net.hybridize(False)
    np.testing.assert_allclose(hybrid, _np(net(X)), rtol=1e-6)
    assert fake.compiled == 1  # no re-compilation for new values


def test_training_mode_runs_eagerly(fake: FakeCompiler) -> None:
    net = nn.Sequential(nn.Dense(8, in_units=3), nn.Dropout(0.5)).hybridize()
    net.initialize()
    X = ops.ones((4, 3))
    net(X)
    with autograd.record():
        net(X)
    assert fake.calls == []
    net(X)
    assert len(fake.calls) == 1


def test_value_dependent_control_flow_falls_back_once_naming_the_block(
    fake: FakeCompiler,
) -> None:
    net = _mlp().hybridize()
    net.initialize()
    X = ops.ones((2, 5))
    eager = _np(net(X))
    fake.fail = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = [_np(net(X)) for _ in range(3)]
    ours = [w for w in caught if issubclass(w.category, d2lcompat.D2LCompatWarning)]
    assert len(ours) == 1
    assert "Sequential" in str(ours[0].message) and "eagerly" in str(ours[0].message)
    assert ours[0].filename == __file__  # points at the caller's line
    assert len(fake.calls) == 1  # eager from then on: the compiled function is not tried again
    for out in outs:
        np.testing.assert_allclose(out, eager, rtol=1e-6)
    net.hybridize(False)
    assert "forward" not in net.__dict__


def test_a_genuine_error_raises_without_warning_and_keeps_compiling(fake: FakeCompiler) -> None:
    net = nn.Sequential(nn.Dense(4, in_units=5)).hybridize()
    net.initialize()
    net(ops.ones((2, 5)))
    fake.fail = True  # the compiled call fails, and so does the eager re-run
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(d2lcompat.ShapeError, match="expects inputs with 5 features"):
            net(ops.ones((2, 7)))
    fake.fail = False
    net(ops.ones((2, 5)))
    assert len(fake.calls) == 2 and "forward" in net.__dict__


def test_unsupported_backend_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(active(), "SUPPORTS_COMPILE", False)
    with pytest.raises(d2lcompat.UnsupportedError, match="does not support compilation"):
        _mlp().hybridize()


# ------------------------------------------------------------ the real compiler
class Branchy(nn.Block):
    """Python control flow on a value: traced by some compilers, not by others."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Dense(4, in_units=3)

    def forward(self, x: Any) -> Any:
        y = self.dense(x)
        if ops.sum(y) > 0:
            return y * 2
        return -y


def test_real_compiler_equals_eager_with_deferred_init_and_new_shapes() -> None:
    d2lcompat.seed(1)
    net = _mlp()
    net.hybridize()
    X, X2 = ops.random.uniform((2, 5)), ops.random.uniform((7, 5))
    outs = [_np(net(X)) for _ in range(3)] + [_np(net(X2))]
    net.hybridize(False)
    for out in outs[:3]:
        np.testing.assert_allclose(out, _np(net(X)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[3], _np(net(X2)), rtol=1e-5, atol=1e-6)


def test_real_compiler_gradients_equal_eager() -> None:
    d2lcompat.seed(2)
    net = _mlp()
    net.initialize()
    X = ops.random.uniform((3, 5))
    params = net.collect_params()
    _, eager = autograd.grad(lambda: ops.sum(net(X)), params)
    eager_np = {k: _np(v) for k, v in eager.items()}
    net.hybridize()
    net(X)
    _, hybrid = autograd.grad(lambda: ops.sum(net(X)), params)
    for k, v in hybrid.items():
        np.testing.assert_allclose(_np(v), eager_np[k], rtol=1e-5, atol=1e-6)


def test_real_compiler_value_dependent_branch_gives_eager_results() -> None:
    d2lcompat.seed(3)
    net = Branchy()
    net.initialize()
    Xp, Xn = ops.ones((2, 3)), -ops.ones((2, 3))
    want = [_np(net(Xp)), _np(net(Xn))]
    net.hybridize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [[_np(net(Xp)), _np(net(Xn))] for _ in range(2)]
    for pair in got:
        for g, w in zip(pair, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    ours = [w for w in caught if issubclass(w.category, d2lcompat.D2LCompatWarning)]
    assert len(ours) <= 1 and all("Branchy" in str(w.message) for w in ours)
