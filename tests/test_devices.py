"""Unit tests of the Device value type and the device helpers (docs/api.md §8).

They run on this process's backend; the tests that need a second device use one when
the process has it (``D2LCOMPAT_CPU_DEVICES=2`` on jax/tensorflow, or a GPU) and
otherwise check what can be checked with one (tests/test_devices_multi.py re-runs the
DV scenarios with two CPU devices).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import Device, DeviceError, cpu, gpu, nn, ops
from d2lcompat._device import (
    _guarded,
    all_devices,
    block_input_device_error,
    devices_among,
    mixed_devices_error,
)

HERE = d2lcompat.default_device()
OTHERS = [d for d in all_devices() if d != HERE]
OTHER = OTHERS[-1] if OTHERS else None
needs_two = pytest.mark.skipif(OTHER is None, reason="needs a second device")


# ------------------------------------------------------------------ the value type
def test_equality_hashing_repr() -> None:
    assert cpu() == cpu(0) == Device("cpu") == Device("cpu", 0)
    assert gpu(1) == Device("gpu", 1) and gpu(1) != gpu(0) and cpu(0) != gpu(0)
    assert cpu() != "cpu(0)" and cpu() != ("cpu", 0)  # a Device equals Devices only
    assert len({cpu(), cpu(0), gpu(), gpu(0), gpu(1)}) == 3
    assert {gpu(1): "x"}[Device("gpu", 1)] == "x"
    assert (repr(cpu()), repr(gpu()), repr(gpu(3))) == ("cpu(0)", "gpu(0)", "gpu(3)")
    assert (gpu(2).kind, gpu(2).index) == ("gpu", 2)


def test_immutable_and_picklable() -> None:
    d = gpu(1)
    with pytest.raises(AttributeError):
        d.index = 2  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(d)) == d


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("gpu:1", gpu(1)),
        ("cuda:0", gpu(0)),
        ("CUDA:2", gpu(2)),
        ("cpu", cpu(0)),
        ("cpu:1", cpu(1)),
        (" gpu ", gpu(0)),
        ("gpu(1)", gpu(1)),  # the repr reads back
        (("gpu", 1), gpu(1)),
        (gpu(4), gpu(4)),
    ],
)
def test_parse(spec: Any, expected: Device) -> None:
    assert Device.parse(spec) == expected


@pytest.mark.parametrize("spec", ["tpu:0", "gpu:x", "gpu:-1", "", "gpu(", 3])
def test_parse_rejects_with_a_message(spec: Any) -> None:
    with pytest.raises(DeviceError) as info:
        Device.parse(spec)
    assert "device" in str(info.value).lower()


def test_constructor_rejects_bad_index() -> None:
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(DeviceError, match="int >= 0"):
            Device("gpu", bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------- finding devices
def test_num_gpus_try_gpu_try_all_gpus() -> None:
    n = d2lcompat.num_gpus()
    assert isinstance(n, int) and n >= 0
    assert d2lcompat.try_gpu() == (gpu(0) if n else cpu())
    assert d2lcompat.try_gpu(10) == (gpu(10) if n > 10 else cpu())
    gpus = d2lcompat.try_all_gpus()
    assert isinstance(gpus, list) and gpus == ([gpu(i) for i in range(n)] or [cpu()])


@pytest.mark.skipif(d2lcompat.num_gpus() > 0, reason="checks the GPU-less fallback")
def test_without_a_gpu_everything_falls_back_to_the_cpu() -> None:
    assert d2lcompat.try_gpu() == cpu() and d2lcompat.try_gpu(10) == cpu()
    assert d2lcompat.try_all_gpus() == [cpu()]
    assert not gpu(0).exists
    with pytest.raises(DeviceError, match=r"gpu\(0\) does not exist.*try_gpu"):
        ops.ones((2,), device=gpu(0))
    with pytest.raises(DeviceError):
        gpu(0).native  # noqa: B018


def test_all_devices_lists_the_cpus_first_and_the_default() -> None:
    devices = all_devices()
    assert devices[0] == cpu(0) and HERE in devices
    assert [d.kind for d in devices] == sorted((d.kind for d in devices), key=("cpu", "gpu").index)
    (info,) = [b for b in d2lcompat.backends() if b.active]
    assert info.devices == [repr(d) for d in devices]


def test_native_is_the_frameworks_object() -> None:
    native = cpu().native
    assert native is not None and not isinstance(native, Device)


# --------------------------------------------------------------- moving tensors
def test_to_device_is_identity_when_already_there() -> None:
    x = ops.arange(5)
    d = d2lcompat.device_of(x)
    assert d == HERE
    assert d2lcompat.to_device(x, d) is x
    assert d2lcompat.to_device(x, repr(d)) is x


def test_copy_to_always_returns_a_new_tensor() -> None:
    x = ops.tensor([1.0, 2.0, 3.0])
    y = d2lcompat.copy_to(x, d2lcompat.device_of(x))
    assert y is not x
    assert d2lcompat.device_of(y) == d2lcompat.device_of(x) and ops.dtype(y) == "float32"
    np.testing.assert_array_equal(ops.to_numpy(y), [1.0, 2.0, 3.0])


@needs_two
def test_copy_and_move_to_another_device() -> None:
    assert OTHER is not None
    x = ops.random.uniform((3, 4))
    for y in (d2lcompat.copy_to(x, OTHER), d2lcompat.to_device(x, OTHER)):
        assert d2lcompat.device_of(y) == OTHER and d2lcompat.device_of(x) == HERE
        np.testing.assert_array_equal(ops.to_numpy(y), ops.to_numpy(x))


def test_creation_ops_take_device() -> None:
    d = OTHER or HERE
    for x in (
        ops.zeros((2,), device=d),
        ops.ones((2,), device=repr(d)),
        ops.full((2,), 1.5, device=d),
        ops.arange(3, device=d),
        ops.tensor([1, 2], device=d),
        ops.random.normal((2,), device=d),
    ):
        assert d2lcompat.device_of(x) == d
    for x in (ops.zeros((2,)), ops.tensor([1.0]), ops.random.uniform((2,))):
        assert d2lcompat.device_of(x) == HERE


# ---------------------------------------------------------------- parameters
def test_data_on_the_wrong_device_raises_naming_both() -> None:
    net = nn.Dense(2, in_units=3)
    net.initialize()
    assert d2lcompat.device_of(net.weight.data(HERE)) == HERE
    wrong = OTHER or gpu(d2lcompat.num_gpus())  # a GPU that does not exist is wrong too
    with pytest.raises(DeviceError) as info:
        net.weight.data(wrong)
    msg = str(info.value)
    assert "'weight'" in msg and repr(HERE) in msg and repr(wrong) in msg and "net.to(" in msg


def test_list_devices_and_deferred_placement() -> None:
    d = OTHER or HERE
    layer = nn.Dense(4)
    assert layer.weight.list_devices() == []
    layer.initialize(device=d)
    assert layer.weight.list_devices() == [d]  # scheduled there while still deferred
    layer(ops.ones((1, 3), device=d))
    assert layer.weight.list_devices() == [d] and layer.bias.list_devices() == [d]


def test_net_to_moves_every_parameter_and_constant() -> None:
    class WithConstant(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.c = d2lcompat.Constant([[1.0, 2.0], [3.0, 4.0]])
            self.dense = nn.Dense(2, in_units=2)

        def forward(self, x: Any) -> Any:
            return self.dense(ops.matmul(x, self.c.data()))

    d = OTHER or HERE
    net = WithConstant()
    net.initialize(d2lcompat.init.One())
    before = ops.to_numpy(net(ops.ones((1, 2))))
    assert net.to(d) is net
    for name, p in net.collect_params().items():
        assert p.list_devices() == [d], name
    out = net(ops.ones((1, 2), device=d))
    assert d2lcompat.device_of(out) == d
    np.testing.assert_array_equal(ops.to_numpy(out), before)
    np.testing.assert_array_equal(ops.to_numpy(net.c.data()), [[1.0, 2.0], [3.0, 4.0]])
    net.to(HERE)
    assert all(p.list_devices() == [HERE] for p in net.collect_params().values())


def test_load_puts_tensors_on_the_device(tmp_path: Path) -> None:
    d = OTHER or HERE
    path = tmp_path / "t.safetensors"
    d2lcompat.save(path, {"a": ops.arange(3), "b": ops.ones((2, 2))})
    loaded = d2lcompat.load(path, device=d)
    assert {k: d2lcompat.device_of(v) for k, v in loaded.items()} == {"a": d, "b": d}
    assert all(d2lcompat.device_of(v) == HERE for v in d2lcompat.load(path).values())
    net = nn.Dense(2, in_units=3)
    net.initialize()
    params = tmp_path / "net.safetensors"
    net.save_parameters(params)
    clone = nn.Dense(2)
    clone.load_parameters(params, device=d)
    assert clone.weight.list_devices() == [d] and clone.bias.list_devices() == [d]


# -------------------------------------------------------------- mixing devices
def test_mixed_devices_message_names_both_and_the_fix() -> None:
    err = mixed_devices_error(cpu(0), ("gpu", 1), "ops.add")
    assert isinstance(err, DeviceError) and isinstance(err, RuntimeError)
    msg = str(err)
    assert "ops.add" in msg and "cpu(0)" in msg and "gpu(1)" in msg and "to_device" in msg
    msg = str(mixed_devices_error("/job:x/device:TPU:0", "cpu(1)", "ops.add"))
    assert "/job:x/device:TPU:0" in msg and "cpu(1)" in msg  # unknown names shown as they are
    msg = str(block_input_device_error("Dense '0'", gpu(0), cpu(0)))
    assert "Dense '0'" in msg and "parameters on gpu(0)" in msg and "input on cpu(0)" in msg


class _FakeTensor:
    def __init__(self, device: tuple[str, int]) -> None:
        self.device = device


class _FakeBackend:
    """What `_guarded` needs of a backend: it is the core's logic under test, not torch's."""

    def is_tensor(self, x: Any) -> bool:
        return isinstance(x, _FakeTensor)

    def device_of(self, x: _FakeTensor) -> tuple[str, int]:
        return x.device


def _framework_op(*args: Any) -> Any:
    devices = {a.device for a in args if isinstance(a, _FakeTensor)}
    if len(devices) > 1:
        raise RuntimeError("Expected all tensors to be on the same device, but found two")
    raise RuntimeError("a shape error")


def test_guard_translates_a_framework_device_error() -> None:
    op = _guarded(_framework_op, "add", (RuntimeError,), _FakeBackend())  # type: ignore[arg-type]
    with pytest.raises(DeviceError) as info:
        op(_FakeTensor(("gpu", 0)), 2.0, _FakeTensor(("cpu", 0)))
    assert (
        "ops.add" in str(info.value) and "gpu(0)" in str(info.value) and "cpu(0)" in str(info.value)
    )
    assert isinstance(info.value.__cause__, RuntimeError)  # the framework's error is kept
    with pytest.raises(RuntimeError, match="a shape error"):  # one device: not translated
        op(_FakeTensor(("cpu", 0)), _FakeTensor(("cpu", 0)))


def test_devices_among_looks_into_lists() -> None:
    found = devices_among(
        _FakeBackend(),  # type: ignore[arg-type]
        ([_FakeTensor(("cpu", 0)), _FakeTensor(("cpu", 1))], 3, _FakeTensor(("cpu", 0))),
    )
    assert found == [cpu(0), cpu(1)]


@needs_two
def test_mixing_devices_raises_device_error() -> None:
    assert OTHER is not None
    x, y = ops.ones((2, 2), device=HERE), ops.ones((2, 2), device=OTHER)
    for op in (ops.add, ops.subtract, ops.matmul, ops.minimum):
        with pytest.raises(DeviceError) as info:
            op(x, y)
        assert repr(HERE) in str(info.value) and repr(OTHER) in str(info.value)
    net = nn.Sequential(nn.Dense(3, in_units=2))
    net.initialize(device=HERE)
    with pytest.raises(DeviceError) as info:
        net(y)
    assert f"Dense '0' has its parameters on {HERE!r} but received an input on {OTHER!r}" in str(
        info.value
    )


@pytest.mark.skipif(len(all_devices()) > 1, reason="checks the single-device fast path")
def test_one_device_means_no_wrapping_on_the_hot_path() -> None:
    # Nothing can mix with one device: ops stay the adapter's own functions and blocks
    # enter no device scope, so the device rule costs nothing there.
    import inspect

    from d2lcompat._backend import OP_NAMES
    from d2lcompat._registry import active
    from d2lcompat.nn import _block

    adapter_ops = type(active().ops)
    # Some ops carry the core's dtype/shape rules (docs/ops-semantics.md): one wrapper
    # around the adapter's own function, and no device wrapper.
    for n in OP_NAMES:
        own = getattr(adapter_ops, n)
        assert inspect.unwrap(getattr(ops, n), stop=lambda f, own=own: f is own) is own, n
    assert _block._SCOPED is False
