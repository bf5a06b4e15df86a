"""Adam and AdamW (PyTorch's rules, bias-corrected)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from .. import ops as _ops
from ._base import Optimizer, _number

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam (PyTorch's rule; L2 weight decay added to the gradient)::

        g ← g + wd·w
        m ← β1·m + (1 − β1)·g
        v ← β2·v + (1 − β2)·g²
        w ← w − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)

    Examples
    --------
    >>> from d2lcompat import optim
    >>> optim.Adam(lr=0.01)
    Adam(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0)
    """

    name: ClassVar[str] = "adam"
    slot_names: ClassVar[tuple[str, ...]] = ("m", "v")

    def __init__(
        self,
        params: Any = None,
        lr: float = 1e-3,
        betas: tuple[float, float] | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        beta1: float = 0.9,
        beta2: float = 0.999,
    ) -> None:
        owner = type(self).__name__
        if betas is not None:
            beta1, beta2 = betas
        self.beta1 = _number(owner, "beta1", beta1, 0.0, 1.0)
        self.beta2 = _number(owner, "beta2", beta2, 0.0, 1.0)
        self.eps = _number(owner, "eps (epsilon)", eps, 0.0)
        super().__init__(params, lr, weight_decay)

    def scalars(self, t: int) -> tuple[float, ...]:
        bc1 = 1.0 - self.beta1**t
        bc2 = 1.0 - self.beta2**t
        return (self.lr / bc1, math.sqrt(bc2))

    def rule(self, w: Any, g: Any, slots: Sequence[Any], s: Sequence[Any]) -> tuple[Any, list[Any]]:
        if self.weight_decay:
            g = g + self.weight_decay * w
        return self._adam(w, g, slots, s)

    def _adam(self, w: Any, g: Any, slots: Sequence[Any], s: Sequence[Any]) -> tuple[Any, list[Any]]:
        b1, b2 = self.beta1, self.beta2
        m = b1 * slots[0] + (1.0 - b1) * g
        v = b2 * slots[1] + (1.0 - b2) * (g * g)
        denom = _ops.sqrt(v) / s[1] + self.eps
        return w - s[0] * (m / denom), [m, v]

    def hyper_parameters(self) -> dict[str, float]:
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (PyTorch's rule, default wd 0.01)::

        w ← w · (1 − lr·wd)
        then the Adam step of w with the plain gradient

    Examples
    --------
    >>> from d2lcompat import optim
    >>> optim.AdamW(lr=0.01).weight_decay
    0.01
    """

    name: ClassVar[str] = "adamw"

    def __init__(
        self,
        params: Any = None,
        lr: float = 1e-3,
        betas: tuple[float, float] | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        beta1: float = 0.9,
        beta2: float = 0.999,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, beta1, beta2)

    def scalars(self, t: int) -> tuple[float, ...]:
        return (*super().scalars(t), 1.0 - self.lr * self.weight_decay)

    def rule(self, w: Any, g: Any, slots: Sequence[Any], s: Sequence[Any]) -> tuple[Any, list[Any]]:
        if self.weight_decay:
            w = w * s[2]
        return self._adam(w, g, slots, s)
