"""The JAX char-LSTM step's recurrent layer, piece by piece (docs/performance.md, "The
char LSTM step"): d2lcompat's ``nn.LSTM`` against Flax's and against the same equations
hand-written with ``lax.scan`` (input projection hoisted or inside the loop, gates by
one ``jnp.split``), forward and gradient, each under ``jax.jit``, medians of 7 interleaved rounds::

    OMP_NUM_THREADS=1 D2LCOMPAT_BACKEND=jax python -m benchmarks.jax_lstm_pieces

``--sweep [lstm gru rnn_tanh]`` times instead the core's scan
(`d2lcompat.nn._rnn.scan_layers`, one layer) with the input projection hoisted out of the loop and inside it, forward and
gradient, over a grid of sizes: the measurement behind the JAX adapter's
``hoists_input_projection`` (docs/performance.md, "Recurrent layers"). The in-loop
gradient is the adapter's (an LSTM's step rematerialised, ``LSTM_REMAT``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np

import d2lcompat
from d2lcompat import nn

B, S, E, H = 32, 35, 32, 128


def _hand_written(hoist: bool) -> Callable[..., Any]:
    def f(wi: Any, wh: Any, b: Any, x: Any) -> Any:
        gx = x @ wi + b if hoist else x

        def body(c: Any, g: Any) -> Any:
            h, cell = c
            z = (g if hoist else g @ wi + b) + h @ wh
            i, f_, gg, o = jnp.split(z, 4, axis=-1)
            cell = jax.nn.sigmoid(f_) * cell + jax.nn.sigmoid(i) * jnp.tanh(gg)
            h = jax.nn.sigmoid(o) * jnp.tanh(cell)
            return (h, cell), h

        z0 = jnp.zeros((x.shape[1], H))
        return jax.lax.scan(body, (z0, z0), gx)[1]

    return f


SWEEP = ((35, 8, 32, 128), (35, 16, 32, 128), (35, 32, 32, 64), (35, 32, 32, 128),
         (35, 32, 32, 256), (35, 32, 256, 256), (35, 32, 28, 512), (35, 64, 32, 128),
         (35, 128, 32, 128), (35, 32, 128, 128))


def sweep(mode: str = "lstm", rounds: int = 5, calls: int = 10) -> None:
    from d2lcompat.nn._rnn import scan_layers
    from d2lcompat_jax._adapter import LSTM_REMAT, _lax_scan, hoists_input_projection

    print(f"{mode}: {'T':>3} {'N':>4} {'C':>4} {'H':>4} | {'fwd hoisted':>11} {'fwd loop':>9} "
          f"{'grad hoisted':>12} {'grad loop':>9} | rule (differentiated)", flush=True)
    rng = np.random.default_rng(0)
    gates = {"lstm": 4, "gru": 3}.get(mode, 1)
    for t, n, c, h in SWEEP:
        x = jnp.asarray(rng.standard_normal((t, n, c)).astype("float32"))
        w = [jnp.asarray(rng.standard_normal(s).astype("float32") * 0.1)
             for s in ((gates * h, c), (gates * h, h), (gates * h,), (gates * h,))]
        z = jnp.zeros((1, n, h))
        carry = [z, z] if mode == "lstm" else [z]
        fns = []
        for what in ("fwd", "grad"):
            for hoist in (True, False):
                remat = LSTM_REMAT if what == "grad" else None  # as the adapter differentiates

                def f(w: Any, x: Any, hoist: bool = hoist, carry: Any = carry,
                      remat: Any = remat) -> Any:
                    return jnp.sum(scan_layers(mode, x, carry, w, 1, False, _lax_scan,
                                               hoist, remat)[0])

                g = jax.jit(f if what == "fwd" else jax.grad(f))
                jax.block_until_ready(g(w, x))
                fns.append(g)
        times: list[list[float]] = [[] for _ in fns]
        for _ in range(rounds):  # interleaved: each round times the four once
            for g, ts in zip(fns, times):
                start = time.perf_counter()
                for _ in range(calls):
                    out = g(w, x)
                jax.block_until_ready(out)
                ts.append((time.perf_counter() - start) / calls * 1e3)
        row = [float(np.median(ts)) for ts in times]
        rule = "hoist" if hoists_input_projection(mode, t, n, c, h) else "loop"
        print(f"{mode}: {t:3d} {n:4d} {c:4d} {h:4d} | {row[0]:11.2f} {row[1]:9.2f} {row[2]:12.2f} "
              f"{row[3]:9.2f} | {rule}", flush=True)


def main() -> None:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((S, B, E)).astype("float32"))
    wi = jnp.asarray(rng.standard_normal((E, 4 * H)).astype("float32") * 0.1)
    wh = jnp.asarray(rng.standard_normal((H, 4 * H)).astype("float32") * 0.1)
    b = jnp.zeros((4 * H,))
    d2lcompat.seed(0)
    layer = nn.LSTM(H, input_size=E)
    layer.initialize()
    values = {k: p.data() for k, p in layer.collect_params().items()}
    flax_rnn = fnn.RNN(fnn.OptimizedLSTMCell(H), time_major=True)
    flax_params = flax_rnn.init(jax.random.PRNGKey(0), x)

    def ours(v: Any) -> Any:
        return layer.functional_call(v, x)

    def flax(p: Any) -> Any:
        return flax_rnn.apply(p, x)

    rows = {
        "forward: d2lcompat nn.LSTM": (jax.jit(ours), (values,)),
        "forward: Flax OptimizedLSTMCell": (jax.jit(flax), (flax_params,)),
        "forward: hand-written, hoisted": (jax.jit(_hand_written(True)), (wi, wh, b, x)),
        "forward: hand-written, in the loop": (jax.jit(_hand_written(False)), (wi, wh, b, x)),
        "gradient: d2lcompat nn.LSTM": (jax.jit(jax.grad(lambda v: jnp.sum(ours(v)))), (values,)),
        "gradient: Flax OptimizedLSTMCell": (jax.jit(jax.grad(lambda p: jnp.sum(flax(p)))),
                                             (flax_params,)),
        "gradient: hand-written, hoisted": (
            jax.jit(jax.grad(lambda *a: jnp.sum(_hand_written(True)(*a)), argnums=(0, 1, 2))),
            (wi, wh, b, x)),
        "gradient: hand-written, in the loop": (
            jax.jit(jax.grad(lambda *a: jnp.sum(_hand_written(False)(*a)), argnums=(0, 1, 2))),
            (wi, wh, b, x)),
    }
    for f, args in rows.values():
        jax.block_until_ready(f(*args))
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(7):  # interleaved rounds: each times every row once
        for name, (f, args) in rows.items():
            start = time.perf_counter()
            for _ in range(20):
                out = f(*args)
            jax.block_until_ready(out)
            times[name].append((time.perf_counter() - start) / 20 * 1e3)
    for name, ts in times.items():
        print(f"{name:40s} {float(np.median(ts)):7.2f} ms")


if __name__ == "__main__":
    import sys

    args = sys.argv[1:]
    if "--sweep" in args:  # --sweep [lstm|gru|rnn_tanh ...]
        for m in [a for a in args if a != "--sweep"] or ["lstm"]:
            sweep(m)
    else:
        main()
