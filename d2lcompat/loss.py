"""Gluon's losses, one value per sample, the same on every backend (``d2lcompat.loss``).

Each loss is a `Block` without parameters: ``loss(pred, label[, sample_weight])``
returns a tensor of shape ``(batch,)``, the mean of the element-wise loss over every
axis but the first (the batch axis), as Gluon does. They are written once against
`d2lcompat.ops`, so the formula is the same on every backend, and each is numerically
stable: softmax cross-entropy goes through ``log_softmax`` (log-sum-exp), the sigmoid
binary cross-entropy through ``max(x, 0) - x·z + log(1 + exp(-|x|))``.

=============================  ==========================================================
loss                           element-wise value (``d = pred - label``)
=============================  ==========================================================
`L2Loss`                       ``0.5 · d²``
`L1Loss`                       ``|d|``
`HuberLoss` (``rho``)          ``0.5 · d² / rho`` where ``|d| ≤ rho``, else ``|d| - 0.5 · rho``
`SoftmaxCrossEntropyLoss`      ``-Σ_c label_c · log_softmax(pred)_c`` (sparse: the label's class)
`SigmoidBinaryCrossEntropyLoss` ``-(z·log σ(x) + (1 - z)·log(1 - σ(x)))``
=============================  ==========================================================

Examples
--------
>>> from d2lcompat import loss, ops
>>> l2 = loss.L2Loss()
>>> ops.to_numpy(l2(ops.tensor([[1.0, 3.0]]), ops.tensor([[0.0, 0.0]]))).tolist()
[2.5]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import ops as _ops
from ._errors import D2LCompatError, LabelError, ShapeError
from ._registry import active
from ._semantics import float_result, is_float
from .nn._block import Block

__all__ = [
    "HuberLoss",
    "L1Loss",
    "L2Loss",
    "Loss",
    "SigmoidBCELoss",
    "SigmoidBinaryCrossEntropyLoss",
    "SoftmaxCELoss",
    "SoftmaxCrossEntropyLoss",
]


class Loss(Block):
    """Base class of the losses: ``weight`` scales every value; subclasses implement
    `elementwise` and the base takes the mean over the non-batch axes.

    Parameters
    ----------
    weight : float or None
        A global scale of the loss (Gluon's ``weight``).
    batch_axis : int
        The batch axis; only ``0`` is supported (the axis the mean keeps).
    """

    def __init__(self, weight: float | None = None, batch_axis: int = 0) -> None:
        super().__init__()
        if batch_axis != 0:
            raise D2LCompatError(
                f"{type(self).__name__}: batch_axis={batch_axis} is not supported; put the "
                "batch first (batch_axis=0), as Gluon's default."
            )
        self._weight = weight

    def elementwise(self, pred: Any, label: Any) -> Any:
        """The element-wise loss (shape of ``pred``)."""
        raise NotImplementedError

    #: Whether `check_labels` checks anything (`d2lcompat.train_step` then calls it at
    #: the entry of a compiled step).
    checks_labels: bool = False

    def check_labels(self, pred_shape: tuple[int, ...], label: Any) -> None:
        """Validate concrete (not traced) labels for predictions of ``pred_shape`` on the
        host; raise `LabelError` for values the loss cannot use. The base accepts
        everything; `SoftmaxCrossEntropyLoss` checks sparse class indices.
        `d2lcompat.train_step` calls it at the entry of a compiled step, where the
        labels are still concrete."""

    def _summed(self) -> Callable[[Any, Any], Any] | None:
        """A function ``(pred, label) -> Σ over the batch of self(pred, label)`` (a 0-d
        tensor, no ``sample_weight``) that is cheaper than ``ops.sum(self(pred, label))``,
        or None where there is none. Private: `d2lcompat.train_step` asks once per loss
        and differentiates the sum. A subclass that overrides ``forward``,
        ``elementwise`` or ``__call__`` gets None (its own code then runs)."""
        return None

    def forward(self, pred: Any, label: Any, sample_weight: Any = None) -> Any:
        value = self.elementwise(pred, label)
        if sample_weight is not None:
            value = value * sample_weight
        if self._weight is not None:
            value = value * self._weight
        return _batch_mean(value)

    def _like(self, pred: Any, label: Any) -> Any:
        """``label`` reshaped to ``pred``'s shape (Gluon's ``reshape_like``): a label of
        shape ``(N,)`` against a prediction ``(N, 1)`` is common."""
        b = active()
        ps, ls = b.shape(pred), b.shape(label)
        if ps == ls:
            return label
        sp, sl = _size(ps), _size(ls)
        if sp != sl and sp >= 0 and sl >= 0:  # -1: unknown while a compiler traces
            raise ShapeError(
                f"{type(self).__name__}: prediction of shape {ps} and label of shape {ls} "
                "have different sizes. Pass one label per prediction value."
            )
        return _ops.reshape(label, ps)


def _block_scoped() -> bool:
    """Whether `Block.__call__` wraps each forward in a device scope (`_SCOPED`): a loss
    called without it would run outside that scope."""
    from .nn import _block

    return bool(_block._SCOPED)


def _size(shape: tuple[int, ...]) -> int:
    """The element count; -1 when a size is unknown (``None`` while a ``tf.function``
    traces with a relaxed batch axis)."""
    n = 1
    for s in shape:
        if s is None:
            return -1
        n *= s
    return n


def _batch_mean(value: Any) -> Any:
    nd = len(active().shape(value))
    if nd <= 1:
        return value
    return _ops.mean(value, axis=tuple(range(1, nd)))


class L2Loss(Loss):
    """``0.5 · (pred - label)²``, averaged over the non-batch axes.

    Examples
    --------
    >>> from d2lcompat import loss, ops
    >>> ops.to_numpy(loss.L2Loss()(ops.tensor([2.0, 0.0]), ops.tensor([0.0, 0.0]))).tolist()
    [2.0, 0.0]
    """

    def elementwise(self, pred: Any, label: Any) -> Any:
        label = self._like(pred, label)
        b = active()
        if b.is_tensor(label):
            dtype = b.dtype(pred)
            if dtype == b.dtype(label) and is_float(dtype):
                # One fused kernel where the framework has one (torch: F.mse_loss).
                return 0.5 * b.squared_difference(pred, label)
        d = _ops.subtract(pred, label)  # mixed dtypes: the core's promotion rules
        return 0.5 * (d * d)

    def _summed(self) -> Callable[[Any, Any], Any] | None:
        # Σ_i mean_j 0.5·w·d_ij² = (0.5·w / k)·Σ_ij d_ij² with k the non-batch size: one
        # reduction (torch: one mse_loss(reduction='sum') kernel each way) instead of the
        # per-sample mean and the step's sum. The same number up to rounding.
        cls = type(self)
        if (cls.forward is not Loss.forward or cls.elementwise is not L2Loss.elementwise
                or cls.__call__ is not Block.__call__ or _block_scoped()):
            return None
        half = 0.5 if self._weight is None else 0.5 * self._weight
        general = self._sum_of_call
        b = active()

        def summed(pred: Any, label: Any) -> Any:
            if b.is_tensor(label):
                ps = b.shape(pred)
                if ps == b.shape(label) and len(ps) >= 1:
                    dtype = b.dtype(pred)
                    if dtype == b.dtype(label) and is_float(dtype):
                        k = _size(ps[1:])
                        if k > 0:
                            return (half / k) * b.squared_difference_sum(pred, label)
            return general(pred, label)

        return summed

    def _sum_of_call(self, pred: Any, label: Any) -> Any:
        return _ops.sum(self(pred, label))


class L1Loss(Loss):
    """``|pred - label|``, averaged over the non-batch axes.

    Examples
    --------
    >>> from d2lcompat import loss, ops
    >>> ops.to_numpy(loss.L1Loss()(ops.tensor([[2.0, -1.0]]), ops.tensor([[0.0, 0.0]]))).tolist()
    [1.5]
    """

    def elementwise(self, pred: Any, label: Any) -> Any:
        return _ops.abs(pred - self._like(pred, label))


class HuberLoss(Loss):
    """Smooth L1: ``0.5·d²/rho`` where ``|d| ≤ rho``, else ``|d| - 0.5·rho`` (Gluon's).

    Examples
    --------
    >>> from d2lcompat import loss, ops
    >>> ops.to_numpy(loss.HuberLoss()(ops.tensor([0.5, 3.0]), ops.tensor([0.0, 0.0]))).tolist()
    [0.125, 2.5]
    """

    def __init__(self, rho: float = 1.0, weight: float | None = None, batch_axis: int = 0) -> None:
        super().__init__(weight, batch_axis)
        if not rho > 0:
            raise D2LCompatError(f"HuberLoss: rho must be > 0; received {rho!r}.")
        self._rho = float(rho)

    def elementwise(self, pred: Any, label: Any) -> Any:
        d = _ops.abs(pred - self._like(pred, label))
        rho = self._rho
        return _ops.where(d > rho, d - 0.5 * rho, (0.5 / rho) * (d * d))


class SoftmaxCrossEntropyLoss(Loss):
    """Softmax cross-entropy over ``axis``: ``-Σ label · log_softmax(pred)``.

    Parameters
    ----------
    axis : int
        The class axis of ``pred``.
    sparse_label : bool
        True: ``label`` holds class indices (shape ``pred`` without ``axis``, or with
        a trailing 1). False: ``label`` is a distribution of ``pred``'s shape.
    from_logits : bool
        True: ``pred`` already holds log-probabilities (no ``log_softmax`` applied).

    Examples
    --------
    >>> from d2lcompat import loss, ops
    >>> ce = loss.SoftmaxCrossEntropyLoss()
    >>> logits = ops.tensor([[0.0, 0.0], [1e4, -1e4]])
    >>> [round(v, 4) for v in ops.to_numpy(ce(logits, ops.tensor([1, 0]))).tolist()]
    [0.6931, 0.0]
    """

    def __init__(
        self,
        axis: int = -1,
        sparse_label: bool = True,
        from_logits: bool = False,
        weight: float | None = None,
        batch_axis: int = 0,
    ) -> None:
        super().__init__(weight, batch_axis)
        self._axis = int(axis)
        self._sparse = bool(sparse_label)
        self._from_logits = bool(from_logits)
        self.checks_labels = self._sparse

    def forward(self, pred: Any, label: Any, sample_weight: Any = None) -> Any:
        axis = self._axis
        if self._sparse and not active().is_traced(label):
            # Eagerly the labels are concrete: check them here. Inside a compiled
            # function (traced labels) `train_step` checked them before the call.
            self.check_labels(active().shape(pred), label)
        if self._sparse:
            b = active()
            shape = b.shape(pred)
            axis %= len(shape)
            if not is_float(b.dtype(pred)):
                pred = _ops.cast(pred, float_result(b.dtype(pred)))
            value = b.sparse_softmax_cross_entropy(
                pred, self._sparse_label(shape, axis, label), axis, self._from_logits
            )
        else:
            logp = pred if self._from_logits else _ops.log_softmax(pred, axis=axis)
            value = -_ops.sum(logp * self._like(pred, label), axis=axis)
        if sample_weight is not None:
            value = value * _ops.reshape(sample_weight, active().shape(value))
        if self._weight is not None:
            value = value * self._weight
        return _batch_mean(value)

    def check_labels(self, pred_shape: tuple[int, ...], label: Any) -> None:
        """Sparse labels must be class indices in ``[0, classes)``: an integer tensor,
        or a float tensor of whole numbers (no NaN). Anything else raises `LabelError`
        naming the bad values and the number of classes (one ``min``/``max`` on the host
        for integer labels).

        Examples
        --------
        >>> from d2lcompat import loss, ops
        >>> from d2lcompat import LabelError
        >>> try:
        ...     loss.SoftmaxCrossEntropyLoss().check_labels((2, 3), ops.tensor([0, 7, -1]))
        ... except LabelError as e:
        ...     print(str(e).split(";")[1].split(".")[0])
         received the values [-1, 7]
        """
        if not self._sparse or not pred_shape:
            return
        classes = int(pred_shape[self._axis % len(pred_shape)])
        host = np.asarray(active().to_numpy(label))
        if host.size == 0:
            return
        kind = host.dtype.kind
        if kind == "f" or kind == "c":
            flat = host.reshape(-1)
            whole = np.isfinite(flat)
            whole[whole] = flat[whole] == np.floor(flat[whole])
            if not whole.all():
                bad = _shown(flat[~whole])
                raise LabelError(
                    f"{type(self).__name__}: sparse labels must be class indices; the float "
                    f"label tensor holds {int((~whole).sum())} value(s) that are NaN, infinite "
                    f"or not whole numbers ({bad}), for {classes} classes. Pass integer class "
                    "indices (for example labels.astype('int64')), or soft labels with "
                    "sparse_label=False."
                )
        elif kind not in "iub":
            raise LabelError(
                f"{type(self).__name__}: sparse labels must be class indices (integers); "
                f"received a {host.dtype} tensor, for {classes} classes."
            )
        low, high = host.min(), host.max()
        if low < 0 or high >= classes:
            flat = host.reshape(-1)
            bad = _shown(flat[(flat < 0) | (flat >= classes)])
            raise LabelError(
                f"{type(self).__name__}: sparse labels must be class indices in [0, {classes}) "
                f"({classes} classes along axis {self._axis} of the predictions); received "
                f"the values {bad}. Check the label encoding, or give the output layer as "
                "many units as there are classes."
            )

    def _sparse_label(self, shape: tuple[int, ...], axis: int, label: Any) -> Any:
        """``label`` as one class index per sample: ``shape`` without ``axis`` (a
        trailing 1 or any layout of the same size is reshaped, as Gluon's ``pick``)."""
        want = shape[:axis] + shape[axis + 1 :]
        lshape = active().shape(label)
        if lshape == want:
            return label
        sl, sw = _size(lshape), _size(want)
        if sl != sw and sl >= 0 and sw >= 0:
            raise ShapeError(
                f"SoftmaxCrossEntropyLoss: sparse labels of shape {lshape} do not fit "
                f"predictions of shape {shape} (expected {want}: one class index per "
                "sample). Pass sparse_label=False for one-hot or soft labels."
            )
        return _ops.reshape(label, want)


def _shown(values: np.ndarray, most: int = 8) -> str:
    """The distinct ``values`` as a short list for a message (at most ``most`` shown)."""
    uniq = np.unique(values)  # NaN sorts last and np.unique keeps each NaN: fold them
    if uniq.dtype.kind == "f":
        nan = np.isnan(uniq)
        uniq = np.concatenate([uniq[~nan], uniq[nan][:1]])
    items = [v.item() for v in uniq[:most]]
    more = f" and {len(uniq) - most} more" if len(uniq) > most else ""
    return f"{items}{more}"


class SigmoidBinaryCrossEntropyLoss(Loss):
    """Binary cross-entropy: ``-(z·log σ(x) + (1 - z)·log(1 - σ(x)))``.

    ``from_sigmoid=False`` (default) takes logits and computes it stably as
    ``max(x, 0) - x·z + log(1 + exp(-|x|))``; ``from_sigmoid=True`` takes
    probabilities (clipped by 1e-12 inside the logarithms, as Gluon).

    Examples
    --------
    >>> from d2lcompat import loss, ops
    >>> bce = loss.SigmoidBinaryCrossEntropyLoss()
    >>> [round(v, 4) for v in ops.to_numpy(bce(ops.tensor([0.0, 100.0]), ops.tensor([1.0, 1.0]))).tolist()]
    [0.6931, 0.0]
    """

    def __init__(
        self, from_sigmoid: bool = False, weight: float | None = None, batch_axis: int = 0
    ) -> None:
        super().__init__(weight, batch_axis)
        self._from_sigmoid = bool(from_sigmoid)

    def elementwise(self, pred: Any, label: Any) -> Any:
        z = self._like(pred, label)
        if self._from_sigmoid:
            eps = 1e-12
            return -(z * _ops.log(pred + eps) + (1.0 - z) * _ops.log(1.0 - pred + eps))
        return _ops.relu(pred) - pred * z + _ops.log(1.0 + _ops.exp(-_ops.abs(pred)))


#: Gluon's short names.
SoftmaxCELoss = SoftmaxCrossEntropyLoss
SigmoidBCELoss = SigmoidBinaryCrossEntropyLoss
