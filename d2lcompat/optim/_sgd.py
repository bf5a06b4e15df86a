"""SGD with momentum, Nesterov momentum and weight decay (PyTorch's rule)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from ._base import Optimizer, OptimizerError, _number

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent (PyTorch's rule, dampening 0)::

        g ← g + wd·w
        v ← μ·v + g                      (when momentum μ > 0; v starts at 0)
        g ← g + μ·v  if nesterov  else  v
        w ← w − lr·g

    Examples
    --------
    >>> from d2lcompat import optim
    >>> optim.SGD(lr=0.1, momentum=0.9)
    SGD(lr=0.1, momentum=0.9, nesterov=0, weight_decay=0)
    """

    name: ClassVar[str] = "sgd"

    def __init__(
        self,
        params: Any = None,
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        self.momentum = _number("SGD", "momentum", momentum, 0.0, 1.0)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise OptimizerError("SGD: nesterov=True needs a momentum > 0.")
        super().__init__(params, lr, weight_decay)

    @property  # type: ignore[override]
    def slot_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """Plain SGD keeps no state; with momentum, one velocity per parameter."""
        return ("momentum",) if self.momentum else ()

    def scalars(self, t: int) -> tuple[float, ...]:
        return (self.lr,)

    def rule(self, w: Any, g: Any, slots: Sequence[Any], s: Sequence[Any]) -> tuple[Any, list[Any]]:
        if self.weight_decay:
            g = g + self.weight_decay * w
        if not self.momentum:
            return w - s[0] * g, []
        v = self.momentum * slots[0] + g
        step = g + self.momentum * v if self.nesterov else v
        return w - s[0] * step, [v]

    def hyper_parameters(self) -> dict[str, float]:
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": float(self.nesterov),
                "weight_decay": self.weight_decay}
