"""IN — initialization (§5.2)."""

from __future__ import annotations

import warnings

import numpy as np

import d2lcompat
from d2lcompat import init, nn, ops

from .._registry import Context, scenario
from ..models import to_np


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Dense(256, activation="relu", in_units=256), nn.Dense(1, in_units=256))


@scenario("IN01", "Normal(0.01) with force_reinit: weight std within 20% of 0.01, biases 0")
def in01(ctx: Context) -> None:
    d2lcompat.seed(21)
    net = _net()
    net.initialize()
    net.initialize(init.Normal(sigma=0.01), force_reinit=True)
    w = to_np(net[0].weight.data())
    assert w.shape == (256, 256)
    assert abs(w.std() - 0.01) < 0.002, w.std()
    assert abs(w.mean()) < 0.001
    for b in (net[0].bias, net[1].bias):
        np.testing.assert_array_equal(to_np(b.data()), 0)


@scenario("IN02", "Constant(1): every weight 1, biases 0")
def in02(ctx: Context) -> None:
    net = _net()
    net.initialize(init.Constant(1), force_reinit=True)
    for name, p in net.collect_params().items():
        want = 0.0 if name.endswith("bias") else 1.0
        np.testing.assert_array_equal(to_np(p.data()), np.full(p.shape, want, np.float32))


@scenario("IN03", "per-part init: net[0].weight Xavier, net[1] Constant(42)")
def in03(ctx: Context) -> None:
    d2lcompat.seed(23)
    net = nn.Sequential(nn.Dense(8, activation="relu", in_units=4), nn.Dense(1, in_units=8))
    net.initialize()
    net[0].weight.initialize(init=init.Xavier(), force_reinit=True)
    net[1].initialize(init=init.Constant(42), force_reinit=True)
    w0 = to_np(net[0].weight.data())
    bound = np.sqrt(6.0 / (4 + 8))
    assert np.abs(w0).max() <= bound and np.abs(w0).max() > bound * 0.5
    np.testing.assert_array_equal(to_np(net[1].weight.data()), np.full((1, 8), 42, np.float32))
    np.testing.assert_array_equal(to_np(net[1].bias.data()), np.zeros(1, np.float32))


class MyInit(init.Initializer):
    """§5.2: U(5, 10) with probability 1/4, 0 with 1/2, U(-10, -5) with 1/4."""

    def _init_weight(self, name: str, arr: np.ndarray) -> None:
        arr[:] = d2lcompat.ops.to_numpy(d2lcompat.ops.random.uniform(arr.shape, -10, 10)).astype(arr.dtype)
        arr *= np.abs(arr) >= 5


@scenario("IN04", "custom Initializer: every value is 0 or has |v| >= 5")
def in04(ctx: Context) -> None:
    d2lcompat.seed(24)
    net = _net()
    net.initialize(MyInit())
    net(ops.ones((1, 256)))
    w = to_np(net[0].weight.data())
    assert np.all((w == 0) | (np.abs(w) >= 5))
    assert 0.35 < (w == 0).mean() < 0.65 and (w > 0).any() and (w < 0).any()
    # a plain callable (name, shape, dtype) -> array works too
    net[1].weight.initialize(lambda name, shape, dtype: np.full(shape, 3.0), force_reinit=True)
    np.testing.assert_array_equal(to_np(net[1].weight.data()), np.full((1, 256), 3.0, np.float32))


@scenario("IN05", "apply(fn) initializing only Dense blocks")
def in05(ctx: Context) -> None:
    seen: list[str] = []

    def init_dense(block: nn.Block) -> None:
        seen.append(type(block).__name__)
        if isinstance(block, nn.Dense):
            block.weight.initialize(init.Constant(7.0), force_reinit=True)

    net = nn.Sequential(nn.Dense(3, in_units=2), nn.Activation("relu"), nn.Dense(1, in_units=3))
    net.initialize(init.Zero())
    assert net.apply(init_dense) is net
    assert seen == ["Dense", "Activation", "Dense", "Sequential"]
    for i in (0, 2):
        np.testing.assert_array_equal(to_np(net[i].weight.data()), 7.0)
        np.testing.assert_array_equal(to_np(net[i].bias.data()), 0.0)


@scenario("IN06", "initializing twice without force_reinit warns and keeps the values")
def in06(ctx: Context) -> None:
    d2lcompat.seed(26)
    net = _net()
    net.initialize()
    before = {k: to_np(p.data()).copy() for k, p in net.collect_params().items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.initialize(init.Constant(5))
    msgs = [str(w.message) for w in caught if issubclass(w.category, d2lcompat.D2LCompatWarning)]
    assert len(msgs) == 1 and "force_reinit" in msgs[0], msgs
    for k, p in net.collect_params().items():
        np.testing.assert_array_equal(to_np(p.data()), before[k])


def seeded_net() -> nn.Sequential:
    """seed(42), build the chapter's MLP, run it once on ones((2, 20)): the model of IN07 and XB02."""
    d2lcompat.seed(42)
    net = nn.Sequential(nn.Dense(256, activation="relu"), nn.Dense(10))
    net.initialize(init.Xavier())
    net(ops.ones((2, 20)))
    return net


def seeded_parameters() -> dict[str, np.ndarray]:
    """The parameters of `seeded_net`: every backend must produce these very bytes."""
    return {k: to_np(p.data()) for k, p in seeded_net().collect_params().items()}


#: SHA-256 of the float32 bytes of seeded_parameters(), in name order. Independent of the
#: backend by construction: a backend that differs has broken the seed contract (API §6).
SEEDED_DIGEST_FILE = "seeded_parameters.sha256"


def seeded_digest() -> str:
    import hashlib

    h = hashlib.sha256()
    for name, arr in seeded_parameters().items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
    return h.hexdigest()


@scenario("IN07", "seed(42): identical parameters in two builds, and the same bytes as NumPy's draw")
def in07(ctx: Context) -> None:
    a, b = seeded_parameters(), seeded_parameters()
    assert list(a) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # the reference, computed with NumPy alone: the same generator, the same draw order
    rng = np.random.default_rng(42)
    bound0 = np.sqrt(6.0 / (20 + 256))
    w0 = rng.uniform(-bound0, bound0, (256, 20)).astype(np.float32)
    bound1 = np.sqrt(6.0 / (256 + 10))
    w1 = rng.uniform(-bound1, bound1, (10, 256)).astype(np.float32)
    np.testing.assert_array_equal(a["0.weight"], w0)
    np.testing.assert_array_equal(a["1.weight"], w1)
    np.testing.assert_array_equal(a["0.bias"], np.zeros(256, np.float32))
    # cross-backend: when the runner provides other backends' digests, they must match
    if ctx.shared is not None:
        for path in sorted(ctx.shared.glob(f"*.{SEEDED_DIGEST_FILE}")):
            assert path.read_text().strip() == seeded_digest(), f"{path.name} differs"
