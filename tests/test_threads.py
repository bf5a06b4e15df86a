"""The first call of a fresh network from several threads at once (issue 19 item 10):
deferred initialization (and, hybridized, the compilation and first trace) happens
once, under a lock, so every thread sees the same parameters."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import d2lcompat
from d2lcompat import nn, ops
from d2lcompat_conformance.models import to_np

THREADS = 4


def _first_calls(net: nn.Block, X: object) -> list[np.ndarray]:
    barrier = threading.Barrier(THREADS)
    outs: list[np.ndarray | None] = [None] * THREADS
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            outs[i] = to_np(net(X)).copy()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a first call hung"
    if errors:
        raise errors[0]
    return [o for o in outs if o is not None]


@pytest.mark.parametrize("hybridize", [False, True], ids=["eager", "hybridized"])
def test_first_call_from_four_threads_initializes_once(hybridize: bool) -> None:
    X = ops.tensor(np.random.RandomState(0).randn(5, 6).astype(np.float32))
    for round_ in range(3):
        d2lcompat.seed(round_)
        net = nn.Sequential(nn.Dense(32, activation="relu"), nn.Dense(16, activation="relu"),
                            nn.Dense(3))
        net.initialize()
        if hybridize:
            net.hybridize()
        outs = _first_calls(net, X)
        assert len(outs) == THREADS
        after = to_np(net(X))
        weights = {k: to_np(p.data()).copy() for k, p in net.collect_params().items()}
        for i, out in enumerate(outs):
            np.testing.assert_allclose(out, after, rtol=1e-5, atol=1e-6,
                                       err_msg=f"round {round_}: thread {i} saw other parameters")
        # The parameters were created once: a second look gives the same values.
        for k, p in net.collect_params().items():
            np.testing.assert_array_equal(to_np(p.data()), weights[k])
