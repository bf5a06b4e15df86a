"""`clip_global_norm`: Gluon's ``gluon.utils.clip_global_norm`` on tensors and Parameters."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from . import ops as _ops
from ._errors import D2LCompatError, D2LCompatWarning
from ._parameter import Parameter
from ._registry import active

__all__ = ["clip_global_norm", "global_norm_scale"]


def global_norm_scale(grads: Sequence[Any], max_norm: float) -> tuple[Any, Any]:
    """``(total_norm, scale)`` as native 0-d tensors, with no host synchronization (the
    compiled training step uses it): ``total_norm = sqrt(sum of every squared
    element)``, ``scale = min(max_norm / (total_norm + 1e-8), 1)``."""
    total = None
    for g in grads:
        sq = _ops.sum(_ops.square(_ops.cast(g, "float32")))
        total = sq if total is None else total + sq
    assert total is not None
    norm = _ops.sqrt(total)
    # min(max_norm / (norm + 1e-8), 1), built from the norm alone (traceable).
    scale = float(max_norm) / _ops.maximum(norm + 1e-8, float(max_norm))
    return norm, scale


def clip_scaled(grads: Sequence[Any], max_norm: float, scale: float = 1.0) -> tuple[Any, list[Any]]:
    """Eagerly, ``(norm, clipped)``: ``norm`` the global norm of ``g * scale`` over
    ``grads`` (a 0-d tensor), ``clipped`` each ``g`` times ``min(max_norm / (norm +
    1e-8), 1)``. The adapter's multi-tensor kernels where it has them
    (`Backend.clip_by_global_norm`), else `global_norm_scale` over ops."""
    b = active()
    fused = b.clip_by_global_norm(grads, max_norm, scale)
    if fused is not None:
        return fused
    norm, clip = global_norm_scale([g * scale for g in grads] if scale != 1.0 else grads, max_norm)
    return norm, [g * _ops.cast(clip, b.dtype(g)) for g in grads]


def _check_max_norm(max_norm: Any) -> float:
    if isinstance(max_norm, bool) or not isinstance(max_norm, int | float):
        raise D2LCompatError(
            f"clip_global_norm: max_norm must be a positive number; got {max_norm!r}."
        )
    value = float(max_norm)
    if not value > 0 or math.isinf(value):
        raise D2LCompatError(f"clip_global_norm: max_norm must be a positive number; got {max_norm!r}.")
    return value


def clip_global_norm(arrays: Any, max_norm: float, check_isfinite: bool = True) -> Any:
    """Rescale gradients so that their joint L2 norm is at most ``max_norm`` (Gluon's
    ``gluon.utils.clip_global_norm``; the book's ``grad_clipping``).

    * A dict or list of gradient tensors: returns ``(clipped, total_norm)``, ``clipped``
      of the same structure (dict keys and order kept), each tensor times
      ``min(max_norm / (total_norm + 1e-8), 1)``.
    * A `ParameterDict`, a dict of Parameters or a list of Parameters: rescales each
      parameter's stored gradient (``param.grad()``) and returns ``total_norm``;
      parameters without a gradient are left out.

    ``total_norm`` is the norm before clipping: a Python float when ``check_isfinite``
    (then a NaN or infinite norm warns, as Gluon does), else a 0-d native tensor (no
    host synchronization).

    Examples
    --------
    >>> import d2lcompat
    >>> from d2lcompat import ops
    >>> clipped, norm = d2lcompat.clip_global_norm([ops.tensor([3.0, 0.0]), ops.tensor([4.0])], 1.0)
    >>> round(norm, 4), [ops.to_numpy(g).round(4).tolist() for g in clipped]
    (5.0, [[0.6, 0.0], [0.8]])
    """
    limit = _check_max_norm(max_norm)
    if isinstance(arrays, Mapping) or (hasattr(arrays, "keys") and hasattr(arrays, "items")):
        keys = list(arrays.keys())  # a dict, or a ParameterDict
        items = [arrays[k] for k in keys]
    elif isinstance(arrays, list | tuple):
        keys = None
        items = list(arrays)
    else:
        raise D2LCompatError(
            "clip_global_norm takes a dict or list of gradient tensors, or a ParameterDict / "
            f"list of Parameters; received {type(arrays).__name__}."
        )
    if not items:
        raise D2LCompatError("clip_global_norm: nothing to clip (an empty collection).")
    is_param = [isinstance(a, Parameter) for a in items]
    if any(is_param) and not all(is_param):
        raise D2LCompatError(
            "clip_global_norm: pass either gradient tensors or Parameters, not a mix of both."
        )
    b = active()
    if all(is_param):
        params = [p for p in items if p.grad() is not None]
        if not params:
            raise D2LCompatError(
                "clip_global_norm: no parameter has a gradient yet; compute gradients with "
                "d2lcompat.autograd.grad(...) first."
            )
        grads = [p.grad() for p in params]
    else:
        for i, a in enumerate(items):
            if not b.is_tensor(a):
                where = f"key {keys[i]!r}" if keys is not None else f"item {i}"
                raise D2LCompatError(
                    f"clip_global_norm: {where} is a {type(a).__name__}, not a tensor."
                )
        grads = items
    norm, clipped = clip_scaled(grads, limit)
    if check_isfinite:
        total: Any = float(_ops.item(norm))
        if not math.isfinite(total):
            warnings.warn(
                "clip_global_norm: nan or inf is detected in the gradients; the clipped "
                "values are undefined.",
                D2LCompatWarning,
                stacklevel=2,
            )
    else:
        total = norm
    if all(is_param):
        for p, g in zip(params, clipped):
            p._grad = g
            b.clear_native_grad(p._var)
        return total
    if keys is not None:
        return dict(zip(keys, clipped)), total
    return (type(items)(clipped) if isinstance(arrays, tuple) else clipped), total
