"""`Parameter` and `Constant`: where shapes, dtypes, devices and deferred init are decided."""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _device
from . import init as _init
from ._dtypes import canonical, numpy_dtype
from ._errors import DeferredInitializationError, DeviceError, DTypeError, ShapeError
from ._registry import active

if TYPE_CHECKING:
    from .nn._block import Block

__all__ = ["Constant", "Parameter"]

_GRAD_REQS = ("write", "add", "null")
#: Held while a block's first call creates its deferred parameters, and while a
#: hybridized block compiles and runs its first trace: several threads calling a fresh
#: network at once create (and compile) everything once and all see the same
#: parameters. Re-entrant (a block's first call runs its children's first calls).
#: Only first calls take it: every call checks a plain flag first.
FIRST_CALL_LOCK = threading.RLock()
_DEFAULT_INIT = _init.Uniform(0.07)


def _shape_tuple(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int):
        return (shape,)
    try:
        return tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        from ._errors import ShapeError

        raise ShapeError(
            f"A parameter shape is a tuple of ints (0 for unknown), got {shape!r}."
        ) from None


class Parameter:
    """A named, trainable tensor owned by a block.

    Parameters
    ----------
    shape : tuple of int
        ``0`` marks a dimension still unknown (filled in at the first forward pass).
    dtype : str
        ``'float32'`` by default.
    init : Initializer, str, callable or None
        The parameter's own initializer; it wins over the one passed to
        ``block.initialize(init)``.
    grad_req : {'write', 'add', 'null'}
        How `d2lcompat.autograd.grad` stores gradients.

    Examples
    --------
    >>> import d2lcompat
    >>> p = d2lcompat.Parameter((2, 3), init="ones"); p.initialize()
    >>> p
    Parameter (shape=(2, 3), dtype=float32)
    >>> d2lcompat.ops.to_numpy(p.data()).sum()
    np.float32(6.0)
    """

    def __init__(
        self,
        shape: Any = (),
        dtype: Any = "float32",
        init: _init.InitSpec = None,
        grad_req: str = "write",
    ) -> None:
        self._shape = _shape_tuple(shape)
        self._dtype = canonical(dtype)
        self.init = _init.create(init)
        self.grad_req = grad_req
        self._var: Any = None  # the native variable; None until initialized
        self._grad: Any = None
        self._zeroed = False  # zero_grad() was called: grad() reads zeros, not None
        # (initializer, device) while waiting for the shape; None otherwise
        self._deferred: tuple[Any, Any] | None = None
        self._owner: weakref.ref[Block] | None = None
        self._local_name = ""

    # ---------------------------------------------------------------- naming
    @property
    def name(self) -> str:
        """The structural name from the outermost block that holds it (``0.weight``).

        A block is named after the first parent it was registered in, so a shared
        parameter keeps its first name.
        """
        owner = self._owner() if self._owner is not None else None
        if owner is None:
            return self._local_name
        prefix = owner._path()
        return f"{prefix}.{self._local_name}" if prefix else self._local_name

    def _attach(self, owner: Block, local_name: str) -> None:
        if self._owner is None or self._owner() is None:
            self._owner = weakref.ref(owner)
            self._local_name = local_name

    # ------------------------------------------------------------ attributes
    @property
    def shape(self) -> tuple[int, ...]:
        """The shape; ``0`` marks a dimension not known yet."""
        return self._shape

    @shape.setter
    def shape(self, new_shape: Any) -> None:
        new = _shape_tuple(new_shape)
        old = self._shape
        fits = len(new) == len(old) and all(o in (0, n) for o, n in zip(old, new))
        if not fits:
            raise ShapeError(
                f"Parameter '{self.name}' has shape {old}; cannot set it to {new}. "
                "Only dimensions marked 0 (unknown) may be filled in."
            )
        if self._var is not None and new != old:
            raise ShapeError(f"Parameter '{self.name}' is already created with shape {old}.")
        self._shape = new

    @property
    def dtype(self) -> str:
        """The canonical dtype name (``'float32'``)."""
        return self._dtype

    @property
    def grad_req(self) -> str:
        """``'write'`` (overwrite), ``'add'`` (accumulate) or ``'null'`` (no gradient)."""
        return self._grad_req

    @grad_req.setter
    def grad_req(self, req: str) -> None:
        if req not in _GRAD_REQS:
            raise ValueError(f"grad_req must be one of {_GRAD_REQS}, not {req!r}")
        if getattr(self, "_grad_req", None) == "null" and req != "null":
            self._zeroed = True  # Gluon allocates a zero gradient: grad() reads zeros
        self._grad_req = req
        if req == "null":
            self._grad = None

    @property
    def is_initialized(self) -> bool:
        """Whether the parameter's values exist (False while deferred)."""
        return self._var is not None

    @property
    def _known(self) -> bool:
        return all(s > 0 for s in self._shape)

    # -------------------------------------------------------- initialization
    def initialize(
        self,
        init: _init.InitSpec = None,
        device: Any = None,
        force_reinit: bool = False,
        ctx: Any = None,
    ) -> None:
        """Create the values with ``init`` (or the parameter's own init, or ``Uniform(0.07)``).
        ``ctx=`` is Gluon's name for ``device=``.

        With an unknown dimension in the shape, only *schedules* the
        initialization; the first forward pass finishes it.

        Examples
        --------
        >>> import d2lcompat
        >>> p = d2lcompat.Parameter((3, 0)); p.initialize(d2lcompat.init.One())
        >>> p.is_initialized
        False
        """
        from ._gluon import ctx_alias

        self._initialize(_init.create(init), None, ctx_alias(device, ctx, "initialize"), force_reinit)

    def _initialize(self, init: Any, default: Any, device: Any, force_reinit: bool) -> bool:
        """Returns False when the parameter was already initialized and left alone."""
        if self.is_initialized and not force_reinit:
            return False
        chosen = init or self.init or default or _DEFAULT_INIT
        dev = _device.resolve(device)
        if not self._known:
            self._deferred = (chosen, dev)
            return True
        self._create(_init.fill(chosen, self.name, self._shape, numpy_dtype(self._dtype)), dev)
        return True

    def _create(self, host: np.ndarray, dev: Any) -> None:
        b = active()
        trainable = self._grad_req != "null"
        if self._var is not None and b.SUPPORTS_MUTABLE_VARIABLES and dev is None:
            # Re-initialization keeps the native variable (and so every native optimizer's
            # reference to it) and only writes new values.
            dev = b.device_of(self._var)
            self._var = b.assign(self._var, b.from_numpy(host, self._dtype, dev))
        else:
            self._var = b.new_variable(host, self._dtype, dev, trainable)
        self._deferred = None
        self._grad = None

    def _finish_deferred(self) -> None:
        """Create a scheduled parameter once its shape is known (called by blocks)."""
        if not self._known:
            raise DeferredInitializationError(
                f"Parameter '{self.name}' still has an unknown shape {self._shape} after shape "
                "inference. Give the layer its input size (e.g. in_units=...), or implement "
                "infer_shape(self, *args) on the block that owns it."
            )
        # Never initialized: the defaults, on the default device (D2LCOMPAT_DEVICE).
        init, dev = (
            self._deferred if self._deferred is not None else (self.init, _device.resolve(None))
        )
        self._create(
            _init.fill(init or _DEFAULT_INIT, self.name, self._shape, numpy_dtype(self._dtype)),
            dev,
        )

    # --------------------------------------------------------------- access
    def data(self, device: Any = None, ctx: Any = None) -> Any:
        """The values as a native tensor (the very tensor the forward pass uses).

        Examples
        --------
        >>> import d2lcompat
        >>> p = d2lcompat.Parameter((2,), init="zeros"); p.initialize()
        >>> d2lcompat.ops.shape(p.data())
        (2,)
        """
        if ctx is not None:
            from ._gluon import ctx_alias

            device = ctx_alias(device, ctx, "data")
        var = self._var
        # Not `if var is None:`, which Python 3.11 compiles to a jump on the tensor itself,
        # a graph break for Paddle's SOT; a bool is a constant to every tracer.
        missing = var is None
        if missing:
            self._raise_uninitialized()
        # A traced value (inside a hybridized forward under jax.jit) has no device yet.
        if device is not None and not active().is_traced(var):
            want = _device.Device.parse(device)
            have = _device.device_of(var)
            if want != have:
                raise DeviceError(
                    f"Parameter '{self.name}' lives on {have!r}, not {want!r}. "
                    f"Move the network with net.to({want!r}) or use data({have!r})."
                )
        return active().read(var)

    def _raise_uninitialized(self) -> None:
        if self._deferred is not None or not self._known:
            raise DeferredInitializationError(
                f"Parameter '{self.name}' has not been initialized yet: its shape "
                f"{self._shape} has unknown (0) dimensions, which the first forward pass "
                "infers. Run the network once on an input (net(X)) before reading it."
            )
        raise DeferredInitializationError(
            f"Parameter '{self.name}' has not been initialized. Call net.initialize() "
            "(or run the network once, which initializes it with the defaults)."
        )

    def native(self) -> Any:
        """The framework's own variable, the object the forward pass uses
        (torch.nn.Parameter, tf.Variable, paddle Parameter, jax.Array).

        Examples
        --------
        >>> import d2lcompat
        >>> p = d2lcompat.Parameter((2,), init="zeros"); p.initialize()
        >>> p.native() is not None
        True
        """
        if self._var is None:
            self._raise_uninitialized()
        return self._var

    def set_data(self, value: Any) -> None:
        """Replace the values. ``value`` is a native tensor, a NumPy array or a list; its
        shape must match (a deferred parameter takes it) and its dtype must be castable
        without changing kind (float to float). The variable object stays the same, so
        sharing and native optimizers are not broken.

        Examples
        --------
        >>> import d2lcompat
        >>> p = d2lcompat.Parameter((2,), init="zeros"); p.initialize()
        >>> p.set_data([1.0, 2.0]); d2lcompat.ops.to_numpy(p.data()).tolist()
        [1.0, 2.0]
        """
        b = active()
        tensor = self._coerce(value)
        vshape = b.shape(tensor)
        if self._var is None:
            if not self._known:
                self.shape = vshape  # raises ShapeError when it does not fit
            if vshape != self._shape:
                raise ShapeError(
                    f"Parameter '{self.name}' has shape {self._shape}; set_data got {vshape}."
                )
            dev = self._deferred[1] if self._deferred is not None else _device.resolve(None)
            self._var = b.new_variable(b.to_numpy(tensor), self._dtype, dev, self._grad_req != "null")
            self._deferred = None
            return
        if vshape != self._shape:
            raise ShapeError(
                f"Parameter '{self.name}' has shape {self._shape}; set_data got shape {vshape}. "
                "Pass a value of the parameter's shape."
            )
        dev = b.device_of(self._var)
        if b.device_of(tensor) != dev:
            tensor = b.move(tensor, dev, copy=False)
        self._var = b.assign(self._var, tensor)

    def _coerce(self, value: Any) -> Any:
        """``value`` as a native tensor of this parameter's dtype, checking the dtype kind."""
        b = active()
        if b.is_tensor(value):
            got = b.dtype(value)
            if got != self._dtype:
                if not _same_kind(got, self._dtype):
                    raise DTypeError(
                        f"Parameter '{self.name}' is {self._dtype}; set_data got {got}. "
                        f"Cast the value first (ops.cast(x, '{self._dtype}'))."
                    )
                value = b.cast(value, self._dtype)
            return value
        arr = np.asarray(value)
        if arr.dtype != object and not _same_kind(_dtype_name(arr.dtype), self._dtype):
            raise DTypeError(
                f"Parameter '{self.name}' is {self._dtype}; set_data got {arr.dtype} values."
            )
        return b.from_numpy(arr.astype(numpy_dtype(self._dtype)), self._dtype, None)

    # ------------------------------------------------------------- gradients
    def grad(self, device: Any = None) -> Any:
        """The gradient from the last `d2lcompat.autograd.grad` (or the framework's own
        backward pass); None before any; zeros of the parameter's shape after
        `zero_grad` (Gluon's), until the next gradient.

        Examples
        --------
        >>> import d2lcompat
        >>> p = d2lcompat.Parameter((2,), init="zeros"); p.initialize()
        >>> p.grad() is None
        True
        >>> p.zero_grad(); d2lcompat.ops.to_numpy(p.grad()).tolist()
        [0.0, 0.0]
        """
        g = self._current_grad()
        if g is None and self._zeroed and self._var is not None and self._grad_req != "null":
            b = active()
            host = np.zeros(self._shape, numpy_dtype(self._dtype))
            return b.from_numpy(host, self._dtype, b.device_of(self._var))
        return g

    def _current_grad(self) -> Any:
        """The gradient computed since the last `zero_grad`, or None (what optimizers
        read: a zeroed gradient is no gradient to them)."""
        if self._grad is not None:
            return self._grad
        if self._var is None:
            return None
        return active().native_grad(self._var)

    def zero_grad(self) -> None:
        """Forget the stored gradient: ``grad()`` reads zeros of the parameter's shape
        afterwards (Gluon's), and optimizers see no gradient until the next one."""
        self._grad = None
        self._zeroed = True
        if self._var is not None:
            active().clear_native_grad(self._var)

    # ---------------------------------------------------------------- device
    def list_devices(self) -> list[_device.Device]:
        """The devices holding this parameter's values.

        Examples
        --------
        >>> import d2lcompat
        >>> p = d2lcompat.Parameter((2,), init="zeros"); p.initialize()
        >>> p.list_devices() == [d2lcompat.default_device()]
        True
        """
        if self._var is None:
            if self._deferred is not None and self._deferred[1] is not None:
                return [_device.Device(*self._deferred[1])]
            return []
        return [_device.device_of(self._var)]

    def list_ctx(self) -> list[_device.Device]:
        """Gluon's name for `list_devices`."""
        return self.list_devices()

    def reset_ctx(self, ctx: Any) -> None:
        """Move the values to ``ctx`` (Gluon's ``param.reset_ctx``; a deferred parameter
        is created there).

        Examples
        --------
        >>> import d2lcompat
        >>> p = d2lcompat.Parameter((2,), init="zeros"); p.initialize(); p.reset_ctx("cpu")
        >>> p.list_ctx()
        [cpu(0)]
        """
        dev = _device.resolve(ctx)
        assert dev is not None
        self._move_to(dev)

    reset_device = reset_ctx

    def _move_to(self, dev: tuple[str, int]) -> None:
        b = active()
        if self._var is None:
            if self._deferred is not None:
                self._deferred = (self._deferred[0], dev)
            return
        if b.device_of(self._var) == dev:
            return
        host = b.to_numpy(self._var)
        self._var = b.new_variable(host, self._dtype, dev, self._grad_req != "null")
        self._grad = None

    def __repr__(self) -> str:
        name = self.name
        label = f"Parameter {name} " if name else "Parameter "
        return f"{label}(shape={self._shape}, dtype={self._dtype})"


