"""JAX adapter: answers *how* for each primitive of `d2lcompat.Backend`.

JAX arrays are immutable, so this backend has no mutable variables: a
parameter's "variable" is a plain ``jax.Array`` and `JaxBackend.assign` returns
the replacement array, which the core stores in place of the old one.

JAX's global configuration is left as found: importing d2lcompat never changes
``jax_enable_x64``. While 64-bit types are off (JAX's default), this backend has no
``int64``/``float64`` (`JaxBackend.SUPPORTED_DTYPES` leaves them out, as Keras 3 on
JAX does): a request for one gets its 32-bit sibling, as in JAX itself, but never a
changed value (an int64 value outside the int32 range raises `DTypeError`). Turn x64
on yourself (``jax.config.update("jax_enable_x64", True)``) to get them back; the
check is made on each call, so it may happen before or after ``import d2lcompat``.
See docs/divergences.md.
"""

from __future__ import annotations

import functools
import numbers
import weakref
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from d2lcompat._backend import DTYPES, Backend, DeviceTuple, Ops
from d2lcompat._errors import (
    BackendError,
    DeviceError,
    DTypeError,
    ShapeError,
    TracedValueError,
)

_DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(jnp.bfloat16) if name == "bfloat16" else np.dtype(name) for name in DTYPES
}
_NAMES: dict[np.dtype[Any], str] = {v: k for k, v in _DTYPES.items()}
_FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})
_LOW_PRECISION = (np.dtype(jnp.float16), np.dtype(jnp.bfloat16))
# jax names the CUDA and ROCm platforms "gpu" (older releases: "cuda"/"rocm").
_GPU_PLATFORMS = ("gpu", "cuda", "rocm")
# Full float32 matmuls: jax's DEFAULT precision is TF32 on Ampere+ GPUs and bf16 passes on
# TPU, which breaks the promised cross-backend agreement (rtol 1e-5). It only affects
# float32 inputs, and our own ops only: native `x @ w` in user code keeps jax's default.
_PRECISION = jax.lax.Precision.HIGHEST
# Tracer attributes that hold the traced value when it is concrete (eager autodiff, vmap).
_TRACER_VALUE_ATTRS = ("primal", "val")


_TRACED_ADVICE = (
    "{what} needs a tensor's concrete value, which JAX does not have here: it is "
    "tracing the computation (jax.jit, as hybridize() uses, or np.asarray/float() on a "
    "value being differentiated). Use ops.item(x) or ops.to_numpy(x) for Python control flow (they work "
    "under autograd.grad), keep the decision in tensors (ops.where(cond, a, b)), or run "
    "the block without hybridize(); see docs/divergences.md"
)

# The 64-bit dtypes jax has only with ``jax_enable_x64``, and what they become without.
_NARROW = {"int64": "int32", "float64": "float32"}
_NARROW_NP = {np.dtype("int64"): np.dtype("int32"), np.dtype("float64"): np.dtype("float32")}
_INT32 = np.iinfo(np.int32)


# jax.device_put of a NumPy array to a CPU device does not copy when the array is
# C-contiguous and its data 64-byte aligned: the jax array then *is* the NumPy memory
# (even with may_alias=False; measured on jax 0.10.2). `_private` hands it memory
# nobody else holds instead.
_XLA_ALIGN = 64
#: From this size on, the copy is 64-byte aligned, so that jax keeps it as it is (one
#: copy in all): faster than the copy jax makes of an unaligned array, 3.5 against
#: 7.7 ms for 10 MB, 86 against 107 us for 256 KB. Below it, a plain `copy`.
_OWN_COPY_BYTES = 1 << 16


def _private(arr: np.ndarray, dev: Any) -> np.ndarray:
    """``arr``, or a copy of it that jax.device_put may keep (see `_XLA_ALIGN`), so that
    the array put on ``dev`` never shares memory with ``arr``: a NumPy array of the
    caller's, which it may change later, or a view into a load's memory map, which is
    unmapped (and whose file may be rewritten) after the load."""
    if getattr(dev, "platform", None) != "cpu" or not arr.flags.c_contiguous or not arr.nbytes:
        return arr  # another device, or jax must make a contiguous copy itself
    if arr.nbytes < _OWN_COPY_BYTES:
        # Small: any copy of ours will do; cheaper (0.15 us) than asking for the
        # address to see whether jax would copy it anyway (arr.ctypes.data: 1.7 us).
        return arr.copy()
    raw = np.empty(arr.nbytes + _XLA_ALIGN, np.uint8)
    start = -raw.ctypes.data % _XLA_ALIGN
    out = raw[start : start + arr.nbytes].view(arr.dtype).reshape(arr.shape)
    np.copyto(out, arr)
    return out


def _x64() -> bool:
    """Whether the user turned on jax's 64-bit types (read on each call, never set)."""
    return bool(jax.config.jax_enable_x64)


def _np_dtype(dtype: str) -> np.dtype[Any]:
    if dtype in _NARROW and not _x64():
        dtype = _NARROW[dtype]
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise DTypeError(
            f"Unknown dtype {dtype!r}; the jax backend knows {', '.join(DTYPES)}."
        ) from None


def _check_int32(arr: np.ndarray) -> None:
    lo, hi = int(arr.min()), int(arr.max())
    if lo < _INT32.min or hi > _INT32.max:
        raise DTypeError(
            f"An int64 value ({lo if lo < _INT32.min else hi}) does not fit the int32 that jax "
            "uses while its 64-bit types are off. Turn them on before creating the tensor: "
            'jax.config.update("jax_enable_x64", True).'
        )


def _axis(axis: Any) -> Any:
    # jnp accepts an int, a tuple or None; a list would be read as an array.
    return tuple(axis) if isinstance(axis, list) else axis


@jax.jit
def _linear(x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    # One compiled call instead of three eager dispatches (transpose, matmul, add); XLA
    # folds the transpose into the dot. `b=None` is an empty pytree: it just traces again.
    y = jnp.matmul(x, w.T, precision=_PRECISION)
    return y if b is None else y + b


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _conv(
    x: jax.Array,
    w: jax.Array,
    b: jax.Array | None,
    strides: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> jax.Array:
    n = len(strides)
    dims = ("NCH", "OIH", "NCH") if n == 1 else ("NCHW", "OIHW", "NCHW")
    y = jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=strides,
        padding=[(p, p) for p in padding],
        rhs_dilation=dilation,
        dimension_numbers=dims,
        feature_group_count=groups,
        precision=_PRECISION,
    )
    return y if b is None else y + b.reshape((1, -1) + (1,) * n)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _pool(
    x: jax.Array,
    kind: str,
    window: tuple[int, ...],
    strides: tuple[int, ...],
    padding: tuple[int, ...],
) -> jax.Array:
    dims = (1, 1) + window
    steps = (1, 1) + strides
    pads = ((0, 0), (0, 0)) + tuple((p, p) for p in padding)
    if kind == "max":
        # -inf (the identity of max) lets jax pick its differentiable max-window primitive.
        # It must be a Python scalar: jax recognises the monoid only from a concrete value.
        low = -np.inf if jnp.issubdtype(x.dtype, jnp.floating) else int(jnp.iinfo(x.dtype).min)
        return jax.lax.reduce_window(x, low, jax.lax.max, dims, steps, pads)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, steps, pads)
    return total / np.prod(window)  # padded zeros count (count_include_pad)


