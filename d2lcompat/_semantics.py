"""The one set of dtype and shape rules every backend's ``d2lcompat.ops`` follows.

docs/ops-semantics.md has the table; this module is its executable form. Adapters
use `promote` / `float_result` where their framework's own rule differs, the core
wraps the broadcasting ops so a shape mismatch is a `ShapeError` naming both shapes
(`wrap_ops`), and the property tests (tests/test_ops_properties.py) check every
backend against these functions and NumPy.

Rules
-----
* Two tensors of one dtype give that dtype.
* Two tensors of different dtypes of one kind give the wider one (array API
  standard): ``int32 + int64 -> int64``, ``float32 + float64 -> float64``,
  ``uint8 + int8 -> int16``, ``float16 + bfloat16 -> float32``.
* An integer (or bool) tensor with a floating tensor gives the floating dtype
  (``int64 + float32 -> float32``). NumPy would give float64; the array API
  leaves mixed kinds unspecified. See docs/divergences.md.
* A bool tensor with a number tensor gives the number's dtype.
* A Python scalar is "weak": it takes the tensor's dtype, except a Python float
  with an integer or bool tensor, which gives float32 (the default float), and a
  Python int with a bool tensor, which gives the default int (int64).
* True division, ``mean``, ``norm``, ``exp``, ``log``, ``sqrt``, ``sigmoid``,
  ``tanh``, ``softmax`` and ``log_softmax`` of integer or bool tensors give
  float32 (NumPy: float64).
* ``sum`` of bool and of integers narrower than int64 gives int64 (NumPy, array API).

Examples
--------
>>> promote("int32", "float64"), promote("uint8", "int8"), float_result("int64")
('float64', 'int16', 'float32')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._errors import D2LCompatError, ShapeError, TensorWriteError

__all__ = [
    "BROADCASTING_OPS",
    "DEFAULT_FLOAT",
    "DEFAULT_INT",
    "broadcast_shapes",
    "float_result",
    "index_positions",
    "is_float",
    "item_assignment_error",
    "promote",
    "scalar_result",
    "split_args",
    "split_sizes",
    "sum_result",
]

DEFAULT_FLOAT = "float32"
DEFAULT_INT = "int64"

_FLOATS = ("float16", "bfloat16", "float32", "float64")
_SIGNED = ("int8", "int16", "int32", "int64")
_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64, "uint8": 8}

#: The ops whose tensor arguments broadcast against each other (NumPy rules).
BROADCASTING_OPS: tuple[str, ...] = (
    "add",
    "subtract",
    "multiply",
    "divide",
    "maximum",
    "minimum",
    "where",
    "equal",
    "not_equal",
    "less",
    "less_equal",
    "greater",
    "greater_equal",
)


def is_float(dtype: str) -> bool:
    """Whether ``dtype`` (a canonical name) is a floating dtype."""
    return dtype in _FLOATS


def promote(a: str, b: str) -> str:
    """The result dtype of a binary op on tensors of dtypes ``a`` and ``b``.

    Examples
    --------
    >>> promote("bool", "int32"), promote("int64", "float16"), promote("float16", "bfloat16")
    ('int32', 'float16', 'float32')
    """
    if a == b:
        return a
    if a == "bool":
        return b
    if b == "bool":
        return a
    fa, fb = a in _FLOATS, b in _FLOATS
    if fa and fb:
        if {a, b} == {"float16", "bfloat16"}:
            return "float32"
        return max(a, b, key=_FLOATS.index)
    if fa:
        return a
    if fb:
        return b
    # Two integer dtypes.
    if "uint8" in (a, b):
        other = b if a == "uint8" else a
        return "int16" if other == "int8" else other
    return max(a, b, key=_SIGNED.index)


def scalar_result(tensor_dtype: str, scalar: Any) -> str:
    """The result dtype of a binary op on a tensor of ``tensor_dtype`` and a Python scalar.

    Examples
    --------
    >>> scalar_result("int32", 2), scalar_result("int32", 2.5), scalar_result("bool", 1)
    ('int32', 'float32', 'int64')
    """
    if isinstance(scalar, bool):
        return tensor_dtype
    if isinstance(scalar, int):
        return DEFAULT_INT if tensor_dtype == "bool" else tensor_dtype
    if isinstance(scalar, float):
        return tensor_dtype if tensor_dtype in _FLOATS else DEFAULT_FLOAT
    raise TypeError(f"Not a Python scalar: {scalar!r}")


def float_result(dtype: str) -> str:
    """The dtype of true division, mean, norm and transcendental ops on ``dtype``.

    Examples
    --------
    >>> float_result("float64"), float_result("int32"), float_result("bool")
    ('float64', 'float32', 'float32')
    """
    return dtype if dtype in _FLOATS else DEFAULT_FLOAT


def sum_result(dtype: str) -> str:
    """The dtype of ``sum`` over ``dtype``: bool and narrow integers widen to int64.

    Examples
    --------
    >>> sum_result("bool"), sum_result("int32"), sum_result("float16")
    ('int64', 'int64', 'float16')
    """
    if dtype == "bool" or dtype in _BITS:
        return DEFAULT_INT
    return dtype


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...] | None:
    """The broadcast shape of ``shapes`` (NumPy rules), or None when they do not broadcast.

    Examples
    --------
    >>> broadcast_shapes((3, 1), (4,)), broadcast_shapes((3,), (4,))
    ((3, 4), None)
    """
    rank = max((len(s) for s in shapes), default=0)
    out = [1] * rank
    for s in shapes:
        for i, d in enumerate(s, start=rank - len(s)):
            if d == out[i] or d == 1:
                continue
            if out[i] != 1:
                return None
            out[i] = d
    return tuple(out)


def _shape_error(name: str, shapes: Sequence[tuple[int, ...]]) -> ShapeError:
    listed = " and ".join(str(tuple(s)) for s in shapes)
    return ShapeError(
        f"ops.{name}: the shapes {listed} do not broadcast (NumPy rules: aligned from "
        "the right, each dimension equal or 1). Reshape or expand_dims an operand."
    )


_SCALARS = (bool, int, float)


class _Rules:
    """The backend-independent wrappers of `wrap_ops`, bound to one backend."""

    def __init__(self, backend: Any) -> None:
        self.b = backend
        # Per native dtype object (torch.float32, tf.int32, ...): its canonical name,
        # filled on first sight so the happy path costs one dict lookup.
        self.names: dict[Any, str] = {}

    def name(self, x: Any) -> str:
        d = x.dtype
        try:
            return self.names[d]
        except KeyError:
            n = self.names[d] = self.b.dtype(x)
            return n
        except TypeError:  # an unhashable dtype object
            return str(self.b.dtype(x))

    def align(self, args: Sequence[Any]) -> tuple[list[Any], str | None]:
        """``args`` cast to their common dtype (`promote`, `scalar_result`) and that dtype."""
        b = self.b
        tensors = [i for i, a in enumerate(args) if b.is_tensor(a)]
        if not tensors:
            return list(args), None
        target = self.name(args[tensors[0]])
        for i in tensors[1:]:
            target = promote(target, self.name(args[i]))
        for a in args:
            if isinstance(a, _SCALARS):
                target = scalar_result(target, a)
        # A Python bool meeting numbers counts as 0/1 (torch refuses bool arithmetic).
        out = [int(a) if isinstance(a, bool) and target != "bool" else a for a in args]
        for i in tensors:
            if self.name(out[i]) != target:
                out[i] = b.cast(out[i], target)
        return out, target

    def shape_error(self, name: str, args: Sequence[Any]) -> ShapeError | None:
        shapes = [tuple(self.b.shape(a)) for a in args if self.b.is_tensor(a)]
        if len(shapes) > 1 and broadcast_shapes(*shapes) is None:
            return _shape_error(name, shapes)
        return None

    def binary(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        divide = name == "divide"

        def op(a: Any, b: Any) -> Any:
            try:
                # The happy path: one dtype, nothing to promote.
                same = a.dtype == b.dtype and (not divide or self.names.get(a.dtype, "") in _FLOATS)
            except AttributeError:
                same = False  # a Python scalar
            if not same:
                (a, b), target = self.align((a, b))
                if divide and target is not None and target not in _FLOATS:
                    a, b = (self.b.cast(v, DEFAULT_FLOAT) if self.b.is_tensor(v) else v for v in (a, b))
            try:
                return fn(a, b)
            except Exception as exc:
                err = self.shape_error(name, (a, b))
                if err is None:
                    raise
                raise err from exc

        return _named(op, fn, name)

    def where(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def where(cond: Any, x: Any, y: Any) -> Any:
            if self.b.is_tensor(cond) and self.name(cond) != "bool":
                cond = self.b.cast(cond, "bool")  # NumPy takes any truthy condition
            try:
                same = x.dtype == y.dtype
            except AttributeError:
                same = False  # a Python scalar
            if not same:
                (x, y), _ = self.align((x, y))
            try:
                return fn(cond, x, y)
            except Exception as exc:
                err = self.shape_error("where", (cond, x, y))
                if err is None:
                    raise
                raise err from exc

        return _named(where, fn, "where")

    def unary(self, fn: Callable[..., Any], name: str, result: Callable[[str], str]) -> Callable[..., Any]:
        """``fn(x, ...)`` with ``x`` cast first to ``result(dtype)`` where that differs."""
        same: dict[Any, bool] = {}

        def result_of(d: str) -> str:
            r = result(d)
            # No int64 (JAX without x64): keep d. Read each time: x64 can be switched on.
            return r if r in self.b.SUPPORTED_DTYPES else d

        def learn(x: Any) -> bool:
            if not self.b.is_tensor(x):
                return True  # not a tensor: the framework's own conversion decides
            d = self.name(x)
            ok = result_of(d) == d
            try:
                same[x.dtype] = ok
            except TypeError:  # an unhashable dtype object
                pass
            return ok

        def op(x: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                ok = same[x.dtype]
            except (KeyError, TypeError, AttributeError):
                ok = learn(x)
            if ok:
                return fn(x, *args, **kwargs)
            return fn(self.b.cast(x, result_of(self.name(x))), *args, **kwargs)

        return _named(op, fn, name)

    def nonempty(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        def op(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
            shape = tuple(self.b.shape(x)) if self.b.is_tensor(x) else ()
            if 0 in shape:
                if axis is None:
                    axes: Sequence[int] = range(len(shape))
                else:
                    axes = (axis,) if isinstance(axis, int) else tuple(axis)
                if any(shape[a] == 0 for a in axes if -len(shape) <= a < len(shape)):
                    raise ShapeError(
                        f"ops.{name} over an empty axis: the tensor of shape {shape} has no "
                        f"elements along axis={axis!r}, and {name} has no identity. Check "
                        "the shape first, or use ops.sum (0) / ops.mean (nan)."
                    )
            return fn(x, axis=axis, keepdims=keepdims)

        return _named(op, fn, name)


def axis_error(name: str, shape: Sequence[int], axis: Any, extra: int = 0) -> ShapeError | None:
    """A `ShapeError` when ``axis`` (None, an int or a sequence) does not fit a tensor of
    ``shape`` (``extra``: axes the op adds, as expand_dims), else None."""
    if axis is None:
        return None
    rank = len(shape) + extra
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    bad = [a for a in axes if not isinstance(a, int) or not -rank <= a < rank]
    if bad:
        return ShapeError(
            f"ops.{name}: axis {axis!r} is out of range for a tensor of shape {tuple(shape)} "
            f"(valid: {-rank} to {rank - 1})."
        )
    if len({a % rank for a in axes}) != len(axes):
        return ShapeError(f"ops.{name}: axis {axis!r} repeats an axis.")
    return None


def split_args(shape: Sequence[Any], indices_or_sections: Any, axis: Any) -> int | tuple[int, ...]:
    """The arguments of ``ops.split`` checked against a tensor of ``shape`` and normalized
    for the adapter (`Ops`): an int ``N`` that divides ``shape[axis]``, or the indices as a
    tuple of non-decreasing ints in ``[0, shape[axis]]`` (negative ones counted from the
    end and out-of-range ones clipped, as NumPy's slices are). Raises `ShapeError` naming
    the fault. A dimension unknown while tracing (None, or -1 on Paddle) is not checked.

    Examples
    --------
    >>> split_args((4, 6), 3, -1), split_args((4, 6), [2, -1, 9], 1)
    (3, (2, 5, 6))
    """
    shape = tuple(shape)
    err = axis_error("split", shape, axis) if isinstance(axis, int) and not isinstance(axis, bool) else (
        ShapeError(f"ops.split: axis must be an int; got {axis!r}."))
    if err is not None:
        raise err
    n = shape[axis]
    known = isinstance(n, int | np.integer) and n >= 0
    if isinstance(indices_or_sections, int | np.integer) and not isinstance(indices_or_sections, bool):
        parts = int(indices_or_sections)
        if parts < 1:
            raise ShapeError(f"ops.split: the number of parts must be >= 1; got {parts}.")
        if known and n % parts:
            raise ShapeError(
                f"ops.split: axis {axis} of a tensor of shape {shape} has size {n}, which "
                f"{parts} equal parts do not divide; give the split indices instead "
                f"(e.g. {[n * k // parts for k in range(1, parts)]})."
            )
        return parts
    try:
        raw = [int(i) for i in indices_or_sections
               if isinstance(i, int | np.integer) and not isinstance(i, bool)]
        ok = len(raw) == len(indices_or_sections)
    except TypeError:
        ok = False
    if not ok:
        raise ShapeError(
            "ops.split: indices_or_sections must be an int (the number of equal parts) or a "
            f"sequence of ints (the split indices); got {indices_or_sections!r}."
        )
    if known:
        raw = [min(max(i + n if i < 0 else i, 0), n) for i in raw]
    elif any(i < 0 for i in raw):
        raise ShapeError(
            f"ops.split: negative indices {raw} need a known size along axis {axis}; the "
            f"tensor's shape is {shape}."
        )
    if any(a > b for a, b in zip(raw, raw[1:])):
        raise ShapeError(
            f"ops.split: the split indices must not decrease (after counting negative ones "
            f"from the end); got {list(indices_or_sections)} -> {raw} for axis {axis} of "
            f"size {n}."
        )
    return tuple(raw)


def split_sizes(n: int | None, indices: Sequence[int]) -> list[int]:
    """The sizes of the parts that split a dimension of size ``n`` at the (normalized,
    `split_args`) ``indices``; the last is -1 where ``n`` is unknown (None).

    Examples
    --------
    >>> split_sizes(6, (2, 2, 5)), split_sizes(None, (1, 3))
    ([2, 0, 3, 1], [1, 2, -1])
    """
    edges = [0, *indices]
    sizes = [b - a for a, b in zip(edges, edges[1:])]
    return [*sizes, -1 if n is None else n - edges[-1]]


def _reshape_error(b: Any, x: Any, shape: Any) -> ShapeError | None:
    have = tuple(b.shape(x))
    want = (shape,) if isinstance(shape, int) else tuple(shape)
    size = 1
    for d in have:
        size *= d
    known = 1
    for d in want:
        known *= d if d != -1 else 1
    unknown = sum(d == -1 for d in want)
    fits = unknown == 0 and known == size or unknown == 1 and known and size % known == 0
    if unknown > 1 or any(d < -1 for d in want) or not fits:
        return ShapeError(
            f"ops.reshape: cannot reshape a tensor of shape {have} ({size} elements) to "
            f"{want}; the sizes must agree (at most one -1)."
        )
    return None


def _matmul_error(name: str, b: Any, x: Any, y: Any) -> ShapeError | None:
    sa, sb = tuple(b.shape(x)), tuple(b.shape(y))
    if not sa or not sb:
        return ShapeError(f"ops.{name}: operands must have at least one axis; got {sa} and {sb}.")
    ka = sa[-1]
    kb = sb[0] if len(sb) == 1 else sb[-2]
    if ka != kb or broadcast_shapes(sa[:-2], sb[:-2]) is None:
        return ShapeError(
            f"ops.{name}: shapes {sa} and {sb} do not fit: the last axis of the first "
            f"({ka}) must equal the {'only' if len(sb) == 1 else 'second-to-last'} axis of "
            f"the second ({kb}), and batch axes must broadcast."
        )
    return None


def _linear_error(b: Any, x: Any, w: Any, bias: Any = None) -> ShapeError | None:
    sx, sw = tuple(b.shape(x)), tuple(b.shape(w))
    sb = None if bias is None else tuple(b.shape(bias))
    if not sx or len(sw) != 2 or sx[-1] != sw[1] or (sb is not None and sb != (sw[0],)):
        return ShapeError(
            f"ops.linear: input {sx}, weight {sw} and bias {sb} do not fit: the weight must "
            "be (out, in) with in equal to the input's last axis, the bias (out,)."
        )
    return None


def _join_error(name: str, b: Any, xs: Any, axis: int = 0) -> ShapeError | None:
    shapes = [tuple(b.shape(x)) for x in xs]
    if not shapes:
        return ShapeError(f"ops.{name}: needs at least one tensor.")
    first = shapes[0]
    err = axis_error(name, first, axis, extra=1 if name == "stack" else 0)
    if err is not None:
        return err
    if name == "stack":
        ok = all(s == first for s in shapes)
    else:
        a = axis % len(first) if first else 0
        ok = all(len(s) == len(first) and s[:a] + s[a + 1 :] == first[:a] + first[a + 1 :]
                 for s in shapes)
    if not ok:
        rule = "equal" if name == "stack" else f"equal except along axis {axis}"
        return ShapeError(f"ops.{name}: the shapes {shapes} must be {rule}.")
    return None


def _transpose_error(b: Any, x: Any, axes: Any = None) -> ShapeError | None:
    shape = tuple(b.shape(x))
    if axes is not None and sorted(a % max(len(shape), 1) for a in axes) != list(range(len(shape))):
        return ShapeError(
            f"ops.transpose: axes {tuple(axes)} are not a permutation of the "
            f"{len(shape)} axes of a tensor of shape {shape}."
        )
    return None


def _plain_index(index: Any) -> tuple[Any, ...]:
    """``index`` as a tuple NumPy understands: native integer tensors and lists become
    NumPy arrays; ints, slices, ``None`` and ``...`` stay."""
    parts = index if isinstance(index, tuple) else (index,)
    out: list[Any] = []
    for part in parts:
        if part is None or part is Ellipsis or isinstance(part, (bool, int, np.integer, slice)):
            out.append(part)
        else:
            out.append(np.asarray(part))
    return tuple(out)


def index_positions(shape: Sequence[int], index: Any) -> np.ndarray:
    """The flat (row-major) positions ``x[index]`` selects in a tensor of ``shape``,
    shaped like ``x[index]`` (NumPy indexing: ints, slices, ``...``, ``None``, integer
    and boolean arrays). What an adapter whose tensors refuse item assignment needs for
    ``index_update`` (a scatter into the flattened tensor).

    Examples
    --------
    >>> index_positions((2, 3), (1, slice(0, 2))).tolist()
    [3, 4]
    """
    size = int(np.prod(shape)) if len(shape) else 1
    return np.arange(size, dtype=np.int64).reshape(tuple(shape))[_plain_index(index)]


def _index_error(b: Any, x: Any, index: Any, value: Any = None) -> ShapeError | None:
    shape = tuple(b.shape(x))
    try:
        target = index_positions(shape, index).shape
    except (IndexError, ValueError, TypeError) as exc:
        return ShapeError(f"ops.index_update: index {index!r} does not fit a tensor of shape {shape}: {exc}.")
    vshape = tuple(b.shape(value)) if b.is_tensor(value) else np.shape(value)
    if broadcast_shapes(vshape, target) != target:
        return ShapeError(
            f"ops.index_update: x{_show_index(index)} has shape {target}; a value of shape "
            f"{vshape} does not broadcast to it."
        )
    return None


def _show_index(index: Any) -> str:
    parts = index if isinstance(index, tuple) else (index,)

    def one(p: Any) -> str:
        if isinstance(p, slice):
            return ":".join("" if v is None else str(v) for v in (p.start, p.stop)) + (
                f":{p.step}" if p.step is not None else ""
            )
        return "..." if p is Ellipsis else repr(p)

    return "[" + ", ".join(one(p) for p in parts) + "]"


def _error_checked(
    fn: Callable[..., Any], name: str, explain: Callable[..., ShapeError | None]
) -> Callable[..., Any]:
    """``fn`` whose framework errors become ``explain(*args)``'s `ShapeError` when it finds one."""

    def op(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ShapeError:
            raise
        except Exception as exc:
            try:
                err = explain(*args, **kwargs)
            except Exception:  # the arguments are too odd to explain: keep the original
                err = None
            if err is None:
                raise
            raise err from exc

    return _named(op, fn, name)


def _named(op: Callable[..., Any], fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    op.__name__ = op.__qualname__ = name
    op.__doc__ = fn.__doc__
    op.__wrapped__ = fn  # type: ignore[attr-defined]
    return op


#: Ops whose integer and bool inputs are first cast to float32 (`float_result`).
FLOAT_RESULT_OPS: tuple[str, ...] = (
    "exp", "log", "sqrt", "sigmoid", "tanh", "softmax", "log_softmax", "mean", "norm",
)


def wrap_ops(backend: Any) -> dict[str, Callable[..., Any]]:
    """The ops of ``backend.ops`` that need the rules above, wrapped (the rest stay the
    adapter's own functions, which the property tests show already follow them).

    The broadcasting ops promote mixed dtypes and Python scalars (`promote`,
    `scalar_result`) and turn the framework's broadcasting error into a `ShapeError`
    naming the shapes; the float-result ops and ``sum`` cast their input first when its
    dtype calls for it; ``max``/``min`` raise `ShapeError` over an empty axis (NumPy
    raises ``ValueError``, TensorFlow would return ``-inf``). On the happy path (one
    dtype) a wrapper costs one Python call and a dtype comparison.
    """
    rules = _Rules(backend)
    ops = backend.ops
    out = {n: rules.binary(getattr(ops, n), n) for n in BROADCASTING_OPS if n != "where"}
    out["where"] = rules.where(ops.where)
    for n in FLOAT_RESULT_OPS:
        out[n] = rules.unary(getattr(ops, n), n, float_result)
    out["sum"] = rules.unary(ops.sum, "sum", sum_result)
    for n in ("max", "min"):
        out[n] = rules.nonempty(getattr(ops, n), n)
    b = backend

    def axis_of(name: str, extra: int = 0, default: Any = None) -> Callable[..., ShapeError | None]:
        def explain(x: Any, axis: Any = default, *_: Any, **__: Any) -> ShapeError | None:
            return axis_error(name, tuple(b.shape(x)), axis, extra)

        return explain

    for n in ("sum", "mean", "max", "min", "norm"):
        out[n] = _error_checked(out[n], n, axis_of(n))
    for n in ("softmax", "log_softmax"):
        out[n] = _error_checked(out[n], n, axis_of(n, default=-1))
    out["expand_dims"] = _error_checked(ops.expand_dims, "expand_dims", axis_of("expand_dims", 1))
    out["reshape"] = _error_checked(ops.reshape, "reshape", lambda x, shape: _reshape_error(b, x, shape))
    for n in ("matmul", "dot"):
        out[n] = _error_checked(getattr(ops, n), n, lambda x, y, n=n: _matmul_error(n, b, x, y))
    out["linear"] = _error_checked(ops.linear, "linear", lambda *a: _linear_error(b, *a))
    for n in ("concat", "stack"):
        out[n] = _error_checked(getattr(ops, n), n, lambda xs, axis=0, n=n: _join_error(n, b, xs, axis))
    split = ops.split

    def checked_split(x: Any, indices_or_sections: Any, axis: int = 0) -> Any:
        # Checked before the call: torch and Paddle would split unevenly where NumPy raises.
        shape = tuple(b.shape(x)) if b.is_tensor(x) else tuple(np.shape(x))
        return split(x, split_args(shape, indices_or_sections, axis), axis)

    out["split"] = _named(checked_split, split, "split")
    out["transpose"] = _error_checked(ops.transpose, "transpose", lambda x, axes=None: _transpose_error(b, x, axes))
    out["index_update"] = _error_checked(
        ops.index_update, "index_update", lambda x, index, value: _index_error(b, x, index, value)
    )
    squeeze = ops.squeeze

    def checked_squeeze(x: Any, axis: Any = None) -> Any:
        if axis is not None and b.is_tensor(x):
            shape = tuple(b.shape(x))
            err = axis_error("squeeze", shape, axis)
            if err is None:
                axes = (axis,) if isinstance(axis, int) else tuple(axis)
                wide = [a for a in axes if shape[a] != 1]
                if wide:  # NumPy raises; Paddle would silently keep the axis
                    err = ShapeError(
                        f"ops.squeeze: axis {axis!r} of a tensor of shape {shape} has size "
                        f"{shape[wide[0]]}, not 1; only axes of size 1 can be squeezed."
                    )
            if err is not None:
                raise err
        return squeeze(x, axis=axis)

    out["squeeze"] = _named(checked_squeeze, squeeze, "squeeze")
    return out


def item_assignment_error(exc: BaseException, where: str) -> TensorWriteError | None:
    """The `TensorWriteError` to raise instead of ``exc`` when ``exc`` is a framework's
    refusal of item assignment on one of its tensors (TensorFlow: ``'EagerTensor' object
    does not support item assignment``; JAX: ``JAX arrays are immutable``), or None.
    ``where`` names the code that ran (a block, the closure given to `autograd.grad`)."""
    msg = str(exc)
    if not isinstance(exc, TypeError) or isinstance(exc, D2LCompatError):
        return None
    if "item assignment" not in msg or not ("Tensor" in msg or "JAX arrays" in msg):
        return None
    return TensorWriteError(
        f"{where} writes into a tensor (`Y[i, j] = v`), which this framework's tensors "
        "refuse (TensorFlow and JAX tensors are immutable). Write "
        "`Y = ops.index_update(Y, (i, j), v)` instead: a new tensor with the write "
        "applied, the same on every backend (docs/divergences.md). "
        f"The framework said: {msg.splitlines()[0] if msg else type(exc).__name__}"
    )
