"""What ``stop_on_nan=True`` (`fit`'s default) costs the compiled step, in one process:
the deep MLP of `benchmarks._train` (8×1024, batch 64, SGD), d2lcompat's compiled step
with and without the guard and the native compiled step, timed in turn (the order
reversed every round; medians of the rounds, and of the rounds' ratios to native).

    OMP_NUM_THREADS=1 D2LCOMPAT_BACKEND=jax python -m benchmarks.stop_on_nan [ROUNDS]

One backend per process (``D2LCOMPAT_BACKEND``); docs/performance.md, "Seventh round".
"""
# ruff: noqa
import os, statistics, sys, time

import d2lcompat
from benchmarks import _train as T


def main(rounds: int = 11, calls: int = 5) -> None:
    backend = d2lcompat.backend()
    native = T.NATIVE_TRAIN[backend]()
    sync = native.sync
    n_in, widths, batch = 1024, [1024] * 8, 64
    x, y = T._data(n_in, widths[-1], batch)
    guarded, layers = T.ours((n_in, widths), x, y, hybrid=True, stop_on_nan=True)
    plain, _ = T.ours((n_in, widths), x, y, hybrid=True, stop_on_nan=False)
    nat = native.compiled(layers, x, y)
    steps = {"stop_on_nan=True": lambda: sync(guarded()), "stop_on_nan=False": lambda: sync(plain()),
             "native": lambda: sync(nat())}
    for f in steps.values():
        for _ in range(5):  # the eager first call, the compile, warm-up
            f()
    times = {k: [] for k in steps}
    for r in range(rounds):
        for k in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
            start = time.perf_counter()
            for _ in range(calls):
                steps[k]()
            times[k].append((time.perf_counter() - start) / calls)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    ratio = {k: statistics.median(a / b for a, b in zip(times[k], times["native"]))
             for k in ("stop_on_nan=True", "stop_on_nan=False")}
    print(f"{backend} deep MLP: " + ", ".join(f"{k} {v:.2f} ms" for k, v in med.items())
          + "; vs native: " + ", ".join(f"{k} {v:.3f}" for k, v in ratio.items())
          + f"; load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