@jax.jit
def _relu(x: jax.Array) -> jax.Array:
    # Not jax.nn.relu: its custom-JVP wrapper runs a Python path (signature binding) on
    # every eager call, 1.3-1.4x a plain forward of the chapter's MLP. One jitted
    # `where` is one cached dispatch, and its gradient at 0 is 0 as jax.nn.relu's and
    # torch's are (jnp.maximum(x, 0) would give 0.5 there).
    return jnp.where(x > 0, x, jnp.zeros((), x.dtype))


@jax.jit
def _linear_relu(x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    # Dense(activation='relu') in one dispatch: XLA fuses the bias add and the relu.
    y = jnp.matmul(x, w.T, precision=_PRECISION)
    y = y if b is None else y + b
    return jnp.where(y > 0, y, jnp.zeros((), y.dtype))


def _gpu_plugin_installed() -> bool:
    """Whether a CUDA or ROCm PJRT plugin for jax is installed (``jax_cuda12_plugin``...),
    found without importing it or starting jax's runtime."""
    import pkgutil

    return any(
        m.name.startswith(("jax_cuda", "jax_rocm", "jaxlib_cuda")) for m in pkgutil.iter_modules()
    )


def _l2(x: jax.Array, axis: Any, keepdims: bool) -> jax.Array:
    sq = jnp.sum(jnp.square(x), axis=axis, keepdims=keepdims)
    pos = sq > 0
    # The double `where` gives gradient 0 at 0 (as torch's vector_norm) instead of
    # the NaN that d sqrt(s)/ds = inf at s = 0 would produce.
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1)), 0)


class JaxOps(Ops):
    """Native ``jax.numpy`` / ``jax.nn`` ops with NumPy semantics.

    Every name of `d2lcompat._backend.OP_NAMES` is a static function taking and
    returning ``jax.Array`` values, so the ops work on concrete arrays and on
    tracers alike (under ``jax.jit``, ``jax.grad``, ``jax.vmap``).
    """

    matmul = staticmethod(functools.partial(jnp.matmul, precision=_PRECISION))
    add = staticmethod(jnp.add)
    subtract = staticmethod(jnp.subtract)
    multiply = staticmethod(jnp.multiply)
    divide = staticmethod(jnp.divide)
    exp = staticmethod(jnp.exp)
    log = staticmethod(jnp.log)
    abs = staticmethod(jnp.abs)
    sqrt = staticmethod(jnp.sqrt)
    square = staticmethod(jnp.square)
    maximum = staticmethod(jnp.maximum)
    minimum = staticmethod(jnp.minimum)
    equal = staticmethod(jnp.equal)
    not_equal = staticmethod(jnp.not_equal)
    less = staticmethod(jnp.less)
    less_equal = staticmethod(jnp.less_equal)
    greater = staticmethod(jnp.greater)
    greater_equal = staticmethod(jnp.greater_equal)
    relu = staticmethod(_relu)
    sigmoid = staticmethod(jax.nn.sigmoid)
    tanh = staticmethod(jnp.tanh)

    @staticmethod
    def dot(a: jax.Array, b: jax.Array) -> jax.Array:
        # jnp.dot on N-D arrays is not matmul (it contracts with the second-to-last axis
        # of b and takes an outer product over the batch axes): only use it for 1-D·1-D.
        if jnp.ndim(a) == 1 and jnp.ndim(b) == 1:
            return jnp.dot(a, b, precision=_PRECISION)
        return jnp.matmul(a, b, precision=_PRECISION)

    @staticmethod
    def where(cond: jax.Array, x: Any, y: Any) -> jax.Array:
        # Always the three-argument form: jnp.where(cond) alone would mean nonzero().
        return jnp.where(cond, x, y)

    @staticmethod
    def sum(x: jax.Array, axis: Any = None, keepdims: bool = False) -> jax.Array:
        return jnp.sum(x, axis=_axis(axis), keepdims=keepdims)

    @staticmethod
    def mean(x: jax.Array, axis: Any = None, keepdims: bool = False) -> jax.Array:
        return jnp.mean(x, axis=_axis(axis), keepdims=keepdims)

    @staticmethod
    def max(x: jax.Array, axis: Any = None, keepdims: bool = False) -> jax.Array:
        return jnp.max(x, axis=_axis(axis), keepdims=keepdims)

    @staticmethod
    def min(x: jax.Array, axis: Any = None, keepdims: bool = False) -> jax.Array:
        return jnp.min(x, axis=_axis(axis), keepdims=keepdims)

    @staticmethod
    def norm(x: jax.Array, axis: Any = None, keepdims: bool = False) -> jax.Array:
        # Not jnp.linalg.norm: it rejects more than two axes and means a matrix norm for
        # two; d2lcompat's norm is always the L2 norm of the selected entries.
        axis = _axis(axis)
        if x.dtype in _LOW_PRECISION:
            # Square in float32: float16 squares overflow from |x| > 256 (torch
            # accumulates in float32 as well), then come back to the input dtype.
            return _l2(x.astype(jnp.float32), axis, keepdims).astype(x.dtype)
        return _l2(x, axis, keepdims)

    @staticmethod
    def reshape(x: jax.Array, shape: Sequence[int]) -> jax.Array:
        return jnp.reshape(x, tuple(shape))

    @staticmethod
    def transpose(x: jax.Array, axes: Sequence[int] | None = None) -> jax.Array:
        return jnp.transpose(x, None if axes is None else tuple(axes))

    @staticmethod
    def concat(xs: Sequence[jax.Array], axis: int = 0) -> jax.Array:
        return jnp.concatenate(list(xs), axis=axis)

    @staticmethod
    def stack(xs: Sequence[jax.Array], axis: int = 0) -> jax.Array:
        return jnp.stack(list(xs), axis=axis)

    @staticmethod
    def split(x: jax.Array, indices_or_sections: Any, axis: int = 0) -> list[jax.Array]:
        return jnp.split(x, indices_or_sections, axis=axis)

    @staticmethod
    def expand_dims(x: jax.Array, axis: Any) -> jax.Array:
        return jnp.expand_dims(x, _axis(axis))

    @staticmethod
    def squeeze(x: jax.Array, axis: Any = None) -> jax.Array:
        return jnp.squeeze(x, axis=_axis(axis))

    @staticmethod
    def softmax(x: jax.Array, axis: int = -1) -> jax.Array:
        return jax.nn.softmax(x, axis=axis)

    @staticmethod
    def log_softmax(x: jax.Array, axis: int = -1) -> jax.Array:
        return jax.nn.log_softmax(x, axis=axis)

    @staticmethod
    def linear(x: jax.Array, w: jax.Array, b: jax.Array | None = None) -> jax.Array:
        return _linear(x, w, b)

    @staticmethod
    def index_update(x: jax.Array, index: Any, value: Any) -> jax.Array:
        # JAX drops out-of-range updates silently; NumPy (and the other backends) raise.
        for axis, i in enumerate(index if isinstance(index, tuple) else (index,)):
            if i is None or i is Ellipsis:
                break
            if isinstance(i, numbers.Integral) and not -x.shape[axis] <= i < x.shape[axis]:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {x.shape[axis]}")
        return x.at[index].set(jnp.asarray(value, dtype=x.dtype))

    #: Optional fused op (`Ops` docs): ``Dense(activation='relu')`` calls it when present.
    linear_relu = staticmethod(_linear_relu)


