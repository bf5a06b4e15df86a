"""The backend contract: the fixed list of primitives an adapter implements.

Semantics (naming, registration, deferred initialization, sharing,
validation, file format, device rules, randomness) live in the core. An
adapter answers only *how* its framework does each primitive below. Anything
a framework truly cannot do is declared with a ``SUPPORTS_*`` flag and raises
`UnsupportedError` naming the framework.

Conventions every primitive follows
-----------------------------------
* **dtype** is always a canonical string from `DTYPES` (``"float32"``),
  never a framework object; ``None`` means "the framework's default for the
  data" only where stated.
* **device** is always a ``(kind, index)`` tuple, ``kind`` in ``{"cpu", "gpu"}``,
  or ``None`` for "the framework's default placement". The core validates
  that the device exists before calling the adapter.
* **shape** is always a tuple of Python ints.
* Tensors in and out are the framework's native tensors.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

import numpy as np

__all__ = ["DTYPES", "OP_NAMES", "Backend", "CapturedVariables", "DeviceTuple", "Ops"]

DeviceTuple = tuple[str, int]

#: The dtypes d2lcompat knows, by canonical name.
DTYPES: tuple[str, ...] = (
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool",
)

#: The ops every adapter's `Ops` must provide, with the exact signatures
#: documented on `Ops`. ``d2lcompat.ops`` binds these names directly to the
#: adapter's functions, so calling an op costs one Python call and no more.
OP_NAMES: tuple[str, ...] = (
    # math
    "matmul",
    "dot",
    "add",
    "subtract",
    "multiply",
    "divide",
    "exp",
    "log",
    "abs",
    "sqrt",
    "square",
    "maximum",
    "minimum",
    "where",
    "equal",
    "not_equal",
    "less",
    "less_equal",
    "greater",
    "greater_equal",
    # reductions
    "sum",
    "mean",
    "max",
    "min",
    "norm",
    # shape
    "reshape",
    "transpose",
    "concat",
    "stack",
    "split",
    "expand_dims",
    "squeeze",
    # nn
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "linear",
    # functional writes
    "index_update",
)


class Ops:
    """Namespace of native ops. An adapter subclasses it and fills every name of `OP_NAMES`.

    Signatures (NumPy semantics unless said otherwise; ``axis`` may be an int,
    a tuple of ints or ``None`` for all axes):

    * ``matmul(a, b)``; ``dot(a, b)`` (1-D·1-D is the inner product, otherwise ``matmul``)
    * ``add, subtract, multiply, divide, maximum, minimum(a, b)`` with broadcasting
    * ``exp, log, abs, sqrt, square(x)``
    * ``where(cond, x, y)``; ``equal, not_equal, less, less_equal, greater, greater_equal(a, b)``
      return boolean tensors
    * ``sum, mean, max, min(x, axis=None, keepdims=False)``;
      ``norm(x, axis=None, keepdims=False)`` is the L2 (Frobenius) norm
    * ``reshape(x, shape)``, ``transpose(x, axes=None)`` (reverse when None),
      ``concat(xs, axis=0)``, ``stack(xs, axis=0)``, ``expand_dims(x, axis)``,
      ``squeeze(x, axis=None)``
    * ``split(x, indices_or_sections, axis=0)``: a list of tensors (NumPy's ``split``).
      The core checks and normalizes the arguments first (`d2lcompat._semantics.split_args`):
      the adapter receives ``axis`` in range and either an int ``N >= 1`` that divides
      ``x.shape[axis]`` (or that dimension is unknown while tracing) — ``N`` equal parts —
      or a tuple of non-decreasing indices in ``[0, x.shape[axis]]`` — the parts
      ``x[..., :i0]``, ``x[..., i0:i1]``, ..., ``x[..., ik:]`` along ``axis``
      (`d2lcompat._semantics.split_sizes` gives their sizes). Differentiable.
    * ``relu, sigmoid, tanh(x)``, ``softmax, log_softmax(x, axis=-1)``
    * ``linear(x, w, b)``: ``x @ w.T + b`` over the last axis of ``x``, ``w`` of shape
      ``(out, in)``, ``b`` of shape ``(out,)`` or ``None``. The hot path of ``nn.Dense``.
    * ``index_update(x, index, value)``: a new tensor equal to ``x`` with ``x[index] =
      value`` applied (NumPy indexing: ints, slices, ``...``, ``None``, integer arrays;
      ``value`` broadcasts to ``x[index]`` and is cast to ``x``'s dtype); ``x`` is not
      changed. Differentiable in ``x`` and ``value`` where the framework allows.
      `d2lcompat._semantics.index_positions` gives the flat positions for a scatter.

    Optional fused ops (absent unless an adapter defines them; the core falls back to
    the unfused ops): ``linear_<activation>(x, w, b)``, e.g. ``linear_relu``, is
    ``activation(linear(x, w, b))`` in one dispatch; ``nn.Dense`` uses it when present.
    It must equal the unfused ops, gradient included (relu's gradient at 0 is 0).
    """


class CapturedVariables:
    """A compiled ``fn(values, *args)`` that captures ``values`` when they are the
    framework's variables: a helper for `Backend.compile` of frameworks whose variables
    are mutable (TensorFlow, Paddle).

    Passing variables as arguments costs tf.function and paddle.jit.to_static about a
    fifth of a small compiled forward (each call binds, flattens and guards them). A
    variable captured by the graph is no constant: it is read when the graph runs, so
    ``set_data`` and optimizer steps are seen. While ``values`` are the very variables
    of the last call, the capturing function runs; other values (the watched tensors of
    ``autograd.grad``) go through the general function, compiled with ``values`` as
    inputs.

    Examples
    --------
    >>> compiled = CapturedVariables(lambda vs, x: vs[0] * x, lambda f: f, lambda v: True)
    >>> compiled([2], 3), compiled([2], 4)
    (6, 8)
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        compile_fn: Callable[[Callable[..., Any]], Callable[..., Any]],
        is_variable: Callable[[Any], bool],
    ) -> None:
        self._fn = fn
        self._compile = compile_fn
        self._is_variable = is_variable
        self._general: Callable[..., Any] | None = None
        self._bound: tuple[Any, ...] = ()
        self._fast: Callable[..., Any] | None = None

    def __call__(self, values: Sequence[Any], *args: Any) -> Any:
        fast, bound = self._fast, self._bound
        if fast is not None and len(values) == len(bound):
            if all(a is b for a, b in zip(values, bound)):
                return fast(*args)
        if values and all(self._is_variable(v) for v in values):
            captured = list(values)
            fn = self._fn

            def with_captured(*inputs: Any) -> Any:
                return fn(captured, *inputs)

            with_captured.__name__ = getattr(fn, "__name__", "with_captured")
            self._bound = tuple(captured)
            self._fast = self._compile(with_captured)
            return self._fast(*args)
        if self._general is None:
            self._general = self._compile(self._fn)
        return self._general(values, *args)


class Backend(abc.ABC):
    """One framework behind the d2lcompat API. An adapter is one final subclass.

    Examples
    --------
    A sketch of a third-party adapter (see docs/backend-authors.md)::

        class MyBackend(Backend):
            name = "mine"
            SUPPORTS_MUTABLE_VARIABLES = True
            ...
    """

    #: The backend's name, as in ``D2LCOMPAT_BACKEND``.
    name: ClassVar[str]
    #: Parameters are mutable framework variables (False: values are replaced, as in JAX).
    SUPPORTS_MUTABLE_VARIABLES: ClassVar[bool] = True
    #: ``D2LCOMPAT_CPU_DEVICES=N`` gives N distinct CPU devices.
    SUPPORTS_CPU_DEVICES: ClassVar[bool] = False
    #: The exceptions the framework raises when one op gets tensors on two devices
    #: (torch: ``RuntimeError``; JAX: ``ValueError`` for committed arrays). In a process
    #: with more than one device the core wraps every op so that such an error becomes
    #: a `DeviceError` naming both devices (`d2lcompat._device.guard_ops`). Leave it
    #: empty when the adapter checks devices itself, as TensorFlow's must: it copies
    #: across devices silently instead of raising.
    DEVICE_MISMATCH_ERRORS: ClassVar[tuple[type[Exception], ...]] = ()
    #: The adapter can compile a forward pass (``hybridize``).
    SUPPORTS_COMPILE: ClassVar[bool] = True
    #: A hybridized net's `d2lcompat.train_step` runs as one compiled function of the
    #: framework (`compile_train_step`). False where compiling the whole step does not
    #: pay (torch and paddle on CPU, see docs/training.md): the step then is the eager
    #: one — autograd plus the adapter's fused optimizer kernels (`fused_update`).
    COMPILES_TRAIN_STEP: ClassVar[bool] = False
    #: The dtypes this framework has.
    SUPPORTED_DTYPES: ClassVar[frozenset[str]] = frozenset(DTYPES)

    #: The op namespace (an `Ops` instance).
    ops: Ops

    # ------------------------------------------------------------------ meta
    @property
    @abc.abstractmethod
    def version(self) -> str:
        """The framework's version string."""

    def configure(self, cpu_devices: int) -> None:  # noqa: B027 - optional hook
        """Called once, before anything else, with ``D2LCOMPAT_CPU_DEVICES`` (1 if unset).

        Adapters that support several CPU devices set them up here; the core
        already set any environment variable the framework reads at import.
        """

    # --------------------------------------------------------------- devices
    @abc.abstractmethod
    def device_count(self, kind: str) -> int:
        """How many devices of ``kind`` (``"cpu"`` or ``"gpu"``) exist (>= 1 for cpu)."""

    @abc.abstractmethod
    def native_device(self, device: DeviceTuple) -> Any:
        """The framework's own device object for ``device`` (torch.device, a TF device
        string, a paddle Place, a jax Device)."""

    @abc.abstractmethod
    def device_of(self, x: Any) -> DeviceTuple:
        """Where the tensor ``x`` lives."""

    @abc.abstractmethod
    def move(self, x: Any, device: DeviceTuple, copy: bool) -> Any:
        """``x`` on ``device``. With ``copy=False`` return ``x`` itself when it is already
        there; with ``copy=True`` always return a new tensor."""

    # --------------------------------------------------------------- tensors
    @abc.abstractmethod
    def is_tensor(self, x: Any) -> bool:
        """Whether ``x`` is a native tensor (or variable) of this framework."""

    @abc.abstractmethod
    def from_numpy(self, array: np.ndarray, dtype: str | None, device: DeviceTuple | None) -> Any:
        """A native tensor holding ``array`` (cast to ``dtype`` when given) on ``device``."""

    @abc.abstractmethod
    def to_numpy(self, x: Any) -> np.ndarray:
        """A host NumPy copy of ``x``'s values that shares no memory with ``x`` (bfloat16 may
        come back as ml_dtypes); `host_view` is the zero-copy path."""

    def to_numpy_copy(self, x: Any) -> np.ndarray:
        """``x``'s values as a host NumPy array that shares no memory with ``x`` and is
        writable (what ``ops.to_numpy`` returns). The default returns `to_numpy`'s result
        when it owns its (writable) memory and copies it otherwise, a guard against an
        adapter whose `to_numpy` lends memory."""
        arr = self.to_numpy(x)
        if arr.flags.owndata and arr.flags.writeable:
            return arr
        return np.array(arr, copy=True)

    def item(self, x: Any) -> Any:
        """The Python scalar in the one-element tensor ``x`` (``ops.item``). JAX
        overrides it to read the concrete value of a tracer under eager autodiff."""
        return self.to_numpy(x).item()

    @abc.abstractmethod
    def shape(self, x: Any) -> tuple[int, ...]:
        """``x``'s shape as a tuple of ints."""

    @abc.abstractmethod
    def dtype(self, x: Any) -> str:
        """``x``'s dtype as a canonical string."""

    @abc.abstractmethod
    def cast(self, x: Any, dtype: str) -> Any:
        """``x`` converted to ``dtype``."""

    @abc.abstractmethod
    def full(self, shape: tuple[int, ...], value: Any, dtype: str, device: DeviceTuple | None) -> Any:
        """A tensor of ``shape`` filled with ``value``."""

    @abc.abstractmethod
    def arange(
        self, start: Any, stop: Any, step: Any, dtype: str | None, device: DeviceTuple | None
    ) -> Any:
        """``numpy.arange`` semantics; ``dtype=None`` infers int64 or float32."""

    # ------------------------------------------------------------- variables
    @abc.abstractmethod
    def new_variable(
        self, value: np.ndarray, dtype: str, device: DeviceTuple | None, trainable: bool
    ) -> Any:
        """A native variable (torch.nn.Parameter, tf.Variable, paddle Parameter, jax.Array)
        holding ``value`` as ``dtype`` on ``device``. ``trainable=False`` for constants."""

    @abc.abstractmethod
    def read(self, var: Any) -> Any:
        """The tensor the forward pass uses for ``var`` (for most frameworks ``var`` itself).

        ``var`` may also be a plain tensor that `functional_call` or `autograd.grad`
        substituted for the variable (a tracer under JAX, a watched tensor under
        TensorFlow): return it unchanged then. This is the hot path of every forward
        pass: keep it one attribute access or less."""

    @abc.abstractmethod
    def assign(self, var: Any, value: Any) -> Any:
        """Write ``value`` (a native tensor of the right shape, dtype and device) into
        ``var`` without breaking the graph identity of ``var``; return the object to keep
        (``var`` itself for mutable frameworks, the new array for JAX)."""

    def host_view(self, x: Any) -> np.ndarray:
        """``x``'s values on the host, without a copy where the framework can lend its
        memory (a CPU tensor); read-only is fine. Used to write checkpoints straight
        from the tensors. Default: `to_numpy` (a copy)."""
        return self.to_numpy(x)

    def assign_host(self, var: Any, array: np.ndarray, dtype: str) -> Any:
        """Copy the host ``array`` (already ``dtype``'s values, the variable's shape) into
        ``var`` with one copy (host to device once); return the object to keep, as
        `assign`. Loads call it once per tensor with a view into a memory map, so it
        must not keep a reference to ``array``. Default: `from_numpy` then `assign`."""
        return self.assign(var, self.from_numpy(array, dtype, self.device_of(var)))

    def fill_variable(self, var: Any, fill: Callable[[np.ndarray], None]) -> Any | None:
        """Let ``fill(buffer)`` write straight into ``var``'s own host memory (a
        writable, C-contiguous NumPy view of it); return the object to keep, as
        `assign`, or None when the framework cannot lend that memory (then the core
        uses `assign_host`). Loads use it to read a file into a CPU parameter with no
        copy in between. Default: None."""
        return None

    def replace_host(self, var: Any, array: np.ndarray, dtype: str) -> tuple[Any, Any] | None:
        """`assign_host`, keeping the old values alive *without a copy*: ``var`` takes
        ``array``'s values in a buffer of its own while its previous buffer is handed
        back, untouched, as ``undo``. Returns ``(object to keep, undo)``, and
        `restore_buffer` (``var``, ``undo``) puts the old values back; None where the
        framework cannot (then the load copies the old values to its undo file). Loads
        of models that fit in memory use it (`d2lcompat._io.source.KEEP_OLD_BYTES`):
        torch and Paddle swap a freshly filled buffer in, TensorFlow keeps a read of
        the variable (its assign copies on write). Must change nothing when it raises.
        Default: None."""
        return None

    def restore_buffer(self, var: Any, undo: Any) -> Any:
        """Put back the values `replace_host` kept in ``undo``;
        return the object to keep."""
        return self.assign(var, undo)

    def native_grad(self, var: Any) -> Any | None:
        """The gradient the framework itself accumulated on ``var`` (``.grad``), or None."""
        return None

    def clear_native_grad(self, var: Any) -> None:  # noqa: B027 - optional hook
        """Forget a gradient the framework accumulated on ``var`` (torch/paddle ``.grad``)."""

    # -------------------------------------------------------------- autodiff
    @abc.abstractmethod
    def value_and_grad(
        self, fn: Callable[[Sequence[Any]], Any], values: Sequence[Any]
    ) -> tuple[Any, list[Any]]:
        """Evaluate ``fn(values)`` (a scalar tensor) and its gradient with respect to each of
        ``values``. ``fn`` is pure in ``values``: the core substitutes them for the
        parameters' stored values while ``fn`` runs."""

    def value_and_grad_aux(
        self, fn: Callable[[Sequence[Any]], tuple[Any, Any]], values: Sequence[Any]
    ) -> tuple[Any, list[Any], Any]:
        """Like `value_and_grad` for ``fn(values) -> (scalar, aux)``; returns
        ``(scalar, grads, aux)`` with ``aux`` concrete (not traced). ``aux`` carries
        the running statistics a forward pass updated (`d2lcompat._state`).

        The default suits frameworks whose autodiff runs ``fn`` eagerly (torch,
        TensorFlow, Paddle): ``aux`` is already concrete. JAX overrides it with
        ``has_aux=True``."""
        box: list[Any] = []

        def scalar(vs: Sequence[Any]) -> Any:
            out, aux = fn(vs)
            box.append(aux)
            return out

        value, grads = self.value_and_grad(scalar, values)
        return value, grads, box[-1]

    def value_and_grad_step(
        self,
        fn: Callable[[Sequence[Any]], tuple[Any, Any]],
        values: Sequence[Any],
        held: Sequence[Any],
        inputs: Sequence[Any],
        plan: dict[str, Any],
    ) -> tuple[Any, list[Any], Any]:
        """`value_and_grad_aux` for the eager training step (`d2lcompat.train_step`),
        which knows more than a closure given to `autograd.grad` does: ``held`` are the
        variables of the net's parameters that are not differentiated (frozen, or not
        the trainer's), ``inputs`` the batch, and ``plan`` a dict the step keeps per
        structure (its parameters and their ``grad_req``) for the adapter's own
        once-per-structure decisions. The result must be `value_and_grad_aux`'s, with
        no other side effect. The default is `value_and_grad_aux`; Paddle uses
        ``loss.backward()`` where that touches no tensor but the step's own leaves."""
        return self.value_and_grad_aux(fn, values)

    def stop_gradient(self, x: Any) -> Any:
        """``x`` cut out of the gradient graph."""
        return x

    # ------------------------------------------------------- layer primitives
    # One fused primitive per layer family (conv, pool, embedding lookup). The core
    # (d2lcompat/nn/_conv.py, _pool.py, _embedding.py) validates shapes and computes the
    # output sizes before calling them; an adapter only runs its framework's kernel.

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
        """Cross-correlation of ``x`` (``(N, C, *spatial)``, NCHW, 1 or 2 spatial axes)
        with ``w`` (``(O, C // groups, *kernel)``), plus ``b`` (``(O,)``) when given.
        ``padding`` is the number of zeros added on *both* sides of each spatial axis.
        A framework that prefers NHWC transposes inside, invisibly."""
        from ._errors import UnsupportedError

        raise UnsupportedError(f"{self.name} does not support convolution")

    def conv_activation(
        self,
        x: Any,
        w: Any,
        b: Any | None,
        strides: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
        activation: Callable[[Any], Any],
    ) -> Any:
        """`conv` followed by ``activation``, an *elementwise* function of one tensor
        (what ``Conv2D(activation=...)`` runs). The default is exactly that; an adapter
        whose kernels use another layout may apply ``activation`` before converting the
        result back to NCHW (TensorFlow: in NHWC, so that a following conv or pool reads
        the NHWC result and a chain of them transposes only at its ends)."""
        return activation(self.conv(x, w, b, strides, padding, dilation, groups))

    def pool(
        self,
        x: Any,
        kind: str,
        window: tuple[int, ...],
        strides: tuple[int, ...],
        padding: tuple[int, ...],
    ) -> Any:
        """``kind`` in ``{"max", "avg"}`` pooling of ``x`` (``(N, C, *spatial)``, 1 or 2
        spatial axes). Padding is on both sides: ``-inf`` for max; zeros that *count* in
        the average (Gluon's and PyTorch's default, ``count_include_pad=True``)."""
        from ._errors import UnsupportedError

        raise UnsupportedError(f"{self.name} does not support pooling")

    # Layout chains. Where the framework's conv and pool kernels take channels-last
    # (NHWC) tensors, `nn.Sequential` runs each run of consecutive 2-D conv / pool /
    # BatchNorm / elementwise-activation children through these primitives, with the
    # activations in NHWC between them: one conversion at each end of the run instead
    # of one around every layer (`d2lcompat.nn._layout`; docs/performance.md, "NCHW on
    # TensorFlow"). The API stays NCHW: a child called on its own, a child whose
    # ``forward`` is replaced (hybridized, a subclass, a patched instance) and every
    # other layer see NCHW tensors as before.

    #: `nn.Sequential` hands runs of layout-sensitive children to the NHWC primitives
    #: below (False: every child runs on its NCHW input, one by one).
    LAYOUT_CHAINS: ClassVar[bool] = False

    def to_nhwc(self, x: Any) -> Any:
        """``x`` (``(N, C, H, W)``) as ``(N, H, W, C)``: where a chain starts."""
        return self.ops.transpose(x, (0, 2, 3, 1))  # type: ignore[attr-defined]

    def to_nchw(self, x: Any) -> Any:
        """``x`` (``(N, H, W, C)``) as ``(N, C, H, W)``: where a chain ends."""
        return self.ops.transpose(x, (0, 3, 1, 2))  # type: ignore[attr-defined]

    def conv_nhwc(
        self,
        x: Any,
        w: Any,
        b: Any | None,
        strides: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
        activation: Callable[[Any], Any] | None,
    ) -> Any:
        """`conv` (2-D) of an NHWC ``x``, the result NHWC, then the *elementwise*
        ``activation`` when given. ``w`` keeps the API's ``(O, C // groups, kh, kw)``.
        The default converts around `conv_activation` / `conv`: right on every backend,
        faster on none (it is what a chain means where ``LAYOUT_CHAINS`` is False)."""
        x = self.to_nchw(x)
        if activation is None:
            y = self.conv(x, w, b, strides, padding, dilation, groups)
        else:
            y = self.conv_activation(x, w, b, strides, padding, dilation, groups, activation)
        return self.to_nhwc(y)

    def pool_nhwc(
        self,
        x: Any,
        kind: str,
        window: tuple[int, ...],
        strides: tuple[int, ...],
        padding: tuple[int, ...],
    ) -> Any:
        """`pool` (2-D) of an NHWC ``x``, the result NHWC; the default converts around
        `pool`."""
        return self.to_nhwc(self.pool(self.to_nchw(x), kind, window, strides, padding))

    def take(self, weight: Any, indices: Any) -> Any:
        """Rows of ``weight`` (``(V, D)``) at the integer ``indices`` (any shape): a tensor
        of shape ``indices.shape + (D,)``, differentiable in ``weight`` (``nn.Embedding``)."""
        from ._errors import UnsupportedError

        raise UnsupportedError(f"{self.name} does not support embedding lookup")

    def squared_difference(self, a: Any, b: Any) -> Any:
        """``(a - b)²`` element-wise, for two tensors of one floating dtype and one shape
        (`loss.L2Loss`), differentiable in both; the same values as ``d * d`` with
        ``d = a - b``. The default is those two ops; an adapter overrides it where one
        fused kernel does it (torch's ``F.mse_loss(reduction='none')``, one kernel forward
        and one backward; TensorFlow's ``SquaredDifference``)."""
        d = a - b
        return d * d

    def squared_difference_sum(self, a: Any, b: Any) -> Any:
        """``Σ (a - b)²`` over every element, a 0-d tensor, for two tensors of one
        floating dtype and one shape, differentiable in both (`loss.L2Loss` summed over
        the batch by `d2lcompat.train_step`). The default is the sum of
        `squared_difference`; torch overrides it with one ``mse_loss(reduction='sum')``
        kernel forward and one backward."""
        return self.ops.sum(self.squared_difference(a, b))  # type: ignore[attr-defined]

    def sparse_softmax_cross_entropy(self, pred: Any, label: Any, axis: int, from_logits: bool) -> Any:
        """The sparse softmax cross-entropy of each sample: ``-log_softmax(pred)[label]``
        along ``axis`` (``-pred[label]`` when ``from_logits``: ``pred`` already holds
        log-probabilities), Gluon's ``-pick(log_softmax(pred, axis), label, axis)``.

        ``pred`` is a floating tensor; ``axis`` is its class axis, in range and not
        negative; ``label`` has ``pred``'s shape without ``axis`` and holds class indices
        in ``[0, classes)`` of an integer or a floating dtype (whole numbers): the core
        reshaped it and, for concrete labels, checked them (`LabelError`). Return a
        tensor of ``label``'s shape and ``pred``'s dtype, differentiable in ``pred``
        (gradient ``softmax(pred) - one_hot(label)``, or ``-one_hot(label)`` from
        logits). Only the label's class is read: a non-finite value in another class of
        a ``from_logits`` row does not reach the result. Works on traced tensors.

        The default composes the core's ops (a one-hot mask and a sum); an adapter
        overrides it with the framework's fused kernel (``F.cross_entropy``,
        ``tf.nn.sparse_softmax_cross_entropy_with_logits``...)."""
        from . import ops

        shape = self.shape(pred)
        classes = shape[axis]
        logp = pred if from_logits else ops.log_softmax(pred, axis=axis)
        index = ops.expand_dims(ops.cast(label, "int32"), axis)
        ids = ops.arange(classes, dtype="int32")
        if axis != len(shape) - 1:
            ids = ops.reshape(ids, (classes,) + (1,) * (len(shape) - 1 - axis))
        # ``where``, not a product with the one-hot: -inf * 0 would be NaN.
        picked = ops.where(ops.equal(index, ids), logp, ops.zeros_like(logp))
        return -ops.sum(picked, axis=axis)

    def attention(self, q: Any, k: Any, v: Any, keep: Any | None) -> Any | None:
        """The framework's fused scaled dot-product attention, or None (the default)
        when it has none that fits: the core then composes it from the ops
        (`d2lcompat.nn._attention.attend`), with the same numbers.

        ``q`` is ``(B, Q, H, D)``, ``k`` ``(B, K, H, D)``, ``v`` ``(B, K, H, Dv)``
        (batch, steps, heads, features); the result ``(B, Q, H, Dv)`` is
        ``softmax(q·kᵀ / sqrt(D)) · v`` per batch element and head, where the scores of
        the keys with ``keep`` False are left out of the softmax. ``keep`` is None (no
        mask) or a boolean tensor broadcastable to ``(B, H, Q, K)``; the core
        guarantees at least one True per row, so the -1e6-versus--inf question of a
        fully masked row never reaches the kernel (docs/sequence.md). No dropout: the
        core uses the composition when attention dropout is active."""
        return None

    def rnn(
        self,
        mode: str,
        x: Any,
        states: Sequence[Any],
        weights: Sequence[Any],
        num_layers: int,
        bidirectional: bool,
    ) -> tuple[Any, list[Any]]:
        """A stack of ``num_layers`` recurrent layers over the whole sequence ``x``
        (``(T, N, C)``), Gluon's equations (`d2lcompat.nn._rnn.step`).

        ``mode`` is ``'lstm'``, ``'gru'``, ``'rnn_tanh'`` or ``'rnn_relu'``; ``states`` is
        ``[h]`` or ``[h, c]`` (LSTM), each ``(num_layers * directions, N, H)`` ordered
        layer 0 forward, layer 0 reverse, layer 1 forward...; ``weights`` is the flat list
        ``w_ih (G*H, C_in), w_hh (G*H, H), b_ih, b_hh`` per layer and direction in that
        order, gate rows in Gluon's order (LSTM ``i, f, c, o``; GRU ``r, z, n``).
        Return ``(output (T, N, directions * H), new states)``, differentiable in ``x``,
        ``states`` and ``weights``. Run the framework's fused kernel, or a compiled scan
        (`d2lcompat.nn._rnn.scan_layers`); never a Python loop over time steps. Dropout
        between layers is the core's business (it calls one layer at a time then)."""
        from ._errors import UnsupportedError

        raise UnsupportedError(f"{self.name} does not support recurrent layers")

    def translate_grad_error(self, exc: BaseException) -> BaseException | None:
        """A `D2LCompatError` to raise instead of ``exc``, which the framework raised while
        `autograd.grad` differentiated the user's closure, or None to let ``exc`` through
        (optional hook). torch turns its in-place autograd error into `InPlaceUpdateError`;
        JAX turns its tracer conversion errors into `TracedValueError`."""
        return None

    # --------------------------------------------------------------- compile
    #: Exceptions the compiled function raises when Python control flow depends on a
    #: traced value (JAX's ``ConcretizationTypeError``, TensorFlow's
    #: ``OperatorNotAllowedInGraphError``...). ``hybridize`` catches them, re-runs the
    #: call eagerly and, when that succeeds, warns once and stays eager. Leave it empty
    #: when the compiler falls back to Python by itself (torch.compile's graph breaks).
    COMPILE_FALLBACK_ERRORS: ClassVar[tuple[type[BaseException], ...]] = ()

    def compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The framework's compiled version of ``fn(values, *args)``.

        ``values`` is a list of native tensors (one per parameter, the stored variables
        themselves for mutable frameworks) that ``fn`` substitutes for the parameters'
        values: they must be *inputs* of the compiled function, never constants, so new
        values need no re-tracing. ``args`` are the forward pass's inputs; a new shape
        may re-trace, as the framework does by itself. Called once per ``hybridize()``.
        """
        from ._errors import UnsupportedError

        raise UnsupportedError(f"{self.name} does not support compilation")

    #: The compiler leaves parts of a function to Python by itself and says so
    #: (`compile_breaks`): Paddle's SOT graph breaks.
    REPORTS_COMPILE_BREAKS: ClassVar[bool] = False

    #: The compiler traces the fused recurrent primitive (`rnn`) into one graph. False
    #: where it cannot: a hybridized recurrent layer then runs that op as Python and
    #: warns once, `CompileFallbackWarning` (all four adapters trace it today; Paddle's
    #: SOT does once the op's call is marked ``paddle.jit.marker.unified``).
    COMPILES_RNN: ClassVar[bool] = True

    def compile_breaks(self) -> Sequence[str]:
        """The reasons the framework's compiler gave, since the last call, for running
        parts of a compiled function as Python (graph breaks), one line each; ``()`` when
        there were none. Asked after each call of a hybridized block where
        ``REPORTS_COMPILE_BREAKS``, so it must be cheap when nothing happened."""
        return ()

    def fused_update(
        self,
        optimizer: Any,
        variables: Sequence[Any],
        grads: Sequence[Any],
        slots: Sequence[list[Any]],
        t: int,
        scale: float,
    ) -> bool:
        """Apply one eager step of ``optimizer`` (a `d2lcompat.optim.Optimizer`: its
        ``name`` and ``hyper_parameters()``) in place with the framework's multi-tensor
        kernels, and return True; return False (the default) to let the core apply the
        optimizer's own rule. ``variables`` are the parameters' variables, ``grads``
        their gradients (multiply by ``scale`` first), ``slots`` each one's slot
        variables in ``optimizer.slot_names`` order, ``t`` the step number from 1.

        An adapter may offer this only where a test proves it equal to the rule (the
        conformance scenario OP01 checks every optimizer against NumPy)."""
        return False

    def fused_update_values(
        self,
        optimizer: Any,
        values: Sequence[Any],
        grads: Sequence[Any],
        slots: Sequence[Sequence[Any]],
        t: int,
        scale: float,
    ) -> tuple[list[Any], list[list[Any]]] | None:
        """`fused_update` for frameworks whose arrays cannot change in place
        (``SUPPORTS_MUTABLE_VARIABLES`` False): one eager step of ``optimizer`` over every
        parameter at once, returned as ``(new_values, new_slots)`` — ``new_slots[i]`` the
        new slot values of parameter ``i``, in ``optimizer.slot_names`` order — which the
        core stores; or None (the default) to let the core apply the rule parameter by
        parameter. Asked only when `fused_update` returned False. The arguments are
        `fused_update`'s (``values`` the parameters' current arrays, ``slots`` their slot
        arrays); nothing passed in may change. The result must be the optimizer's own
        ``rule`` applied to ``(w, g * scale, slots, optimizer.scalars(t))``, with each new
        value of its parameter's dtype, shape and device (JAX: the rule inside one
        ``jax.jit``, the scalars as traced arguments)."""
        return None

    def nonfinite_mean(self, total: Any, scale: float, grads: Sequence[Any]) -> Any | None:
        """``total * scale`` (a 0-d tensor times a Python float: the batch's mean loss),
        NaN when any element of ``grads`` (a non-empty list of gradient tensors, no None)
        is not finite, computed eagerly in the framework's cheapest exact way (torch:
        its multi-tensor kernels; Paddle: host reads of squared norms, with an exact
        fallback when one overflows); or None (the default) to let the core add its
        probe built from ops (optional hook; the one place an adapter changes how the
        eager step tests gradients, compiled steps always use the core's ops). Finite
        values whose squares or sums overflow must still give ``total * scale``. The
        dtype is that of ``total * scale + g.sum()``. The training step calls it on
        every step: return None for tensors you do not handle (mixed dtypes, several
        devices), never raise, and never change a gradient's value."""
        return None

    def clip_by_global_norm(
        self, grads: Sequence[Any], max_norm: float, scale: float
    ) -> tuple[Any, list[Any]] | None:
        """Gluon's global-norm clip of the gradients ``g * scale`` with the framework's
        multi-tensor kernels, eagerly (optional hook): return ``(norm, clipped)`` with
        ``norm = sqrt(Σ (scale · g)²)`` over every element as a 0-d float32 tensor and
        ``clipped[i] = grads[i] · min(max_norm / (norm + 1e-8), 1)`` (not times
        ``scale``) in ``grads[i]``'s dtype; or None (the default) to let the core compute
        the same with ops (`d2lcompat._clip.global_norm_scale`). ``grads`` is a
        non-empty list of tensors; return None for any you do not handle."""
        return None

    def select_all(self, ok: Any, new: Sequence[Any], old: Sequence[Any]) -> list[Any]:
        """``new`` where the scalar ``ok`` is true, else ``old`` (the compiled step's NaN
        guard, `_trainer._kept_if_nan`): one element-wise select per value, which XLA
        fuses into the update. An adapter whose graph does not fuse may pick the whole
        list at once instead."""
        from . import ops as _ops

        return [_ops.where(ok, n, o) for n, o in zip(new, old)]

    #: Whether a compiled training step with the NaN guard returns its gradients into
    #: buffers donated back every step (`TrainStep._build`): where each call allocates
    #: its temporaries anew and the guard keeps every gradient alive until the probe
    #: has read them all (JAX on the CPU).
    GUARDED_STEP_KEEPS_GRADS: ClassVar[bool] = False

    def compile_train_step(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The framework's compiled version of a whole training step.

        ``fn(values, scalars, X, y) -> (mean_loss, new_values)`` is pure: ``values`` is
        the flat list of the step's state (trainable parameters, other parameters such
        as running statistics, optimizer slots: the stored variables themselves for
        mutable frameworks), ``scalars`` a short sequence of host floats (``1/batch``,
        learning rate, bias corrections), and ``new_values`` has one entry per value,
        None where it is unchanged. Return ``run(values, scalars, X, y) ->
        (mean_loss, kept)``, where ``kept[i]`` is the object to keep for ``values[i]``:
        the same variable, written in place (mutable frameworks), or the new array
        (JAX). Compile where it pays; the default runs ``fn`` eagerly and writes the
        new values with `assign`, which is what torch and paddle use (docs/training.md).
        """

        def run(values: Sequence[Any], scalars: Sequence[float], *args: Any) -> tuple[Any, list[Any]]:
            loss, new = fn(values, scalars, *args)
            return loss, [v if n is None else self.assign(v, n) for v, n in zip(values, new)]

        return run

    def may_mix_devices(self) -> bool:
        """Whether this process can have more than one device, so that an op could mix
        them (asked once, right after `configure`). True turns on the core's device
        checks (`DEVICE_MISMATCH_ERRORS`, `forward_scope`); False keeps ops free of them.
        An adapter whose device count is costly to ask at import (JAX initializes its
        runtime) overrides it with a cheap, conservative answer."""
        return self.device_count("cpu") + self.device_count("gpu") > 1

    def forward_scope(self, args: Sequence[Any]) -> AbstractContextManager[None] | None:
        """A context the outermost forward pass over the inputs ``args`` must run in, so
        that every op of it, native operators included (``x + 1``), runs on the inputs'
        device; None when the framework already runs ops where their inputs are (torch,
        JAX, paddle: the default). TensorFlow runs eager ops on its default device
        whatever their inputs' device, so its adapter returns a ``tf.device`` scope. The
        core calls it only in processes with more than one device, once per outermost
        ``block(x)``; it may raise `DeviceError` when the inputs are on two devices."""
        return None

    def is_traced(self, x: Any) -> bool:
        """Whether ``x`` is a symbolic value of the framework's compiler (a JAX tracer),
        which has no concrete device or values: the core skips device checks on it."""
        return False

    # ----------------------------------------------------- native checkpoints
    #: Suffixes of the framework's own checkpoint files that `read_native_checkpoint`
    #: reads (``(".pt", ".pth")``); empty when the framework has none d2lcompat reads.
    NATIVE_CHECKPOINT_FORMATS: ClassVar[tuple[str, ...]] = ()
    #: Reading them unpickles (Paddle ``.pdparams``): the core calls the reader only
    #: when the user passed ``trusted=True``.
    NATIVE_CHECKPOINT_NEEDS_TRUST: ClassVar[bool] = False

    def read_native_checkpoint(self, path: str, trusted: bool) -> tuple[str, dict[str, Any]] | None:
        """Read the framework's own checkpoint at ``path`` (optional hook).

        Return ``(layout, {native name: value})``, values as native tensors or NumPy
        arrays with their dtypes unchanged, names exactly as the framework wrote them;
        ``layout`` tells the core how to map names and layouts: ``"structural"``
        (dotted names and ``(out, in)`` weights, as torch), ``"paddle"`` (dotted
        names, ``Linear`` weights ``(in, out)``) or ``"keras"`` (Keras 3 ``.weights.h5``
        paths, kernels ``(in, out)``). Return None when the file is not in the
        framework's format. Never execute code from an untrusted file.
        """
        return None

    # ----------------------------------------------------------- distributed
    # Data parallelism belongs to the framework's engine (STYLE lesson 13): the core
    # (`d2lcompat.parallel`) says what is split and what is reduced; these hooks move
    # the bytes with the framework's own collectives.

    #: The engine that all-reduces across processes, as the user should read it
    #: (``"torch.distributed (gloo on CPU, NCCL on GPU)"``); empty when there is none.
    DISTRIBUTED_ENGINE: ClassVar[str] = ""
    #: The engine that splits one training step over the devices of one process
    #: (``"jax.sharding"``); empty when the framework does that one process per device.
    DEVICE_PARALLEL_ENGINE: ClassVar[str] = ""

    def dist_init(self, cluster: Any) -> tuple[int, int, int]:
        """Join the process group and return ``(rank, world_size, local_rank)``.

        ``cluster`` is the `d2lcompat._cluster.Cluster` that ``d2lcompat launch``
        described, or None: then read the framework's own launcher's variables, and
        return ``(0, 1, 0)`` when there are none (a single process). Idempotent."""
        from ._errors import UnsupportedError

        if cluster is None or cluster.world_size == 1:
            return (0, 1, 0)
        raise UnsupportedError(f"{self.name} has no multi-process engine in d2lcompat")

    def dist_all_reduce_mean(self, tensors: Sequence[Any]) -> list[Any]:
        """The element-wise mean of each tensor over every process, with the framework's
        collective; each result on the device of its input."""
        from ._errors import UnsupportedError

        raise UnsupportedError(f"{self.name} has no multi-process engine in d2lcompat")

    def dist_broadcast(self, tensors: Sequence[Any], root: int) -> list[Any]:
        """Process ``root``'s values of ``tensors``, on every process."""
        from ._errors import UnsupportedError

        raise UnsupportedError(f"{self.name} has no multi-process engine in d2lcompat")

    def dist_shutdown(self) -> None:  # noqa: B027 - optional hook
        """Leave the process group (after the last collective)."""

    #: `compile_train_step_sharded` compiles a whole training step over several devices.
    SUPPORTS_SHARDED_TRAIN_STEP: ClassVar[bool] = False
    #: `compile_train_step_sharded` runs the step once per device on its shard, with
    #: ``reduce`` (``tf.distribute``), rather than partitioning one step (XLA SPMD).
    SHARDED_TRAIN_STEP_PER_REPLICA: ClassVar[bool] = False
    #: `compile_train_step_distributed` compiles the gradients' all-reduce over the
    #: processes into the training step (else several workers run the eager step).
    SUPPORTS_DISTRIBUTED_TRAIN_STEP: ClassVar[bool] = False
    #: An eager step on several processes (a net that is not hybridized) runs its
    #: all-reduce, NaN probe and update as one `compile_train_step_distributed` call
    #: after the eager backward pass, instead of an eager all-reduce and eager updates
    #: (set where that measured faster: docs/distributed.md).
    COMPILES_DISTRIBUTED_UPDATE: ClassVar[bool] = False

    def compile_train_step_distributed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`compile_train_step` for one of several processes (`dist_init`): each process
        runs the compiled step on its own batch, calling ``fn(values, scalars, X, y,
        reduce=...)`` where ``reduce(list)`` is the element-wise MEAN over the processes
        (each process's ``scalars`` scale by its own batch, as `Trainer.step` after
        `dist_all_reduce_mean`): every process computes the same update. Only where
        `SUPPORTS_DISTRIBUTED_TRAIN_STEP`."""
        from ._errors import UnsupportedError

        raise UnsupportedError(f"{self.name} does not compile a distributed training step")

    def compile_train_step_sharded(
        self, fn: Callable[..., Any], devices: Sequence[DeviceTuple]
    ) -> Callable[..., Any]:
        """`compile_train_step` over ``devices`` of this process: ``X`` and ``y`` split
        along their first axis, every value replicated, the gradient's all-reduce
        inserted by the compiler; ``run(values, scalars, X, y)`` returns the outputs
        on the device of ``X`` and each kept value on the device its value came from. Only where
        `SUPPORTS_SHARDED_TRAIN_STEP` (else the core uses `device_parallel`).

        Two ways: a compiler that partitions the whole batch's step itself (JAX's XLA
        SPMD) calls ``fn(values, scalars, X, y)`` once, as `compile_train_step` does.
        An engine that runs one replica per device (``tf.distribute``) calls, in each
        replica, ``fn(values, scalars, X_shard, y_shard, reduce=...)``: ``reduce(list)``
        is the replica context's all-reduce (SUM over the devices), which ``fn`` applies
        to its shard's loss sum and gradient sums before the optimizer's rule, so every
        replica computes the same new values (those of the whole batch); the adapter
        then writes them once. Such an adapter sets `SHARDED_TRAIN_STEP_PER_REPLICA`
        (a forward pass that updates running statistics is then refused)."""
        from ._errors import UnsupportedError

        raise UnsupportedError(f"{self.name} does not compile a sharded training step")

    def device_parallel(
        self, fn: Callable[..., Any], devices: Sequence[DeviceTuple], n_diff: int
    ) -> Callable[[Sequence[Any], Sequence[Sequence[Any]]], tuple[Any, list[Any]]]:
        """One training step's gradient spread over ``devices`` of this process.

        ``fn(values, *batch)`` is a scalar: the *sum* of the per-sample losses of
        ``batch``, pure in ``values`` (as in `value_and_grad`). Every value is
        replicated to each device; the first ``n_diff`` are differentiated (the rest
        are constants and running statistics). Return ``run(values, shards)``:
        ``shards[i]`` is the tuple of batch tensors already on ``devices[i]``; ``run``
        gives ``(loss sum, [gradient sum of each of the first n_diff values])`` over
        the whole batch, reduced by the framework's engine, each gradient on the device
        of its value. Called once per model; ``run`` is called every step."""
        from ._errors import UnsupportedError

        raise UnsupportedError(
            f"{self.name} runs data parallelism one process per device: start the script "
            "with `d2lcompat launch --nproc N script.py` and pass one device per process"
        )
