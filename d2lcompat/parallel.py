"""Data parallelism on each framework's own engine (``d2lcompat.parallel``, API §17).

Skeleton: the process-group functions below are what `d2lcompat.Trainer` and
`d2lcompat.train_step` call. Until `init` is called a process is one worker
(``world_size() == 1``) and `all_reduce_mean` returns its input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["all_reduce_mean", "init", "rank", "world_size"]

_STATE = {"world_size": 1, "rank": 0}


def init() -> None:
    """Join the process group the launcher described (``d2lcompat launch``)."""
    raise NotImplementedError("parallel.init is being written (issue 12)")


def rank() -> int:
    """This worker's index in the process group (0 when not distributed)."""
    return _STATE["rank"]


def world_size() -> int:
    """How many workers take part (1 when not distributed)."""
    return _STATE["world_size"]


def all_reduce_mean(tensors: Sequence[Any]) -> list[Any]:
    """The element-wise mean of ``tensors`` over every worker, in the same order.

    `d2lcompat.Trainer.step` calls it on the gradients before the update when
    ``world_size() > 1``."""
    return list(tensors)
