"""The JAX char-LSTM step's recurrent layer, piece by piece (docs/performance.md, "The
char LSTM step"): d2lcompat's ``nn.LSTM`` against Flax's and against the same equations
hand-written with ``lax.scan`` (input projection hoisted or inside the loop, gates by
one ``jnp.split``), forward and gradient, each under ``jax.jit``::

    OMP_NUM_THREADS=1 D2LCOMPAT_BACKEND=jax python -m benchmarks.jax_lstm_pieces
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


def _median_ms(f: Callable[..., Any], *args: Any, calls: int = 40) -> float:
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            out = f(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / calls)
    return sorted(times)[2] * 1e3


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
    for name, (f, args) in rows.items():
        print(f"{name:40s} {_median_ms(f, *args):7.2f} ms")


if __name__ == "__main__":
    main()