class JaxBackend(Backend):
    """The JAX backend.

    Parameters are immutable ``jax.Array`` values (``SUPPORTS_MUTABLE_VARIABLES`` is
    False): `assign` returns the new array and the core keeps it. Several CPU
    devices come from ``D2LCOMPAT_CPU_DEVICES`` (JAX's host platform device count).

    Examples
    --------
    >>> b = JaxBackend()
    >>> b.configure(1)
    >>> x = b.from_numpy(np.arange(3), "int32", ("cpu", 0))
    >>> b.dtype(x), b.device_of(x), b.move(x, ("cpu", 0), copy=False) is x
    ('int32', ('cpu', 0), True)
    """

    name: ClassVar[str] = "jax"
    SUPPORTS_MUTABLE_VARIABLES: ClassVar[bool] = False
    SUPPORTS_CPU_DEVICES: ClassVar[bool] = True
    SUPPORTS_COMPILE: ClassVar[bool] = True
    COMPILES_TRAIN_STEP: ClassVar[bool] = True
    # XLA:CPU allocates a call's temporaries anew each call (above glibc's mmap limit:
    # fresh pages); under the NaN guard the gradients go to donated buffers instead.
    GUARDED_STEP_KEEPS_GRADS: ClassVar[bool] = True
    #: What jax raises for an op on committed arrays of two devices ("Received
    #: incompatible devices for jitted computation"); the core turns it into DeviceError.
    DEVICE_MISMATCH_ERRORS: ClassVar[tuple[type[Exception], ...]] = (ValueError,)
    #: The errors `jax.jit` raises when Python control flow depends on traced values:
    #: ``hybridize`` catches them and falls back to eager (`Backend.COMPILE_FALLBACK_ERRORS`).
    COMPILE_FALLBACK_ERRORS: ClassVar[tuple[type[Exception], ...]] = (
        jax.errors.ConcretizationTypeError,
        jax.errors.TracerIntegerConversionError,
        jax.errors.TracerArrayConversionError,
        TracedValueError,  # ops.item under jit (see `item`)
    )

    ops: JaxOps

    @property  # type: ignore[misc]  # read on each call: the user may turn x64 on at any time
    def SUPPORTED_DTYPES(self) -> frozenset[str]:  # noqa: N802 - the Backend attribute's name
        """Every d2lcompat dtype, less ``int64``/``float64`` while ``jax_enable_x64`` is off."""
        return frozenset(DTYPES) if _x64() else frozenset(DTYPES) - frozenset(_NARROW)

    def __init__(self) -> None:
        self.ops = JaxOps()
        # Filled lazily: asking jax for devices initializes its backends, after which
        # the CPU device count can no longer change (see `configure`).
        self._devices: dict[str, tuple[Any, ...]] | None = None
        self._index: dict[Any, DeviceTuple] = {}
        self._default_device: Any = None  # jax's default device, once asked (see `_place`)
        self._cpu_devices = 1  # D2LCOMPAT_CPU_DEVICES, from `configure`
        # The eager update of each optimizer as one jax.jit (`fused_update_values`).
        self._fused_rules: weakref.WeakKeyDictionary[Any, _FusedRule] = weakref.WeakKeyDictionary()

    @property
    def version(self) -> str:
        return str(jax.__version__)

    def configure(self, cpu_devices: int) -> None:
        self._cpu_devices = cpu_devices
        if cpu_devices > 1:
            try:
                # Overrides XLA_FLAGS (which the core also sets) and works even when
                # jax was imported before the core could set the environment.
                jax.config.update("jax_num_cpu_devices", cpu_devices)
            except RuntimeError:
                pass  # backends already initialized: check what we got below
            have = self.device_count("cpu")
            if have < cpu_devices:
                raise BackendError(
                    f"D2LCOMPAT_CPU_DEVICES={cpu_devices} but jax has {have} CPU device(s): "
                    "jax was already in use before d2lcompat was imported. Import "
                    "d2lcompat first, or set XLA_FLAGS=--xla_force_host_platform_device_count="
                    f"{cpu_devices} before starting Python."
                )

    def may_mix_devices(self) -> bool:
        # Counting devices would initialize jax's runtime at `import d2lcompat` (and a
        # GPU client with it); answer from what is known without doing so.
        if self._cpu_devices > 1 or self._devices is not None:
            return self.device_count("cpu") + self.device_count("gpu") > 1
        return _gpu_plugin_installed()

    # ---------------------------------------------------------------- devices
    def _device_table(self) -> dict[str, tuple[Any, ...]]:
        if self._devices is None:
            # Local devices: the ones this process can address (all of them unless
            # jax.distributed is in use), so an index never names another host's device.
            cpus = tuple(jax.local_devices(backend="cpu"))
            gpus: tuple[Any, ...] = ()
            for platform in _GPU_PLATFORMS:
                try:
                    gpus = tuple(jax.local_devices(backend=platform))
                except RuntimeError:  # a CPU-only jaxlib has no such platform
                    continue
                break
            self._devices = {"cpu": cpus, "gpu": gpus}
            self._index = {
                d: (kind, i) for kind, ds in self._devices.items() for i, d in enumerate(ds)
            }
        return self._devices

    def device_count(self, kind: str) -> int:
        return len(self._device_table().get(kind, ()))

    def native_device(self, device: DeviceTuple) -> Any:
        kind, index = device
        try:
            return self._device_table()[kind][index]
        except (KeyError, IndexError):
            raise DeviceError(
                f"Device {kind}({index}) does not exist under the jax backend."
            ) from None

    def device_of(self, x: Any) -> DeviceTuple:
        try:
            devices = x.devices()
        except jax.errors.ConcretizationTypeError:
            return self._tracer_device(x)
        except AttributeError:
            raise DeviceError(f"{type(x).__name__} is not a jax array; it has no device.") from None
        if len(devices) != 1:
            raise DeviceError(
                f"The jax array is sharded over {len(devices)} devices; d2lcompat places "
                "each tensor on one device."
            )
        (dev,) = devices
        if not self._index:
            self._device_table()
        try:
            return self._index[dev]
        except KeyError:
            raise DeviceError(f"d2lcompat does not know the jax device {dev}.") from None

    def _tracer_device(self, x: Any) -> DeviceTuple:
        # Under eager jax.grad / jax.vmap the tracer wraps a concrete array: use its device.
        # Under jax.jit there is no device until the compiled function runs.
        value = x
        for _ in range(32):  # nesting depth of transformations; bounded for safety
            if not isinstance(value, jax.core.Tracer):
                return self.device_of(value)
            inner = None
            for attr in _TRACER_VALUE_ATTRS:
                candidate = getattr(value, attr, None)
                # A jit tracer's `val` is a jaxpr variable, not an array: skip it.
                if isinstance(candidate, jax.Array):
                    inner = candidate
                    break
            if inner is None:
                break
            value = inner
        raise DeviceError(
            "A value traced by jax.jit has no device yet (jit runs on its inputs' device); "
            "check devices outside the compiled function (see JaxBackend.is_traced)."
        )

    def is_traced(self, x: Any) -> bool:
        """Whether ``x`` is a JAX tracer (`Backend.is_traced`; see `device_of`)."""
        return isinstance(x, jax.core.Tracer)

    def move(self, x: Any, device: DeviceTuple, copy: bool) -> Any:
        dev = self.native_device(device)
        if copy:
            # may_alias=False forces a fresh buffer even when x already lives on dev.
            return jax.device_put(x, dev, may_alias=False)
        try:
            here = x.devices()
        except jax.errors.ConcretizationTypeError:
            return jax.device_put(x, dev)  # a tracer: let jax stage the transfer
        # device_put would return a *new* (committed) array even on the same device.
        if len(here) == 1 and dev in here:
            return x
        return jax.device_put(x, dev)

    def _place(self, device: DeviceTuple | None) -> Any:
        """The jax device for a new array; None -> jax's default device, *committed*.

        jax leaves an array created without a device uncommitted, and silently moves it
        to the device of any committed array it meets. d2lcompat commits every array it
        creates, so that an op mixing two devices raises on jax as it does on torch
        (DeviceError, see `DEVICE_MISMATCH_ERRORS`). Native arrays the user creates keep
        jax's own behaviour.
        """
        if device is not None:
            return self.native_device(device)
        chosen = jax.config.jax_default_device  # `with jax.default_device(...)` is honoured
        if isinstance(chosen, jax.Device):
            return chosen
        if isinstance(chosen, str):  # a platform name
            return jax.local_devices(backend=chosen)[0]
        if self._default_device is None:
            self._default_device = jax.local_devices()[0]
        return self._default_device

    # ---------------------------------------------------------------- tensors
    def is_tensor(self, x: Any) -> bool:
        return isinstance(x, jax.Array)  # tracers are jax.Array instances too

    def from_numpy(self, array: np.ndarray, dtype: str | None, device: DeviceTuple | None) -> Any:
        arr = np.asarray(array)
        if dtype is None and arr.dtype in _NARROW_NP and not _x64():
            dtype = _NAMES[arr.dtype]
        if dtype is not None:
            target = _np_dtype(dtype)
            if arr.dtype != target:
                if target == np.int32 and arr.dtype.kind in "iu" and arr.size:
                    _check_int32(arr)
                # Cast on the host: exact for the values NumPy/ml_dtypes round the same way
                # XLA does, and it avoids putting the wider array on the device first.
                arr = arr.astype(target)
        elif arr.dtype not in _NAMES:
            raise DTypeError(f"d2lcompat has no dtype for NumPy {arr.dtype}.")
        dev = self._place(device)
        if arr is array or arr.base is not None:  # not a cast of our own: the caller's memory
            arr = _private(arr, dev)
        # A later change to `array` is not seen (jax would otherwise alias it, `_private`).
        return jax.device_put(arr, dev)

    def to_numpy(self, x: Any) -> np.ndarray:
        # np.array copies: np.asarray would give a read-only view of the jax buffer.
        if isinstance(x, jax.core.Tracer):  # inside autograd.grad: its concrete value
            value = self._concrete(x)
            if value is None:
                raise TracedValueError(_TRACED_ADVICE.format(what="ops.to_numpy"))
            x = value
        return np.array(x)

    def _concrete(self, x: Any) -> Any:
        """The concrete array behind ``x``: ``x`` itself, or the value a tracer of eager
        autodiff (``jax.value_and_grad`` outside ``jit``) wraps; None under ``jit``."""
        value = x
        for _ in range(32):  # nesting depth of transformations; bounded for safety
            if not isinstance(value, jax.core.Tracer):
                return value
            inner = None
            for attr in _TRACER_VALUE_ATTRS:
                candidate = getattr(value, attr, None)
                if isinstance(candidate, jax.Array):
                    inner = candidate
                    break
            if inner is None:
                return None
            value = inner
        return None

    def item(self, x: Any) -> Any:
        # Under autograd.grad the closure runs eagerly inside jax.value_and_grad: the
        # tracer holds the concrete value, so Python control flow on it works as on the
        # other backends (the value is a constant for the gradient, as torch's .item()).
        value = self._concrete(x)
        if value is None:
            raise TracedValueError(_TRACED_ADVICE.format(what="ops.item"))
        return np.asarray(value).item()

    def translate_grad_error(self, exc: BaseException) -> BaseException | None:
        if isinstance(
            exc,
            jax.errors.ConcretizationTypeError
            | jax.errors.TracerArrayConversionError
            | jax.errors.TracerIntegerConversionError,
        ):
            return TracedValueError(
                _TRACED_ADVICE.format(what="Python code in the closure given to autograd.grad")
                + f" (jax: {type(exc).__name__})"
            )
        return None

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    def dtype(self, x: Any) -> str:
        try:
            return _NAMES[x.dtype]
        except KeyError:
            raise DTypeError(f"d2lcompat has no dtype for jax {x.dtype}.") from None

    def cast(self, x: Any, dtype: str) -> Any:
        return x.astype(_np_dtype(dtype))

    def full(
        self, shape: tuple[int, ...], value: Any, dtype: str, device: DeviceTuple | None
    ) -> Any:
        return jnp.full(
            tuple(shape),
            value,
            dtype=_np_dtype(dtype),
            device=self._place(device),
        )

    def arange(
        self, start: Any, stop: Any, step: Any, dtype: str | None, device: DeviceTuple | None
    ) -> Any:
        if stop is None:
            start, stop = 0, start
        if step is None:
            step = 1
        if dtype is None:
            # Infer explicitly: under x64 jax would infer float64 for float bounds.
            ints = all(
                isinstance(v, numbers.Integral)
                or (isinstance(v, np.ndarray | jax.Array) and np.issubdtype(v.dtype, np.integer))
                for v in (start, stop, step)
            )
            dtype = "int64" if ints else "float32"
        target = _np_dtype(dtype)
        # Built on the host, like jnp.arange itself needs concrete bounds: jnp.arange adds
        # i * step in the *target* dtype (float32 values off by ulps from NumPy's). Floats
        # are computed in float64 and rounded once, so every adapter that does the same
        # gives bit-identical values; creation is not on the hot path.
        if dtype in _FLOATS:
            host = np.arange(start, stop, step, dtype=np.float64).astype(target)
        else:
            host = np.arange(start, stop, step, dtype=target)
        return jax.device_put(host, self._place(device))

    # -------------------------------------------------------------- variables
    def new_variable(
        self, value: np.ndarray, dtype: str, device: DeviceTuple | None, trainable: bool
    ) -> Any:
        # `trainable` needs nothing here: a jax array carries no requires_grad flag; the
        # core decides which values it hands to `value_and_grad`.
        if isinstance(value, jax.Array):
            value = value.astype(_np_dtype(dtype))
            return value if device is None else jax.device_put(value, self.native_device(device))
        return self.from_numpy(value, dtype, device)

    def host_view(self, x: Any) -> np.ndarray:
        # np.asarray lends the buffer of a CPU array (read-only, no copy).
        return np.asarray(x)

    def read(self, var: Any) -> Any:
        return var

    def assign(self, var: Any, value: Any) -> Any:
        if not isinstance(value, jax.Array):
            value = jnp.asarray(value)
        if value.dtype != var.dtype:
            raise DTypeError(
                f"Cannot assign a {value.dtype} array to a {var.dtype} variable; cast it first."
            )
        if value.shape != var.shape:
            raise ShapeError(
                f"Cannot assign an array of shape {tuple(value.shape)} to a variable of "
                f"shape {tuple(var.shape)}."
            )
        try:
            where = var.devices()
        except jax.errors.ConcretizationTypeError:
            return value  # var is itself traced: nothing to place against
        try:
            if value.devices() == where:
                return value
        except jax.errors.ConcretizationTypeError:
            pass  # a traced value: stage a transfer (a no-op when already there)
        if len(where) != 1:
            raise DeviceError("d2lcompat places each variable on one device.")
        (dev,) = where
        return jax.device_put(value, dev)

    # --------------------------------------------------------------- autodiff
    def value_and_grad(
        self, fn: Callable[[Sequence[Any]], Any], values: Sequence[Any]
    ) -> tuple[Any, list[Any]]:
        value, grads = jax.value_and_grad(fn)(list(values))
        return value, list(grads)

    def value_and_grad_aux(
        self, fn: Callable[[Sequence[Any]], tuple[Any, Any]], values: Sequence[Any]
    ) -> tuple[Any, list[Any], Any]:
        (value, aux), grads = jax.value_and_grad(fn, has_aux=True)(list(values))
        return value, list(grads), aux

    def stop_gradient(self, x: Any) -> Any:
        return jax.lax.stop_gradient(x)

    # ------------------------------------------------------- layer primitives
    def conv(
        self,
        x: Any,
        w: Any,
        b: Any | None,
        strides: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
    ) -> Any:
        return _conv(x, w, b, strides, padding, dilation, groups)

    def pool(
        self,
        x: Any,
        kind: str,
        window: tuple[int, ...],
        strides: tuple[int, ...],
        padding: tuple[int, ...],
    ) -> Any:
        return _pool(x, kind, window, strides, padding)

    def take(self, weight: Any, indices: Any) -> Any:
        return jnp.take(weight, indices, axis=0)

    def sparse_softmax_cross_entropy(self, pred: Any, label: Any, axis: int, from_logits: bool) -> Any:
        # What a JAX user writes: log_softmax and a gather of the label's class.
        if not jnp.issubdtype(label.dtype, jnp.integer):
            label = label.astype(jnp.int32)
        logp = pred if from_logits else jax.nn.log_softmax(pred, axis=axis)
        picked = jnp.take_along_axis(logp, jnp.expand_dims(label, axis), axis=axis)
        return -jnp.squeeze(picked, axis)

    def attention(self, q: Any, k: Any, v: Any, keep: Any | None) -> Any:
        if q.shape[-1] != v.shape[-1] or q.dtype != k.dtype or k.dtype != v.dtype:
            return None  # jax.nn.dot_product_attention needs one head size and one dtype
        # Its layout is d2lcompat's (B, T, H, D); a boolean mask: True takes part.
        return jax.nn.dot_product_attention(q, k, v, mask=keep)

    def rnn(
        self,
        mode: str,
        x: Any,
        states: Sequence[Any],
        weights: Sequence[Any],
        num_layers: int,
        bidirectional: bool,
    ) -> tuple[Any, list[Any]]:
        # Gluon's equations scanned by jax.lax.scan, jitted once per configuration (and
        # inlined into a hybridized forward or a compiled training step).
        return _rnn_jit(mode, x, list(states), list(weights), num_layers, bidirectional)

    # ------------------------------------------------------------- optimizers
    def fused_update_values(
        self,
        optimizer: Any,
        values: Sequence[Any],
        grads: Sequence[Any],
        slots: Sequence[Sequence[Any]],
        t: int,
        scale: float,
    ) -> tuple[list[Any], list[list[Any]]] | None:
        # The optimizer's own rule over every parameter in one jax.jit (`_FusedRule`):
        # one dispatch per step instead of several eager ops per parameter.
        if isinstance(values[0], jax.core.Tracer):
            return None  # called inside the user's own transformation: the plain rule
        fused = self._fused_rules.get(optimizer)
        if fused is None:
            fused = self._fused_rules[optimizer] = _FusedRule(optimizer, self)
        return fused(values, grads, slots, t, scale)

    def nonfinite_mean(self, total: Any, scale: float, grads: Sequence[Any]) -> Any | None:
        # The core's probe (Σ sum(g - g): 0, or NaN when a gradient is not finite) and
        # total·scale in one jax.jit instead of a dispatch per op.
        try:
            return _nonfinite_mean(total, scale, list(grads))
        except Exception:  # noqa: BLE001 - several devices, odd inputs: the core's probe
            return None

    # ---------------------------------------------------------------- compile
    def compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return jax.jit(fn)

    def compile_train_step(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        # One jax.jit of forward, backward and update. The state (parameters, running
        # statistics, optimizer slots) is donated: XLA writes the new values into the
        # old buffers instead of allocating a second copy of the model every step.
        # Unchanged values are returned as they are, which aliases them for free.
        def full(values: list[Any], scalars: Any, X: Any, y: Any) -> tuple[Any, list[Any]]:
            loss, new = fn(values, scalars, X, y)
            return loss, [v if n is None else n for v, n in zip(values, new)]

        jitted = jax.jit(full, donate_argnums=(0,))
        # The scalars (1/batch, learning rate...) as one device array, made again only
        # when they change: a host-to-device copy per step would cost more than the step
        # of a small model.
        cache: list[Any] = [None, None]

        def run(values: Sequence[Any], scalars: Sequence[float], X: Any, y: Any) -> Any:
            if scalars != cache[0]:
                cache[0], cache[1] = scalars, jnp.asarray(np.asarray(scalars, np.float32))
            return jitted(values, cache[1], X, y)

        return run

    # ------------------------------------------------------------ distributed
    DISTRIBUTED_ENGINE: ClassVar[str] = (
        "jax.distributed + XLA collectives (gloo on CPU, NCCL on GPU)"
    )
    DEVICE_PARALLEL_ENGINE: ClassVar[str] = (
        "jax.sharding (Mesh + NamedSharding: batch sharded, parameters replicated, "
        "XLA inserts the all-reduce)"
    )

    def dist_init(self, cluster: Any) -> tuple[int, int, int]:
        if self._devices is not None and jax.process_count() > 1:  # joined already
            return jax.process_index(), jax.process_count(), 0
        if cluster is None or cluster.world_size == 1:
            return (0, 1, 0)
        try:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            timeout = max(1, int(cluster.timeout))
            jax.distributed.initialize(
                cluster.coordinator, cluster.world_size, cluster.rank,
                initialization_timeout=timeout, heartbeat_timeout_seconds=timeout,
                shutdown_timeout_seconds=timeout,
            )
        except RuntimeError as exc:
            raise BackendError(
                f"jax could not join the process group ({exc}). Call "
                "d2lcompat.parallel.init() first, before creating any tensor."
            ) from exc
        self._devices = None  # this process's devices, now that jax knows the group
        return cluster.rank, cluster.world_size, 0

    def _process_mean(self) -> tuple[Any, Any, Any]:
        """A mesh of one device per process, and a compiled mean over it (cached)."""
        cached = getattr(self, "_proc", None)
        if cached is None:
            from jax.sharding import Mesh, NamedSharding, PartitionSpec

            first: dict[int, Any] = {}
            for d in jax.devices():
                first.setdefault(d.process_index, d)
            mesh = Mesh(np.array([first[i] for i in sorted(first)]), ("processes",))
            split = NamedSharding(mesh, PartitionSpec("processes"))
            mean = jax.jit(
                lambda xs: [jnp.mean(x, axis=0) for x in xs],
                out_shardings=NamedSharding(mesh, PartitionSpec()),
            )
            cached = self._proc = (first[jax.process_index()], split, mean)
        return cached

    @staticmethod
    def _local_copy(x: Any, device: Any) -> Any:
        """``x`` (replicated) on ``device``: its shard there when it has one, else a copy."""
        for s in x.addressable_shards:
            if s.device == device:
                return s.data
        return jax.device_put(x, device)

    def dist_all_reduce_mean(self, tensors: Sequence[Any]) -> list[Any]:
        mine, split, mean = self._process_mean()
        world = jax.process_count()
        # One collective per dtype over a flat buffer (each collective costs a round
        # trip between the processes, whatever its size).
        groups: dict[Any, list[int]] = {}
        for i, t in enumerate(tensors):
            groups.setdefault(t.dtype, []).append(i)
        flats = [
            jax.device_put(jnp.concatenate([jnp.ravel(tensors[i]) for i in idx]), mine)
            for idx in groups.values()
        ]
        stacked = [
            jax.make_array_from_single_device_arrays((world, *f.shape), split, [f[None]])
            for f in flats
        ]
        out: list[Any] = [None] * len(tensors)
        for idx, reduced in zip(groups.values(), mean(stacked)):
            local = reduced.addressable_data(0)
            start = 0
            for i in idx:
                t = tensors[i]
                piece = local[start:start + t.size].reshape(t.shape)
                out[i] = self._local_copy(piece, next(iter(t.devices())))
                start += t.size
        return out

    def dist_broadcast(self, tensors: Sequence[Any], root: int) -> list[Any]:
        from jax.experimental import multihost_utils

        host = multihost_utils.broadcast_one_to_all(
            [np.asarray(t) for t in tensors], is_source=jax.process_index() == root
        )
        return [
            jax.device_put(jnp.asarray(h), next(iter(t.devices()))) for h, t in zip(host, tensors)
        ]

    def dist_shutdown(self) -> None:
        jax.distributed.shutdown()

    SUPPORTS_DISTRIBUTED_TRAIN_STEP: ClassVar[bool] = True
    # Not COMPILES_DISTRIBUTED_UPDATE: after JAX's eager backward pass the compiled
    # all-reduce and update measured slower than the eager ones (docs/distributed.md).

    def compile_train_step_distributed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        # One jit over the process mesh (the first device of each process), the step
        # inside a shard_map: each process runs it on its own batch, `reduce` is XLA's
        # all-reduce across the processes (`lax.pmean`, gloo on CPU, NCCL on GPUs) — what
        # a JAX user's multi-process step is. The local arrays enter and leave as the
        # shards of global arrays (no copy): parameters replicated, the batch split.
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        firsts: dict[int, Any] = {}
        for d in jax.devices():
            firsts.setdefault(d.process_index, d)
        mine = firsts[jax.process_index()]
        mesh = Mesh(np.array([firsts[i] for i in sorted(firsts)]), ("proc",))
        replicated = NamedSharding(mesh, PartitionSpec())
        split = NamedSharding(mesh, PartitionSpec("proc"))
        n_proc = len(firsts)

        def reduce(tensors: list[Any]) -> list[Any]:
            return [jax.lax.pmean(t, "proc") for t in tensors]

        def body(values: list[Any], scalars: Any, X: Any, y: Any) -> tuple[Any, list[Any]]:
            loss, new = fn(values, scalars, X, y, reduce=reduce)
            return loss, [v if n is None else n for v, n in zip(values, new)]

        rep, part = PartitionSpec(), PartitionSpec("proc")
        jitted = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(rep, rep, part, part),
                                       out_specs=(rep, rep), check_vma=False))
        cache: list[Any] = [None, None]

        def local(x: Any) -> Any:
            return x if x.devices() == {mine} else jax.device_put(x, mine)

        def whole(x: Any) -> Any:  # a replicated global array over this process's copy
            return jax.make_array_from_single_device_arrays(x.shape, replicated, [local(x)])

        def batch(x: Any) -> Any:  # this process's rows as its shard of the global batch
            if not isinstance(x, jax.Array):
                x = jnp.asarray(x)
            shape = (x.shape[0] * n_proc, *x.shape[1:])
            return jax.make_array_from_single_device_arrays(shape, split, [local(x)])

        # The global array of each value the last step returned, by the local copy the
        # parameter kept: fed back as it is while the parameter still holds that copy.
        last: dict[int, tuple[Any, Any]] = {}
        # The last batch and labels and their global arrays: the same (immutable) JAX
        # arrays given again are not wrapped again (~10 µs each before the call, which on a CPU
        # delays the computation itself).
        fed: list[Any] = [None, None, None, None]

        def global_of(v: Any) -> Any:
            entry = last.get(id(v))
            return entry[1] if entry is not None and entry[0] is v else whole(v)

        def run(values: Sequence[Any], scalars: Sequence[float], X: Any, y: Any) -> Any:
            if scalars != cache[0]:
                cache[0], cache[1] = scalars, whole(jnp.asarray(np.asarray(scalars, np.float32)))
            if X is not fed[0]:
                fed[0:2] = (X if isinstance(X, jax.Array) else None), batch(X)
            if y is not fed[2]:
                fed[2:4] = (y if isinstance(y, jax.Array) else None), batch(y)
            loss, new = jitted([global_of(v) for v in values], cache[1], fed[1], fed[3])
            # This process's shard of each output: its own predictions, the common rest.
            mine_of = (
                loss.addressable_data(0) if isinstance(loss, jax.Array)
                else jax.tree_util.tree_map(lambda a: a.addressable_data(0), loss)
            )
            kept = [v.addressable_data(0) for v in new]
            last.clear()
            last.update((id(k), (k, g)) for k, g in zip(kept, new))
            return mine_of, kept

        return run

    SUPPORTS_SHARDED_TRAIN_STEP: ClassVar[bool] = True

    def compile_train_step_sharded(
        self, fn: Callable[..., Any], devices: Sequence[DeviceTuple]
    ) -> Callable[..., Any]:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        devs = [self.native_device(d) for d in devices]
        mesh = Mesh(np.array(devs), ("batch",))
        replicated = NamedSharding(mesh, PartitionSpec())
        split = NamedSharding(mesh, PartitionSpec("batch"))

        def full(values: list[Any], scalars: Any, X: Any, y: Any) -> tuple[Any, list[Any]]:
            loss, new = fn(values, scalars, X, y)
            return loss, [v if n is None else n for v, n in zip(values, new)]

        # One jit of forward, backward, all-reduce (inserted by XLA: the batch is
        # sharded, the parameters replicated) and update. The new values are
        # replicated; each parameter keeps the copy on the device it lives on (a shard
        # of the output: no copy).
        jitted = jax.jit(
            full, in_shardings=(replicated, replicated, split, split),
            out_shardings=(replicated, replicated),
        )
        cache: list[Any] = [None, None]
        # The replicated arrays of the last step and the device each value lives on, by
        # the id of the copy the parameters kept: unchanged since, they are fed back as
        # they are (no copy to each device).
        last: dict[int, tuple[Any, Any]] = {}
        position = {d: i for i, d in enumerate(devs)}
        on_host = all(d.platform == "cpu" for d in devs)

        def pick(x: Any, device: Any) -> Any:
            # A replicated output's shard on `device` (the mesh's order), else a copy.
            i = position.get(device)
            if i is not None:
                shard = x.addressable_data(i)
                if shard.devices() == {device}:
                    return shard
            return self._local_copy(x, device)

        def run(values: Sequence[Any], scalars: Sequence[float], X: Any, y: Any) -> Any:
            if scalars != cache[0]:
                cache[0] = scalars
                cache[1] = jax.device_put(np.asarray(scalars, np.float32), replicated)
            entries = [last.get(id(v)) for v in values]
            todo = [i for i, e in enumerate(entries) if e is None]
            if todo:
                placed = jax.device_put([values[i] for i in todo], replicated)
                for i, r in zip(todo, placed):
                    entries[i] = (r, next(iter(values[i].devices())))
            reps = [e[0] for e in entries]  # type: ignore[index]
            homes = [e[1] for e in entries]  # type: ignore[index]
            where = next(iter(X.devices()))  # the outputs go where the batch came from
            if on_host:
                # A CPU array lends its buffer to NumPy (no copy), and sharding host memory
                # is 2-3x faster than resharding a device array (device_put from an array
                # on one device): 0.17 ms against 0.43 ms for this MLP's batch of 256.
                X, y = np.asarray(X), np.asarray(y)
            Xs, ys = jax.device_put([X, y], split)
            out, new = jitted(reps, cache[1], Xs, ys)
            kept = [pick(v, h) for v, h in zip(new, homes)]
            last.clear()
            last.update((id(k), (r, h)) for k, r, h in zip(kept, new, homes))
            return jax.tree_util.tree_map(lambda o: pick(o, where), out), kept

        return run

    def device_parallel(
        self, fn: Callable[..., Any], devices: Sequence[DeviceTuple], n_diff: int
    ) -> Callable[[Sequence[Any], Sequence[Sequence[Any]]], tuple[Any, list[Any]]]:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        devs = [self.native_device(d) for d in devices]
        mesh = Mesh(np.array(devs), ("batch",))
        replicated = NamedSharding(mesh, PartitionSpec())
        split = NamedSharding(mesh, PartitionSpec("batch"))
        # Parameters replicated, batch sharded: the gradient of the whole batch's loss
        # needs an all-reduce, which XLA's SPMD partitioner inserts by itself.
        def split_fn(diff: list[Any], fixed: list[Any], *batch: Any) -> Any:
            return fn(list(diff) + list(fixed), *batch)

        step = jax.jit(jax.value_and_grad(split_fn), out_shardings=replicated)

        def run(values: Sequence[Any], shards: Sequence[Sequence[Any]]) -> tuple[Any, list[Any]]:
            batch = []
            for k in range(len(shards[0])):
                parts = [s[k] for s in shards]
                if len({p.shape for p in parts}) != 1:
                    raise ShapeError(
                        "jax shards a batch evenly over the devices; got slices of shapes "
                        f"{[tuple(p.shape) for p in parts]}. Use a batch size divisible by "
                        f"{len(devs)}."
                    )
                shape = (sum(p.shape[0] for p in parts), *parts[0].shape[1:])
                batch.append(jax.make_array_from_single_device_arrays(shape, split, parts))
            everywhere = jax.device_put(list(values), replicated)
            value, grads = step(everywhere[:n_diff], everywhere[n_diff:], *batch)
            homes = [next(iter(v.devices())) for v in values[:n_diff]]
            return (
                self._local_copy(value, devs[0]),
                [self._local_copy(g, h) for g, h in zip(grads, homes)],
            )

        return run


