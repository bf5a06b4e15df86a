"""What NCHW costs on TensorFlow's CPU: the adapter's transposes in a LeNet forward.

TF's CPU convolution and pooling kernels only take NHWC, so the TensorFlow adapter
transposes each NCHW activation in and out of every conv and pool. This times, on
LeNet's activations (batch 256, 28x28), the forward of each layer through d2lcompat
(NCHW, transposes included) against the same raw NHWC op, and the transposes alone.

    D2LCOMPAT_BACKEND=tensorflow python -m benchmarks.tf_layout

``--lenet`` times §7.6's LeNet forward (batch 256, eager and hybridized) three ways in
interleaved rounds: the native NHWC ``tf.Module`` of `benchmarks._native`, d2lcompat
with its layout chains (`d2lcompat.nn._layout`: the conv/pool run in NHWC, NCHW at its
ends), and d2lcompat with the chains switched off (each layer converts on its own):

    OMP_NUM_THREADS=1 D2LCOMPAT_BACKEND=tensorflow python -m benchmarks.tf_layout --lenet
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

import d2lcompat
from d2lcompat import nn, ops


def _median_us(fn: Callable[[], Any], rounds: int = 15, number: int = 20) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times) * 1e6


def main() -> None:
    assert d2lcompat.backend() == "tensorflow"
    d2lcompat.seed(0)
    rng = np.random.default_rng(0)
    rows = []
    cases = [
        ("Conv2D(6, 5, padding=2) on (256, 1, 28, 28)", nn.Conv2D(6, 5, padding=2),
         (256, 1, 28, 28)),
        ("AvgPool2D(2) on (256, 6, 28, 28)", nn.AvgPool2D(2), (256, 6, 28, 28)),
        ("Conv2D(16, 5) on (256, 6, 14, 14)", nn.Conv2D(16, 5), (256, 6, 14, 14)),
        ("AvgPool2D(2) on (256, 16, 10, 10)", nn.AvgPool2D(2), (256, 16, 10, 10)),
    ]
    for name, layer, shape in cases:
        layer.initialize()
        host = rng.uniform(size=shape).astype(np.float32)
        x = ops.tensor(host)
        layer(x)
        xh = tf.constant(host.transpose(0, 2, 3, 1))
        if isinstance(layer, nn.Conv2D):
            k = tf.constant(ops.to_numpy(layer.weight.data()).transpose(2, 3, 1, 0))
            b = layer.bias.data()
            pad = layer._padding[0]
            native = lambda: tf.nn.bias_add(tf.nn.conv2d(  # noqa: E731
                xh, k, 1, [[0, 0], [pad, pad], [pad, pad], [0, 0]]), b)  # noqa: B023
        else:
            native = lambda: tf.nn.avg_pool2d(xh, 2, 2, "VALID")  # noqa: E731, B023
        y = layer(x)
        ours = _median_us(lambda: layer(x))  # noqa: B023
        theirs = _median_us(native)
        perm = tf.constant((0, 2, 3, 1))  # raw ops with a constant perm, as the adapter
        trans = _median_us(lambda: (tf.raw_ops.Transpose(x=x, perm=perm),  # noqa: B023
                                    tf.raw_ops.Transpose(x=y, perm=perm)))  # noqa: B023
        rows.append((name, ours, theirs, trans))
    print("| layer (TF CPU) | d2lcompat NCHW | native NHWC | the two transposes alone |")
    print("|---|---|---|---|")
    for name, ours, theirs, trans in rows:
        print(f"| {name} | {ours:.0f} µs | {theirs:.0f} µs ({ours / theirs:.2f}×) | "
              f"{trans:.0f} µs |")
    total_o, total_n = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"| all four | {total_o:.0f} µs | {total_n:.0f} µs ({total_o / total_n:.2f}×) | "
          f"{sum(r[3] for r in rows):.0f} µs |")


def lenet(rounds: int = 9) -> None:
    """Median per-round ratios to native of the chained and the per-layer forward (two
    copies of the net with the same weights, so that each hybridized copy traces its
    own way)."""
    import gc

    from d2lcompat import init
    from d2lcompat.nn import _layers

    from ._native import TensorFlowNative
    from .run import _lenet, _per_call, calibrate

    host = np.random.default_rng(0).uniform(size=(256, 1, 28, 28)).astype(np.float32)
    x = ops.tensor(host)
    nets = []
    for _ in range(2):
        d2lcompat.seed(0)
        net = _lenet()
        net.initialize(init.Xavier())
        net(x)
        nets.append(net)
    weights = [(ops.to_numpy(m.weight.data()), ops.to_numpy(m.bias.data()))
               for m in nets[0] if hasattr(m, "weight")]
    native = TensorFlowNative()
    xn = native.lenet_input(host)

    def run(net: Any, chains: bool) -> Callable[[], Any]:
        def call() -> Any:
            _layers._CHAINS = chains
            return net(x).numpy()

        return call

    for mode in ("eager", "hybridized"):
        ref = native.lenet(weights) if mode == "eager" else native.compiled_lenet(weights)
        fns = {"native": lambda: ref(xn).numpy(),  # noqa: B023
               "chained": run(nets[0], True), "per-layer": run(nets[1], False)}
        if mode == "hybridized":
            for net in nets:
                net.hybridize()
        for fn in fns.values():  # the hybridized copies trace here, each its own way
            fn(), fn()
        same = np.array_equal(fns["chained"](), fns["per-layer"]())
        number = min(calibrate(f, 0.1) for f in fns.values())
        times: dict[str, list[float]] = {k: [] for k in fns}
        gc.collect()
        gc.disable()
        for r in range(rounds):
            for k in list(fns) if r % 2 == 0 else list(reversed(fns)):
                times[k].append(_per_call(fns[k], number))
        gc.enable()
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = {k: statistics.median(a / b for a, b in zip(times[k], times["native"]))
                 for k in ("chained", "per-layer")}
        print(f"{mode}: native {med['native'] * 1e3:.1f} ms, chained {med['chained'] * 1e3:.1f} ms "
              f"({ratio['chained']:.2f}x), per-layer {med['per-layer'] * 1e3:.1f} ms "
              f"({ratio['per-layer']:.2f}x); chained == per-layer: {same}")
    _layers._CHAINS = True


if __name__ == "__main__":
    import sys

    lenet() if "--lenet" in sys.argv[1:] else main()
