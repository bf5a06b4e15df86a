"""The cost of validating training input (docs/training.md, "Bad input").

``D2LCOMPAT_BACKEND=jax python -m benchmarks.input_checks`` times a small batch step
(MLP 20-256-10, batch 64, softmax cross-entropy, SGD) eagerly and hybridized, with the
checks `train_step` makes (the label check and the non-finite probe of the reported
loss, plus ``stop_on_nan``'s guarded update) against the same step with them switched
off by monkeypatching, in interleaved rounds; it prints the median seconds per step of
each and the added cost. It uses the backend in ``D2LCOMPAT_BACKEND``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import _trainer, loss, nn, ops


def _step(hybridize: bool, checks: bool, stop_on_nan: bool) -> Callable[[], Any]:
    d2lcompat.seed(0)
    net = nn.Sequential(nn.Dense(256, activation="relu", in_units=20), nn.Dense(10, in_units=256))
    net.initialize()
    if hybridize:
        net.hybridize()
    ce = loss.SoftmaxCrossEntropyLoss()
    if not checks:
        ce.check_labels = lambda *a: None  # type: ignore[method-assign]
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01})
    step = d2lcompat.train_step(net, ce, trainer, stop_on_nan=stop_on_nan and checks)
    if not checks:
        step._check_labels = None
    rng = np.random.default_rng(0)
    X = ops.tensor(rng.normal(size=(64, 20)).astype("float32"))
    y = ops.tensor(rng.integers(0, 10, 64))

    def run() -> Any:
        return ops.item(step(X, y))  # fit reads the loss of every batch

    if checks:
        return run

    def unchecked() -> Any:
        # The eager step's probe is read at each call (`_checked_mean`, which also asks
        # the adapter's `Backend.nonfinite_mean`): switched off around the call.
        saved = _trainer._checked_mean
        _trainer._checked_mean = _unchecked_mean
        try:
            return run()
        finally:
            _trainer._checked_mean = saved

    return unchecked


def _unchecked_mean(total: Any, scale: float, grads: Any, concat: bool | None = False) -> Any:
    return total * scale


def _no_probe(grads: Any, concat: bool | None = False) -> Any:
    return 0.0


def _time(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"backend {d2lcompat.backend()}; median s/step of {args.rounds} rounds x {args.steps} steps")
    probe = _trainer._nonfinite_probe
    for hybridize in (False, True):
        for stop in (False, True):
            runs = {}
            for checks in (True, False):
                # The probe is part of the built step: switch it while building.
                _trainer._nonfinite_probe = probe if checks else _no_probe
                runs[checks] = _step(hybridize, checks, stop)
                for _ in range(5):
                    runs[checks]()  # build, compile, warm up
            _trainer._nonfinite_probe = probe
            times: dict[bool, list[float]] = {True: [], False: []}
            for r in range(args.rounds):
                for checks in ((True, False) if r % 2 else (False, True)):
                    times[checks].append(_time(runs[checks], args.steps))
            on, off = statistics.median(times[True]), statistics.median(times[False])
            mode = "hybridized" if hybridize else "eager"
            print(f"{mode:10s} stop_on_nan={stop!s:5s}  checks {on * 1e6:8.1f} µs  "
                  f"none {off * 1e6:8.1f} µs  added {(on - off) * 1e6:+7.1f} µs "
                  f"({(on / off - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
