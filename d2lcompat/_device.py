"""`Device`: a small value type, translated to the framework's own object only in adapters."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._errors import DeviceError
from ._registry import active

if TYPE_CHECKING:
    from ._backend import Backend

__all__ = [
    "Device",
    "all_devices",
    "copy_to",
    "cpu",
    "default_device",
    "device_of",
    "gpu",
    "mixed_devices_error",
    "num_gpus",
    "to_device",
    "try_all_gpus",
    "try_gpu",
]

ENV_DEVICE = "D2LCOMPAT_DEVICE"


class Device:
    """A device: ``kind`` is ``"cpu"`` or ``"gpu"``, ``index`` its number.

    Constructing a device never fails, as in Gluon (``gpu(3)`` on a laptop is a
    value); using one that does not exist raises `DeviceError`.

    Examples
    --------
    >>> from d2lcompat import cpu, gpu
    >>> gpu(1)
    gpu(1)
    >>> cpu() == cpu(0), len({cpu(), cpu(0)})
    (True, 1)
    """

    __slots__ = ("index", "kind")

    kind: str
    index: int

    def __init__(self, kind: str, index: int = 0) -> None:
        kind = str(kind).lower()
        if kind == "cuda":
            kind = "gpu"
        if kind not in ("cpu", "gpu"):
            raise DeviceError(f"Unknown device kind {kind!r}; use 'cpu' or 'gpu'.")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise DeviceError(f"A device index must be an int >= 0, got {index!r}.")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "index", index)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Device is immutable")

    def __reduce__(self) -> tuple[type[Device], tuple[str, int]]:
        # Immutable slots defeat pickle's default (setattr on a blank object): rebuild it.
        return (Device, (self.kind, self.index))

    @classmethod
    def parse(cls, spec: str | Device | tuple[str, int]) -> Device:
        """``"gpu:1"``, ``"cuda:0"``, ``"cpu"``, ``"gpu(1)"`` (the repr), ``("gpu", 1)`` or a
        Device -> Device.

        Examples
        --------
        >>> from d2lcompat import Device
        >>> Device.parse("cuda:1"), Device.parse("cpu"), Device.parse(repr(Device("gpu", 2)))
        (gpu(1), cpu(0), gpu(2))
        """
        if isinstance(spec, Device):
            return spec
        if isinstance(spec, tuple):
            return cls(spec[0], spec[1])
        if isinstance(spec, str):
            text = spec.strip()
            if text.endswith(")") and "(" in text:  # the repr form, 'gpu(1)'
                text = text[:-1].replace("(", ":", 1)
            kind, _, idx = text.partition(":")
            try:
                return cls(kind, int(idx) if idx else 0)
            except ValueError:  # a non-integer index
                pass
        raise DeviceError(
            f"Cannot read {spec!r} as a device: expected d2lcompat.cpu(i), d2lcompat.gpu(i), "
            "'cpu', 'gpu:1', 'cuda:0' or 'gpu(1)'."
        )

    def _tuple(self) -> tuple[str, int]:
        return (self.kind, self.index)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.kind == self.kind and other.index == self.index

    def __ne__(self, other: object) -> bool:
        # Spelled out: Paddle's SOT traces this, not object.__ne__ (a graph break).
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((self.kind, self.index))

    def __repr__(self) -> str:
        return f"{self.kind}({self.index})"

    @property
    def exists(self) -> bool:
        """Whether this device exists under the backend in use."""
        return self.index < active().device_count(self.kind)

    @property
    def native(self) -> Any:
        """The framework's own device object (torch.device, TF device string, paddle Place,
        jax Device)."""
        return active().native_device(_checked(self))


def _checked(device: Device) -> tuple[str, int]:
    b = active()
    n = b.device_count(device.kind)
    if device.index >= n:
        have = ", ".join(repr(d) for d in all_devices())
        extra = (
            f" Set D2LCOMPAT_CPU_DEVICES={device.index + 1} for more CPU devices."
            if device.kind == "cpu" and b.SUPPORTS_CPU_DEVICES
            else ""
        )
        raise DeviceError(
            f"Device {device!r} does not exist under the {b.name} backend (it has: {have}). "
            f"Use d2lcompat.try_gpu() to fall back to the CPU.{extra}"
        )
    return device._tuple()


def resolve(device: Device | str | None) -> tuple[str, int] | None:
    """The adapter's ``(kind, index)`` for a user's device argument; None -> the default."""
    if device is None:
        d = _DEFAULT
        return None if d is None else d._tuple()
    return _checked(Device.parse(device))


def cpu(i: int = 0) -> Device:
    """The i-th CPU device.

    Examples
    --------
    >>> import d2lcompat
    >>> d2lcompat.cpu()
    cpu(0)
    """
    return Device("cpu", i)


def gpu(i: int = 0) -> Device:
    """The i-th GPU (constructing it never fails; using a missing one does).

    Examples
    --------
    >>> import d2lcompat
    >>> d2lcompat.gpu(1)
    gpu(1)
    """
    return Device("gpu", i)


def num_gpus() -> int:
    """The number of GPUs the backend can use.

    Examples
    --------
    >>> import d2lcompat
    >>> d2lcompat.num_gpus() >= 0
    True
    """
    return int(active().device_count("gpu"))


def try_gpu(i: int = 0) -> Device:
    """``gpu(i)`` if it exists, else ``cpu()``.

    Examples
    --------
    >>> import d2lcompat
    >>> d2lcompat.try_gpu(10) == d2lcompat.cpu() or d2lcompat.num_gpus() > 10
    True
    """
    return gpu(i) if num_gpus() >= i + 1 else cpu()


def try_all_gpus() -> list[Device]:
    """Every GPU, or ``[cpu()]`` when there is none. Always a list.

    Examples
    --------
    >>> import d2lcompat
    >>> isinstance(d2lcompat.try_all_gpus(), list)
    True
    """
    return [gpu(i) for i in range(num_gpus())] or [cpu()]


def all_devices() -> list[Device]:
    """Every device of the backend in use: the CPUs, then the GPUs."""
    b = active()
    return [Device(k, i) for k in ("cpu", "gpu") for i in range(b.device_count(k))]


#: `device_of`'s answers, one object per device (the first few made up front).
_INTERNED: dict[str, Device] = {
    kind + str(i): Device(kind, i) for kind in ("cpu", "gpu") for i in range(8)
}


def device_of(x: Any) -> Device:
    """The device a native tensor lives on.

    Examples
    --------
    >>> import d2lcompat
    >>> d2lcompat.device_of(d2lcompat.ops.zeros((2,))) == d2lcompat.default_device()
    True

    Inside a compiled forward (a hybridized block under ``jax.jit``) a traced value has
    no device of its own yet: its device is the one the computation is placed on, the
    default device (`default_device`; the framework's first GPU, else the CPU), so ``device_of(x) != device_of(y)`` tests in
    the book's ``forward`` work there too.
    """
    b = active()
    try:
        where = b.device_of(x)
    except DeviceError:
        if not b.is_traced(x):
            raise
        if _DEFAULT is not None:
            return _DEFAULT
        # The framework's own default (what `default_device` reads off a new tensor,
        # which inside the trace would be traced too): its first GPU, else the CPU.
        where = ("gpu", 0) if b.device_count("gpu") else ("cpu", 0)
    # Interned, under a string key: a tracer (Paddle's SOT) follows that dict lookup, not
    # a new object nor a tuple key.
    key = where[0] + str(where[1])
    dev = _INTERNED.get(key)
    if dev is None:
        dev = _INTERNED[key] = Device(*where)
    return dev


def to_device(x: Any, device: Device | str) -> Any:
    """``x`` on ``device``: ``x`` itself when it is already there (Gluon ``as_in_ctx``).

    Examples
    --------
    >>> import d2lcompat
    >>> x = d2lcompat.ops.zeros((2,))
    >>> d2lcompat.to_device(x, d2lcompat.device_of(x)) is x
    True
    """
    return active().move(x, _checked(Device.parse(device)), copy=False)


def copy_to(x: Any, device: Device | str) -> Any:
    """A new copy of ``x`` on ``device``, always (Gluon ``copyto``).

    Examples
    --------
    >>> import d2lcompat
    >>> x = d2lcompat.ops.zeros((2,))
    >>> d2lcompat.copy_to(x, d2lcompat.device_of(x)) is x
    False
    """
    return active().move(x, _checked(Device.parse(device)), copy=True)


def _default_from_env() -> Device | None:
    raw = os.environ.get(ENV_DEVICE, "").strip()
    if not raw:
        return None
    dev = Device.parse(raw)
    _checked(dev)
    return dev


_DEFAULT: Device | None = None


def _init_default() -> None:
    global _DEFAULT
    _DEFAULT = _default_from_env()


def default_device() -> Device:
    """The device new tensors and parameters go to when no ``device=`` is given:
    ``D2LCOMPAT_DEVICE`` if set (e.g. ``gpu:0``), else the framework's default.

    Examples
    --------
    >>> import d2lcompat
    >>> isinstance(d2lcompat.default_device(), d2lcompat.Device)
    True
    """
    if _DEFAULT is not None:
        return _DEFAULT
    return device_of(active().full((1,), 0, "float32", None))


# --------------------------------------------------------------- mixed devices
# The rule, written once: one operation needs all its tensors on one device; mixing
# devices raises `DeviceError` naming both, on every backend. Adapters only *detect*
# a mix (torch and JAX raise their own error, which `guard_ops` translates; TensorFlow
# would copy silently, so its adapter compares devices itself) and call these helpers
# for the message.


def _show(device: Device | tuple[str, int] | str) -> str:
    """``'gpu(1)'`` for any device spelling; an unknown native name is shown as it is."""
    try:
        return repr(Device.parse(device))
    except DeviceError:
        return str(device)


def mixed_devices_error(
    first: Device | tuple[str, int] | str, second: Device | tuple[str, int] | str, what: str
) -> DeviceError:
    """The `DeviceError` for one operation, ``what`` (``"ops.add"``), that got tensors on two
    devices. Adapters raise it; the message is the same on every backend.

    Examples
    --------
    >>> from d2lcompat import cpu, gpu
    >>> print(mixed_devices_error(cpu(0), ("gpu", 1), "ops.add"))  # doctest: +NORMALIZE_WHITESPACE
    ops.add expects all its tensors on one device; received tensors on cpu(0) and gpu(1).
    Move them to one device first, e.g. d2lcompat.to_device(x, cpu(0)).
    """
    a, b = _show(first), _show(second)
    return DeviceError(
        f"{what} expects all its tensors on one device; received tensors on {a} and {b}. "
        f"Move them to one device first, e.g. d2lcompat.to_device(x, {a})."
    )


def block_input_device_error(block: str, params: Device, inputs: Device) -> DeviceError:
    """The `DeviceError` for a block whose parameters live on ``params`` called on an input
    on ``inputs`` (``block`` is its description, e.g. ``"Dense '0'"``).

    Examples
    --------
    >>> from d2lcompat import cpu
    >>> print(block_input_device_error("Dense '0'", cpu(1), cpu(0)))  # doctest: +NORMALIZE_WHITESPACE
    Dense '0' has its parameters on cpu(1) but received an input on cpu(0). Move the input
    with d2lcompat.to_device(x, cpu(1)), or the network with net.to(cpu(0)).
    """
    return DeviceError(
        f"{block} has its parameters on {params!r} but received an input on {inputs!r}. "
        f"Move the input with d2lcompat.to_device(x, {params!r}), or the network with "
        f"net.to({inputs!r})."
    )


def devices_among(backend: Backend, args: Iterable[Any]) -> list[Device]:
    """The distinct devices of the native tensors in ``args`` (and in lists or tuples among
    them, as ``concat`` takes), in order of appearance. Values without a device (Python
    scalars, tensors traced by a compiler) are skipped. Only called on error paths."""
    found: list[Device] = []
    for arg in args:
        for item in arg if isinstance(arg, (list, tuple)) else (arg,):
            if not backend.is_tensor(item):
                continue
            try:
                dev = Device(*backend.device_of(item))
            except Exception:  # noqa: BLE001 - e.g. a jit tracer: it has no device yet
                continue
            if dev not in found:
                found.append(dev)
    return found


def _guarded(
    fn: Callable[..., Any], name: str, errors: tuple[type[BaseException], ...], backend: Backend
) -> Callable[..., Any]:
    @functools.wraps(fn)
    def op(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors as exc:
            devices = devices_among(backend, (*args, *kwargs.values()))
            if len(devices) < 2:
                raise  # not a device mix: the framework's own error stands
            raise mixed_devices_error(devices[0], devices[1], f"ops.{name}") from exc

    return op


def guard_ops(backend: Backend) -> None:
    """Make ``backend``'s ops raise `DeviceError` when they mix devices (called once, at load).

    Wraps every op of ``backend.ops`` so that an exception of the adapter's
    ``DEVICE_MISMATCH_ERRORS`` raised while the op's tensors span two devices becomes
    `mixed_devices_error`. Does nothing in a process with a single device (nothing can
    mix there, so ops stay exactly the adapter's functions) or for an adapter that
    declares no such errors (it checks devices itself, as TensorFlow's does). On the
    happy path the wrapper costs one Python call; ``try`` itself is free.
    """
    from ._backend import OP_NAMES

    errors = tuple(getattr(backend, "DEVICE_MISMATCH_ERRORS", ()))
    if not errors or not backend.may_mix_devices():
        return
    ops = backend.ops
    fused = [n for n in dir(ops) if n.startswith("linear_") and callable(getattr(ops, n))]
    for name in (*OP_NAMES, *fused):
        setattr(ops, name, _guarded(getattr(ops, name), name, errors, backend))


def needs_forward_scope(backend: Backend) -> bool:
    """Whether `Block.__call__` must run outermost forward passes in the backend's
    ``forward_scope`` (it overrides the hook and the process has several devices)."""
    from ._backend import Backend as _Base

    overridden = type(backend).forward_scope is not _Base.forward_scope
    return overridden and backend.may_mix_devices()