@jax.jit
def _nonfinite_mean(total: Any, scale: Any, grads: list[Any]) -> Any:
    """`JaxBackend.nonfinite_mean`: the core's `_nonfinite_probe` (``Σ sum(g - g)``: 0,
    or NaN when a gradient is not finite; not ``g · 0``, which XLA reduces against a
    materialized array of zeros), compiled."""
    probe: Any = 0.0
    for g in grads:
        probe = probe + jnp.sum(g - g)
    return total * scale + probe


class _FusedRule:
    """One optimizer's eager update (`JaxBackend.fused_update_values`): its ``rule``
    over every parameter inside one ``jax.jit``.

    The host scalars (`Optimizer.scalars`: the learning rate, bias corrections) and the
    batch scale are traced arguments, passed as Python floats so that they stay weakly
    typed, as in the eager rule (a bfloat16 parameter stays bfloat16): a learning-rate
    schedule does not recompile. What the rule reads from the optimizer itself
    (momentum, weight decay, ...) is a constant of the trace, keyed by
    ``optimizer.version``, which every change of those bumps (the compiled
    `train_step` relies on the same). jax.jit's own cache keys the rest: the number of
    parameters and slots, their shapes, dtypes and devices. Nothing is donated: an
    array read from ``param.data()`` before the step keeps its values (Gluon).
    """

    def __init__(self, optimizer: Any, backend: JaxBackend) -> None:
        ref = weakref.ref(optimizer)  # the backend's table holds this weakly keyed

        def update(version: int, scaled: bool, ws: list[Any], gs: list[Any],
                   slots: list[list[Any]], s: list[Any], scale: Any) -> Any:
            opt = ref()
            new_w: list[Any] = []
            new_s: list[list[Any]] = []
            for w, g, sl in zip(ws, gs, slots):
                nw, ns = opt.rule(w, g * scale if scaled else g, list(sl), s)
                # assign's dtype and shape checks, once per trace (no device: traced)
                new_w.append(backend.assign(w, nw))
                new_s.append([backend.assign(o, n) for o, n in zip(sl, ns)])
            return new_w, new_s

        self._jit = jax.jit(update, static_argnums=(0, 1))
        self._optimizer = ref
        self._plain = -1  # the version whose rule cannot be traced (Python on a scalar)

    def __call__(self, values: Sequence[Any], grads: Sequence[Any], slots: Sequence[Sequence[Any]],
                 t: int, scale: float) -> tuple[list[Any], list[list[Any]]] | None:
        opt = self._optimizer()
        version = opt.version
        if version == self._plain:
            return None
        s = [float(x) for x in opt.scalars(t)]
        try:
            return self._jit(version, scale != 1.0, list(values), list(grads),  # type: ignore[no-any-return]
                             [list(sl) for sl in slots], s, float(scale))
        except JaxBackend.COMPILE_FALLBACK_ERRORS:
            self._plain = version  # a rule with Python control flow on its scalars
            return None
        except ValueError:
            devices = {d for v in (*values, *grads) for d in v.devices()}
            if len(devices) > 1:
                return None  # parameters on several devices: one jit cannot take them
            raise


