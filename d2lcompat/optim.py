"""Optimizers that update parameters in place through the adapter (``d2lcompat.optim``).

The variable object of each parameter stays the same, so tied parameters stay
one object and native tools holding ``param.native()`` keep seeing the values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._parameter import Parameter
from ._registry import active

__all__ = ["SGD"]


class SGD:
    """Stochastic gradient descent with optional momentum and weight decay
    (PyTorch's update rule: ``v = momentum·v + g + wd·w``; ``w -= lr·v``).

    Examples
    --------
    >>> from d2lcompat import nn, ops, autograd, optim, init
    >>> net = nn.Dense(1, in_units=1, use_bias=False); net.initialize(init.Constant(1.0))
    >>> params = net.collect_params()
    >>> _, g = autograd.grad(lambda: ops.sum(net(ops.ones((1, 1)))), params)
    >>> optim.SGD(params, lr=0.5).step(g)
    >>> ops.item(net.weight.data())
    0.5
    """

    def __init__(
        self,
        params: Mapping[str, Parameter] | Iterable[Parameter],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"SGD learning rate must be > 0, got {lr}")
        items = list(params.items()) if hasattr(params, "items") else [(p.name, p) for p in params]  # type: ignore[union-attr]
        self._params: dict[str, Parameter] = {}
        for name, p in items:
            if all(q is not p for q in self._params.values()):
                self._params[name] = p
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self._velocity: dict[str, Any] = {}

    def step(self, grads: Mapping[str, Any] | None = None) -> None:
        """Update every trainable parameter from ``grads`` ({name: gradient}, as
        returned by `autograd.grad`) or, when None, from each ``param.grad()``."""
        b = active()
        for name, p in self._params.items():
            if p.grad_req == "null":
                continue
            g = p.grad() if grads is None else grads.get(name)
            if g is None:
                continue
            w = b.stop_gradient(b.read(p.native()))
            g = b.stop_gradient(g)
            if self.weight_decay:
                g = g + self.weight_decay * w
            if self.momentum:
                v = self._velocity.get(name)
                v = g if v is None else self.momentum * v + g
                self._velocity[name] = v
                g = v
            p._var = b.assign(p._var, w - self.lr * g)

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for p in self._params.values():
            p.zero_grad()
