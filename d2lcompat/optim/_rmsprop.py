"""RMSProp (PyTorch's rule, optional momentum and centering)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from .. import ops as _ops
from ._base import Optimizer, _number

__all__ = ["RMSProp"]


class RMSProp(Optimizer):
    """RMSProp (PyTorch's rule)::

        g ← g + wd·w
        v ← α·v + (1 − α)·g²
        d ← √(v − ḡ²) + ε  with ḡ ← α·ḡ + (1 − α)·g  when centered,  else  √v + ε
        b ← μ·b + g/d and w ← w − lr·b  when momentum μ > 0,  else  w ← w − lr·g/d

    Gluon's ``gamma1`` is ``alpha``.

    Examples
    --------
    >>> from d2lcompat import optim
    >>> optim.RMSProp(lr=0.01)
    RMSProp(lr=0.01, alpha=0.99, eps=1e-08, momentum=0, centered=0, weight_decay=0)
    """

    name: ClassVar[str] = "rmsprop"

    def __init__(
        self,
        params: Any = None,
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        self.alpha = _number("RMSProp", "alpha (gamma1)", alpha, 0.0, 1.0)
        self.eps = _number("RMSProp", "eps (epsilon)", eps, 0.0)
        self.momentum = _number("RMSProp", "momentum", momentum, 0.0, 1.0)
        self.centered = bool(centered)
        super().__init__(params, lr, weight_decay)

    @property  # type: ignore[override]
    def slot_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """``square_avg``, then ``grad_avg`` when centered, ``momentum`` with momentum."""
        names = ["square_avg"]
        if self.centered:
            names.append("grad_avg")
        if self.momentum:
            names.append("momentum")
        return tuple(names)

    def scalars(self, t: int) -> tuple[float, ...]:
        return (self.lr,)

    def rule(self, w: Any, g: Any, slots: Sequence[Any], s: Sequence[Any]) -> tuple[Any, list[Any]]:
        if self.weight_decay:
            g = g + self.weight_decay * w
        a = self.alpha
        v = a * slots[0] + (1.0 - a) * (g * g)
        new = [v]
        i = 1
        if self.centered:
            gbar = a * slots[i] + (1.0 - a) * g
            new.append(gbar)
            i += 1
            denom = _ops.sqrt(v - gbar * gbar) + self.eps
        else:
            denom = _ops.sqrt(v) + self.eps
        if self.momentum:
            buf = self.momentum * slots[i] + g / denom
            new.append(buf)
            return w - s[0] * buf, new
        return w - s[0] * (g / denom), new

    def hyper_parameters(self) -> dict[str, float]:
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps, "momentum": self.momentum,
                "centered": float(self.centered), "weight_decay": self.weight_decay}
