"""DV — devices (§5.6; docs/api.md §8).

Written against the public API only and without backend names: what a scenario
needs (a second device) it reads from the devices the backend reports, and it
raises `Unsupported` with the reason when they are not there. The scenarios hold
under any default device (``D2LCOMPAT_DEVICE=cpu:1`` or ``gpu:0``): that is the
second axis the catalogue runs on.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import Device, DeviceError, cpu, gpu, nn, ops
from d2lcompat._registry import active as _active  # the adapter's capability flags

from .._registry import Context, Unsupported, scenario
from ..models import FixedHiddenMLP, mlp_sequential, to_np


def _devices() -> list[Device]:
    """Every device of the backend in use, as `d2lcompat.backends()` lists them."""
    (info,) = [b for b in d2lcompat.backends() if b.active]
    return [Device.parse(d) for d in info.devices or []]


def _two_devices() -> tuple[Device, Device]:
    """The default device and another one, or `Unsupported` saying why there is none."""
    here = d2lcompat.default_device()
    others = [d for d in _devices() if d != here]
    if others:
        return here, others[-1]
    asked = os.environ.get("D2LCOMPAT_CPU_DEVICES", "").strip()
    name = d2lcompat.backend()
    if not _active().SUPPORTS_CPU_DEVICES:  # advise the variable only where it helps
        why = (
            f"the {name} backend has a single CPU device (the framework cannot split its "
            "CPU, so D2LCOMPAT_CPU_DEVICES does not help); it needs a GPU"
        )
        if asked and asked != "1":
            why = f"D2LCOMPAT_CPU_DEVICES={asked} was set but " + why
    else:
        why = (
            "the process has only one device; set D2LCOMPAT_CPU_DEVICES=2 to give the "
            f"{name} backend two CPU devices"
        )
    raise Unsupported(f"needs two devices and found only {here!r} and no GPU: {why}")


def _other_or_default() -> Device:
    """A device other than the default when there is one (the interesting case), else it."""
    here = d2lcompat.default_device()
    others = [d for d in _devices() if d != here]
    return others[-1] if others else here


def _assert_names_both(exc: BaseException, a: Device, b: Device) -> None:
    msg = str(exc)
    assert repr(a) in msg and repr(b) in msg, f"the message must name {a!r} and {b!r}: {msg}"


@scenario("DV01", "cpu(), gpu(), gpu(1) construct; num_gpus() is an int >= 0")
def dv01(ctx: Context) -> None:
    c, g, g1 = cpu(), gpu(), gpu(1)  # constructing never fails, even without a GPU
    assert (c.kind, c.index, g.kind, g.index, g1.kind, g1.index) == (
        "cpu",
        0,
        "gpu",
        0,
        "gpu",
        1,
    )
    assert (repr(c), repr(g), repr(g1)) == ("cpu(0)", "gpu(0)", "gpu(1)")
    assert c == cpu(0) and g == gpu(0) and g != g1 and c != g
    assert len({cpu(), cpu(0), gpu(), gpu(0), gpu(1)}) == 3  # hashable, by value
    assert Device.parse("cuda:1") == g1 and Device.parse("gpu(1)") == g1
    n = d2lcompat.num_gpus()
    assert isinstance(n, int) and not isinstance(n, bool) and n >= 0
    assert sum(d.kind == "gpu" for d in _devices()) == n
    assert cpu() in _devices()


@scenario("DV02", "try_gpu(), try_gpu(10) (cpu when absent), try_all_gpus() is a list")
def dv02(ctx: Context) -> None:
    n = d2lcompat.num_gpus()
    assert d2lcompat.try_gpu() == (gpu(0) if n >= 1 else cpu())
    assert d2lcompat.try_gpu(10) == (gpu(10) if n >= 11 else cpu())
    all_gpus = d2lcompat.try_all_gpus()
    assert isinstance(all_gpus, list)
    assert all_gpus == ([gpu(i) for i in range(n)] if n else [cpu()])
    assert all(isinstance(d, Device) for d in all_gpus)


@scenario("DV03", "a tensor created with device=try_gpu() reports that device")
def dv03(ctx: Context) -> None:
    d = d2lcompat.try_gpu()
    made = {
        "ones": ops.ones((2, 3), device=d),
        "zeros": ops.zeros((2, 3), dtype="float64", device=d),
        "full": ops.full((2,), 7, device=d),
        "arange": ops.arange(4, device=d),
        "tensor": ops.tensor([[1.0, 2.0]], device=d),
        "uniform": ops.random.uniform((2, 2), device=d),
    }
    for name, x in made.items():
        assert d2lcompat.device_of(x) == d, (
            f"ops.{name}(device={d!r}) gave {d2lcompat.device_of(x)!r}"
        )
    np.testing.assert_array_equal(to_np(made["ones"]), np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(to_np(made["arange"]), np.arange(4))
    np.testing.assert_array_equal(to_np(made["full"]), [7, 7])
    # device=None: the default device (D2LCOMPAT_DEVICE when set), results stay there
    here = d2lcompat.default_device()
    x = ops.ones((2, 3))
    assert d2lcompat.device_of(x) == here
    assert d2lcompat.device_of(ops.add(x, x)) == here
    assert d2lcompat.device_of(ops.zeros_like(x)) == here
    # the same on the other device, when there is one: ops run where their inputs are
    other = _other_or_default()
    y = ops.full((2, 3), 2.0, device=other)
    z = ops.relu(ops.multiply(y, y))
    assert d2lcompat.device_of(z) == other and d2lcompat.device_of(ops.ones_like(y)) == other
    np.testing.assert_array_equal(to_np(z), np.full((2, 3), 4.0, np.float32))


@scenario(
    "DV04", "copy_to makes a new tensor on the target; to_device to the same device is identity"
)
def dv04(ctx: Context) -> None:
    x = ops.arange(6, dtype="float32")
    here = d2lcompat.device_of(x)
    assert d2lcompat.to_device(x, here) is x
    assert d2lcompat.to_device(x, repr(here)) is x  # any device spelling
    y = d2lcompat.copy_to(x, here)
    assert y is not x and d2lcompat.device_of(y) == here
    np.testing.assert_array_equal(to_np(y), to_np(x))
    other = _other_or_default()
    z = d2lcompat.copy_to(x, other)
    w = d2lcompat.to_device(x, other)
    for t in (z, w):
        assert d2lcompat.device_of(t) == other and ops.dtype(t) == "float32"
        np.testing.assert_array_equal(to_np(t), np.arange(6, dtype=np.float32))
    assert z is not x and d2lcompat.to_device(w, other) is w
    assert d2lcompat.device_of(x) == here  # the source did not move
    try:
        d2lcompat.to_device(x, gpu(d2lcompat.num_gpus()))  # one past the last GPU
    except DeviceError as exc:
        assert repr(gpu(d2lcompat.num_gpus())) in str(exc), str(exc)
    else:
        raise AssertionError("moving to a GPU that does not exist must raise DeviceError")


def _all_on(net: nn.Block, d: Device) -> None:
    for name, p in net.collect_params().items():
        assert p.list_devices() == [d], f"{name} is on {p.list_devices()}, expected [{d!r}]"
        assert d2lcompat.device_of(p.data(d)) == d


@scenario("DV05", "net.initialize(device=d) / net.to(d): every parameter and constant on d")
def dv05(ctx: Context) -> None:
    d2lcompat.seed(5)
    here, d = d2lcompat.default_device(), _other_or_default()
    net = nn.Sequential(nn.Dense(20, activation="relu"), FixedHiddenMLP())
    net.initialize(device=d)
    X = ops.random.uniform((2, 20), device=d)
    y = net(X)  # deferred parameters are created on d at the first call
    assert d2lcompat.device_of(y) == d
    _all_on(net, d)
    assert net.collect_params()["1.rand_weight"].grad_req == "null"  # the constant moved too
    # net.to: everything (constants included) to the default device, same numbers there
    assert net.to(here) is net
    _all_on(net, here)
    y_here = net(d2lcompat.to_device(X, here))
    assert d2lcompat.device_of(y_here) == here
    np.testing.assert_allclose(to_np(y_here), to_np(y), rtol=1e-6, atol=1e-6)
    # a Dense: output on d for input on d, equal to the host computation
    dense = nn.Dense(3, in_units=4)
    dense.initialize(d2lcompat.init.One(), device=d)
    out = dense(ops.ones((2, 4), device=d))
    assert d2lcompat.device_of(out) == d
    np.testing.assert_array_equal(to_np(out), np.full((2, 3), 4.0, np.float32))
    if d != here:
        try:
            dense.weight.data(here)
        except DeviceError as exc:
            _assert_names_both(exc, d, here)
        else:
            raise AssertionError(f"weight.data({here!r}) on a weight on {d!r} must raise")


@scenario("DV06", "an op mixing two devices raises DeviceError naming both")
def dv06(ctx: Context) -> None:
    a, b = _two_devices()
    x = ops.ones((2, 3), device=a)
    y = ops.ones((2, 3), device=b)
    mixes: dict[str, Any] = {
        "add": lambda: ops.add(x, y),
        "multiply": lambda: ops.multiply(y, x),
        "matmul": lambda: ops.matmul(x, ops.transpose(y)),
        "concat": lambda: ops.concat([x, y]),
        "maximum": lambda: ops.maximum(x, y),
    }
    for name, run in mixes.items():
        try:
            run()
        except DeviceError as exc:
            _assert_names_both(exc, a, b)
        else:
            raise AssertionError(f"ops.{name} on {a!r} and {b!r} must raise DeviceError")
    # a Dense whose parameters live on a, fed an input on b: names the block and both
    net = mlp_sequential()
    net.initialize(device=a)
    net(ops.ones((2, 20), device=a))
    try:
        net(ops.ones((2, 20), device=b))
    except DeviceError as exc:
        _assert_names_both(exc, a, b)
        assert "Dense '0'" in str(exc), str(exc)
    else:
        raise AssertionError(f"a net on {a!r} fed an input on {b!r} must raise DeviceError")
    # the fix the message suggests works, and gives the right numbers
    s = ops.add(d2lcompat.to_device(x, b), y)
    assert d2lcompat.device_of(s) == b
    np.testing.assert_array_equal(to_np(s), np.full((2, 3), 2.0, np.float32))
    out = net.to(b)(ops.ones((2, 20), device=b))
    assert d2lcompat.device_of(out) == b and ops.shape(out) == (2, 10)


@scenario("DV07", "load(path, device=d) / load_parameters(path, device=d) put tensors on d")
def dv07(ctx: Context) -> None:
    d2lcompat.seed(7)
    d = _other_or_default()
    x = ops.arange(4)
    y = ops.random.uniform((2, 3))
    path = ctx.tmp / "xy.safetensors"
    for obj in (x, [x, y], {"x": x, "y": y}):
        d2lcompat.save(path, obj)
        got = d2lcompat.load(path, device=d)
        items = got.values() if isinstance(got, dict) else got if isinstance(got, list) else [got]
        for t in items:
            assert d2lcompat.device_of(t) == d, (
                f"load(device={d!r}) gave {d2lcompat.device_of(t)!r}"
            )
    np.testing.assert_array_equal(to_np(d2lcompat.load(path, device=d)["y"]), to_np(y))
    assert d2lcompat.device_of(d2lcompat.load(path)["x"]) == d2lcompat.default_device()
    # parameters: a fresh (deferred) net loads onto d, constants included
    net = nn.Sequential(nn.Dense(20, activation="relu"), FixedHiddenMLP())
    X = ops.random.uniform((2, 20))
    expected = to_np(net(X))
    params = ctx.tmp / "net.safetensors"
    net.save_parameters(params)
    clone = nn.Sequential(nn.Dense(20, activation="relu"), FixedHiddenMLP())
    clone.load_parameters(params, device=d)
    _all_on(clone, d)
    got_y = clone(d2lcompat.to_device(X, d))
    assert d2lcompat.device_of(got_y) == d
    np.testing.assert_array_equal(to_np(got_y), expected)