def _dtype_name(dt: np.dtype[Any]) -> str:
    try:
        return canonical(dt)
    except DTypeError:
        return str(dt)


def _same_kind(a: str, b: str) -> bool:
    def kind(n: str) -> str:
        if n in ("float16", "bfloat16", "float32", "float64"):
            return "f"
        if n == "bool":
            return "b"
        return "i"

    # ints may go into floats (set_data([1, 2]) on a float parameter); floats never into ints
    ka, kb = kind(a), kind(b)
    return ka == kb or (ka == "i" and kb == "f")


class Constant(Parameter):
    """A parameter that training never changes (``grad_req='null'``): Gluon's
    ``get_constant``, the chapter's ``rand_weight``.

    It is created at once from ``value``, collected, saved and loaded like any
    parameter, and moves with ``net.to(device)``.

    Examples
    --------
    >>> import d2lcompat
    >>> c = d2lcompat.Constant([[1.0, 2.0]])
    >>> c.grad_req, c.shape
    ('null', (1, 2))
    """

    def __init__(self, value: Any, dtype: Any = None) -> None:
        b = active()
        if b.is_tensor(value):
            host = b.to_numpy(value)
        else:
            host = np.asarray(value)
        if dtype is None:
            # Gluon's rule (Constant converts with mx.np.array): Python numbers, lists and
            # NumPy arrays become float32; a tensor keeps its dtype (floats as float32).
            if not b.is_tensor(value) or host.dtype.kind == "f" or host.dtype == object:
                dtype = "float32"
            else:
                dtype = host.dtype
        super().__init__(host.shape, dtype, init=_init.Constant(host), grad_req="null")
        self._value = host.astype(numpy_dtype(self._dtype))
        self._create(self._value, _device.resolve(None))

    @property
    def grad_req(self) -> str:
        return "null"

    @grad_req.setter
    def grad_req(self, req: str) -> None:
        if req != "null":
            raise ValueError("A Constant's grad_req is always 'null'.")
        self._grad_req = "null"

    def _initialize(self, init: Any, default: Any, device: Any, force_reinit: bool) -> bool:
        # A constant already holds its value: initialize() only places it (and resets it
        # to the value with force_reinit); it never warns.
        dev = _device.resolve(device)
        if force_reinit:
            self._var = active().new_variable(self._value, self._dtype, dev, False)
        elif dev is not None:
            self._move_to(dev)
        return True
