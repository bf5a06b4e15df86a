"""`Optimizer`: one update rule, written once against native tensor arithmetic.

Where is the update rule? Each optimizer implements two small pieces:

* `Optimizer.scalars` — the per-step host numbers (learning rate, bias corrections),
  computed in float64 on the host from the step count;
* `Optimizer.rule` — the update of one parameter from its gradient, its slots
  (momentum, moments) and those scalars, written with Python operators and
  `d2lcompat.ops`, so it runs unchanged on native tensors, eagerly and under every
  framework's compiler (`d2lcompat.train_step`).

The optimizer also owns the per-parameter slots and the step count, and applies the
rule in place (`apply`), so a tied parameter is one entry and updates once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from .._errors import D2LCompatError
from .._parameter import Parameter
from .._registry import active

__all__ = ["Optimizer", "OptimizerError", "create", "registered"]


class OptimizerError(D2LCompatError, ValueError):
    """A bad optimizer name or hyper-parameter (names the key and the valid values)."""


OptimizerError.__module__ = "d2lcompat.optim"  # where users import it from


_REGISTRY: dict[str, type[Optimizer]] = {}

#: Gluon's hyper-parameter keys, accepted beside the keyword names.
GLUON_KEYS = {
    "learning_rate": "lr",
    "wd": "weight_decay",
    "beta1": "beta1",
    "beta2": "beta2",
    "epsilon": "eps",
    "gamma1": "alpha",
}


def registered() -> dict[str, type[Optimizer]]:
    """The optimizers `create` knows, by lower-case name."""
    return dict(_REGISTRY)


def create(name: str | Optimizer, params: Any = None, **hyper: Any) -> Optimizer:
    """An optimizer by name (``'sgd'``, ``'adam'``, ``'adamw'``, ``'rmsprop'``), with
    Gluon's hyper-parameter keys or the keyword names.

    Examples
    --------
    >>> from d2lcompat import optim
    >>> optim.create("adam", learning_rate=0.01).lr
    0.01
    """
    if isinstance(name, Optimizer):
        if hyper:
            raise OptimizerError(
                "Pass hyper-parameters to the optimizer's constructor, not beside an "
                f"optimizer instance (received {sorted(hyper)})."
            )
        if params is not None:
            name.bind(params)
        return name
    if not isinstance(name, str) or name.lower() not in _REGISTRY:
        raise OptimizerError(
            f"Unknown optimizer {name!r}; valid names are {', '.join(sorted(_REGISTRY))}."
        )
    cls = _REGISTRY[name.lower()]
    kwargs: dict[str, Any] = {}
    for key, value in hyper.items():
        kw = GLUON_KEYS.get(key, key)
        if kw in kwargs:
            raise OptimizerError(f"{cls.__name__}: {key!r} and {kw!r} both given; pass one.")
        kwargs[kw] = value
    return cls(params, **kwargs)


def _number(owner: str, key: str, value: Any, low: float, high: float = math.inf,
            low_open: bool = False, high_open: bool = True) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise OptimizerError(f"{owner}: {key} must be a number; received {value!r}.") from None
    ok_low = v > low if low_open else v >= low
    ok_high = v < high if high_open else v <= high
    if not (ok_low and ok_high and math.isfinite(v)):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise OptimizerError(f"{owner}: {key} must be in {lo}{low}, {high}{hi}; received {value!r}.")
    return v


def _named(params: Mapping[str, Parameter] | Iterable[Parameter]) -> list[tuple[str, Parameter]]:
    if isinstance(params, Parameter):
        return [(params.name, params)]
    if hasattr(params, "items"):
        return list(params.items())  # type: ignore[union-attr]
    return [(p.name, p) for p in params]


class Optimizer:
    """Base class: hyper-parameters, slots, step count, and the in-place update.

    Subclasses set `name`, `slot_names` and implement `scalars` and `rule`.
    ``params`` may be given at construction (the chapter-5 style
    ``optim.SGD(params, lr=0.1).step(grads)``) or later by `bind` (the `Trainer`).
    A number as first argument is taken as the learning rate (``optim.SGD(0.1)``).
    """

    name: ClassVar[str] = ""
    #: Let the adapter apply the step with the framework's multi-tensor kernels
    #: (`Backend.fused_update`) or, for immutable arrays, as one compiled call of this
    #: rule (`Backend.fused_update_values`) where it has them; False forces the rule
    #: applied parameter by parameter.
    fused: bool = True
    #: The per-parameter state the rule keeps, in order (``("momentum",)``).
    slot_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls

    def __setattr__(self, name: str, value: Any) -> None:
        # Every change of a hyper-parameter but the learning rate (an input of compiled
        # steps) bumps `version`, so a compiled `train_step` knows to rebuild itself.
        if not name.startswith("_") and name != "lr":
            object.__setattr__(self, "_version", self.__dict__.get("_version", 0) + 1)
        object.__setattr__(self, name, value)

    @property
    def version(self) -> int:
        """Bumped by every change of a hyper-parameter other than ``lr``."""
        return int(self.__dict__.get("_version", 0))

    def __init__(self, params: Any, lr: float, weight_decay: float) -> None:
        if isinstance(params, int | float) and not isinstance(params, bool):
            params, lr = None, params
        owner = type(self).__name__
        self.lr = _number(owner, "lr (learning_rate)", lr, 0.0, low_open=True)
        self.weight_decay = _number(owner, "weight_decay (wd)", weight_decay, 0.0)
        self._params: dict[str, Parameter] = {}
        self._slots: dict[str, list[Any]] = {}
        self._t = 0
        if params is not None:
            self.bind(params)

    # ----------------------------------------------------------------- rule
    def scalars(self, t: int) -> tuple[float, ...]:
        """The host numbers the rule needs at step ``t`` (1 at the first step)."""
        raise NotImplementedError

    def rule(self, w: Any, g: Any, slots: Sequence[Any], s: Sequence[Any]) -> tuple[Any, list[Any]]:
        """The new value of one parameter ``w`` and its new slots, from its gradient
        ``g`` and the scalars ``s`` (Python floats eagerly, 0-d tensors compiled)."""
        raise NotImplementedError

    def hyper_parameters(self) -> dict[str, float]:
        """The hyper-parameters, by keyword name (what `save_states` records)."""
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    # ---------------------------------------------------------------- state
    def bind(self, params: Mapping[str, Parameter] | Iterable[Parameter]) -> Optimizer:
        """Attach the parameters to update; a parameter given twice (tied) is kept once."""
        seen: set[int] = set()
        for name, p in _named(params):
            if not isinstance(p, Parameter):
                raise OptimizerError(
                    f"{type(self).__name__}: {name!r} is a {type(p).__name__}, not a "
                    "Parameter; pass net.collect_params()."
                )
            if id(p) in seen:
                continue
            seen.add(id(p))
            self._params[name] = p
        return self

    @property
    def params(self) -> dict[str, Parameter]:
        """The parameters this optimizer updates, by name (tied ones once)."""
        return self._params

    @property
    def num_update(self) -> int:
        """How many steps were taken (Gluon's ``num_update``)."""
        return self._t

    def trainable(self) -> list[tuple[str, Parameter]]:
        """The parameters that get updated (``grad_req != 'null'``)."""
        return [(n, p) for n, p in self._params.items() if p.grad_req != "null"]

    def slots_of(self, name: str, p: Parameter) -> list[Any]:
        """The slot variables of ``p``, created (zeros, on ``p``'s device) at first use."""
        slots = self._slots.get(name)
        if slots is None or len(slots) != len(self.slot_names):  # new, or momentum turned on
            b = active()
            var = p.native()
            dev = b.device_of(var)
            zeros = np.zeros(p.shape, dtype=np.float32 if p.dtype == "bfloat16" else p.dtype)
            slots = [b.new_variable(zeros, p.dtype, dev, False) for _ in self.slot_names]
            self._slots[name] = slots
        return slots

    # ---------------------------------------------------------------- steps
    def apply(self, grads: Sequence[tuple[str, Parameter, Any]], scale: float = 1.0) -> None:
        """One step: update each ``(name, param, gradient)`` in place, gradients times
        ``scale`` (``1 / batch_size`` for the `Trainer`)."""
        b = active()
        self._t += 1
        if self.fused and grads:
            ws = [p._var for _, p, _ in grads]
            slots = [self.slots_of(name, p) for name, p, _ in grads]
            gs = [g for _, _, g in grads]
            if b.fused_update(self, ws, gs, slots, self._t, scale):
                return
            # Immutable arrays (JAX): the adapter returns the new values, the core keeps them.
            out = b.fused_update_values(self, ws, gs, slots, self._t, scale)
            if out is not None:
                for (_, p, _), w in zip(grads, out[0]):
                    p._var = w
                for old, new in zip(slots, out[1]):
                    old[:] = new
                return
        s = self.scalars(self._t)
        for name, p, g in grads:
            slots = self.slots_of(name, p)
            w = b.stop_gradient(b.read(p._var))
            g = b.stop_gradient(g)
            if scale != 1.0:
                g = g * scale
            new_w, new_slots = self.rule(w, g, [b.read(v) for v in slots], s)
            p._var = b.assign(p._var, new_w)
            for i, v in enumerate(new_slots):
                slots[i] = b.assign(slots[i], v)

    def step(self, grads: Mapping[str, Any] | None = None) -> None:
        """Update every trainable parameter from ``grads`` ({name: gradient}, as returned
        by `d2lcompat.autograd.grad`) or, when None, from each ``param.grad()``.

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
        todo = []
        for name, p in self.trainable():
            g = p._current_grad() if grads is None else grads.get(name)
            if g is not None:
                todo.append((name, p, g))
        self.apply(todo)

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for p in self._params.values():
            p.zero_grad()

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v:g}" for k, v in self.hyper_parameters().items())
        return f"{type(self).__name__}({hp})"