def _lax_scan(fn: Callable[..., Any], carry: Any, xs: Any, reverse: bool) -> tuple[Any, Any]:
    def body(c: Any, x: Any) -> tuple[Any, Any]:
        new = fn(c, x)
        return new, new[0]

    return jax.lax.scan(body, carry, xs, reverse=reverse)


#: The largest ``steps * batch * hidden`` for which the differentiated LSTM scan hoists
#: the input projection (`hoists_input_projection`).
HOIST_MAX_STEPS_BATCH_HIDDEN = 200_000


def hoists_input_projection(mode: str, steps: int, batch: int, features: int,
                            hidden: int) -> bool:
    """Whether the *differentiated* recurrent scan of ``mode`` computes ``x · W_ihᵀ`` of
    all time steps before the loop (`d2lcompat.nn._rnn.scan_layers`'s ``hoist``) rather
    than at each step inside it: for LSTM while ``steps * batch * hidden`` is at most
    `HOIST_MAX_STEPS_BATCH_HIDDEN`; for GRU never; for the plain RNN always. An LSTM or
    GRU forward that is not differentiated never hoists (`_rnn_scan`).

    Measured on XLA's CPU backend, one layer at T=35
    (``python -m benchmarks.jax_lstm_pieces --sweep lstm gru rnn_tanh``; the tables are
    in docs/performance.md, "Recurrent layers"): the LSTM's gradient is 8-43 % faster
    hoisted at T·N·H = 71,680-143,360 (N=16-32, H=128; the char LSTM), level with the
    loop around 286,720 (faster in one run, slower in another), and 4-24 % slower at
    573,440, where the hoisted ``(T, N, 4H)`` projection and its gradient no longer stay
    in cache; the input width did not move it (C = 28 to 256). GRU's gradient was level
    or faster with the projection in the loop at every size (up to 25 %), and LSTM's and
    GRU's forwards were 10-50 % faster so. The plain RNN was level either way at most
    sizes and faster hoisted where the input is wide (C = 128, 256)."""
    if mode == "gru":
        return False
    if mode == "lstm":
        return steps * batch * hidden <= HOIST_MAX_STEPS_BATCH_HIDDEN
    return True


