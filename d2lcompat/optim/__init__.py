"""Optimizers with one update rule on every backend (``d2lcompat.optim``).

Each rule is written once in the core (the formulas are in each class's docstring and
in docs/training.md, the same as PyTorch's), so the same seed and data give the same
loss curve on every backend. Parameters are updated in place through the adapter:
the variable object of each parameter stays the same, so tied parameters stay one
object and native tools holding ``param.native()`` keep seeing the values.

Examples
--------
>>> from d2lcompat import optim
>>> sorted(optim.registered())
['adam', 'adamw', 'rmsprop', 'sgd']
"""

from __future__ import annotations

from ._adam import Adam, AdamW
from ._base import Optimizer, OptimizerError, create, registered
from ._rmsprop import RMSProp
from ._sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "OptimizerError", "RMSProp", "create", "registered"]