#: The name under which an LSTM step tags its pre-activation gates for `LSTM_REMAT`.
_GATES_NAME = "d2lcompat_lstm_gates"

#: The differentiated LSTM scan with the projection inside the loop keeps for the backward
#: pass only the carry and the pre-activation gates ``(N, 4H)`` of each step (a
#: ``jax.checkpoint`` of the step body, `d2lcompat.nn._rnn.Remat`) and recomputes the
#: gates' sigmoids and tanh from them, not the matrix products. Measured on XLA's CPU
#: backend (docs/performance.md, "Recurrent layers"): at the benchmark's two layers (T=35,
#: N=32, C=28, H=256) it takes the gradient's scratch memory from 34.9 to 21.8 MiB, under
#: glibc's 32 MiB limit above which each call maps fresh pages (~9,000 page faults a
#: call, ~8 ms of a ~60 ms gradient), and was 8-18 % faster at every size tried with
#: the projection in the loop; with the projection hoisted it was slower (16 %, the char
#: LSTM), so only the in-loop layers use it.
LSTM_REMAT = (
    functools.partial(checkpoint_name, name=_GATES_NAME),
    functools.partial(jax.checkpoint, prevent_cse=False,
                      policy=jax.checkpoint_policies.save_only_these_names(_GATES_NAME)),
)


@functools.cache
def _rnn_scan(mode: str, num_layers: int, bidirectional: bool) -> Callable[..., Any]:
    """The recurrent stack. For LSTM and GRU a ``jax.custom_jvp``: its primal (a forward
    that is not differentiated) projects each step's input inside the loop, which XLA's
    CPU backend runs faster at every size measured; its derivative rule (``jax.grad``,
    ``jax.jvp``) differentiates the scan with the projection hoisted where
    `hoists_input_projection` says it pays, and an LSTM layer projecting in the loop
    rematerialised (`LSTM_REMAT`). Both compute the same equations
    (tests/backends/test_jax_adapter.py checks values, gradients and a ``jax.jvp``).
    The plain RNN is hoisted either way."""
    from d2lcompat.nn._rnn import scan_layers  # the core's equations (imported late: a cycle)

    def run(hoist: Any, x: Any, states: list[Any], weights: list[Any]) -> Any:
        return scan_layers(mode, x, states, weights, num_layers, bidirectional, _lax_scan, hoist,
                           LSTM_REMAT if hoist is not False else None)

    if mode not in ("lstm", "gru"):
        return functools.partial(run, True)

    @jax.custom_jvp
    def rnn(x: Any, states: list[Any], weights: list[Any]) -> Any:
        return run(False, x, states, weights)

    @rnn.defjvp
    def rnn_jvp(primals: Any, tangents: Any) -> Any:
        hoist = functools.partial(hoists_input_projection, mode)
        return jax.jvp(functools.partial(run, hoist), primals, tangents)

    return rnn


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _rnn_jit(mode: str, x: Any, states: list[Any], weights: list[Any], num_layers: int,
             bidirectional: bool) -> tuple[Any, list[Any]]:
    out, finals = _rnn_scan(mode, num_layers, bidirectional)(x, states, weights)
    return out, list(finals)
