"""Recurrent-layer benchmarks: d2lcompat's `nn.LSTM`/`nn.GRU` against the framework's own
layer and Keras 3's, forward + backward at (T=35, N=32, C=28, H=256, 2 layers).

Run in one backend's process (``D2LCOMPAT_BACKEND``), rounds interleaved and medians of
the per-round ratios as in `benchmarks.run`::

    D2LCOMPAT_BACKEND=torch python -m benchmarks.rnn --rounds 7 --json out.json

What runs on each side:

* torch, paddle: eager, as their users train — d2lcompat's ``autograd.grad`` of
  ``sum(layer(X))`` against ``torch.nn.LSTM`` / ``paddle.nn.LSTM`` and ``backward()``;
* JAX: both under ``jax.jit(jax.grad(...))`` — d2lcompat's layer through
  ``functional_call`` against Flax's ``nn.RNN(nn.OptimizedLSTMCell)`` (``nn.GRUCell``),
  two layers;
* TensorFlow: both inside one ``tf.function`` with a ``GradientTape`` — d2lcompat's layer
  through ``functional_call`` against ``keras.layers.LSTM`` / ``GRU`` (two stacked);
* Keras 3 (``KERAS_BACKEND`` = this framework; torch, TensorFlow, JAX): its LSTM/GRU
  layers, eager on torch, compiled on TensorFlow and JAX as above.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

T, N, C, H, LAYERS = 35, 32, 28, 256, 2


def _x() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (T, N, C)).astype(np.float32)


def ours(kind: str, backend: str) -> Callable[[], Any]:
    import d2lcompat
    from d2lcompat import autograd, nn, ops

    d2lcompat.seed(0)
    layer = {"lstm": nn.LSTM, "gru": nn.GRU}[kind](H, num_layers=LAYERS, input_size=C)
    layer.initialize()
    X = ops.tensor(_x())
    params = layer.collect_params()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        values = {k: p.data() for k, p in params.items()}
        g = jax.jit(jax.grad(lambda vs, x: jnp.sum(layer.functional_call(vs, x))))
        return lambda: jax.block_until_ready(g(values, X))
    if backend == "tensorflow":
        import tensorflow as tf

        variables = {k: p.native() for k, p in params.items()}

        @tf.function
        def step(x: Any) -> Any:
            with tf.GradientTape() as tape:
                y = tf.reduce_sum(layer.functional_call(variables, x))
            return tape.gradient(y, list(variables.values()))

        return lambda: [t.numpy() for t in step(X)][:1]

    def eager() -> Any:
        _, grads = autograd.grad(lambda: ops.sum(layer(X)), params)
        return grads

    return eager


def native(kind: str, backend: str) -> Callable[[], Any]:
    x = _x()
    if backend == "torch":
        import torch

        torch.manual_seed(0)
        layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](C, H, num_layers=LAYERS)
        X = torch.from_numpy(x)

        def run() -> Any:
            layer.zero_grad(set_to_none=True)
            layer(X)[0].sum().backward()

        return run
    if backend == "paddle":
        import paddle

        layer = {"lstm": paddle.nn.LSTM, "gru": paddle.nn.GRU}[kind](C, H, num_layers=LAYERS,
                                                                  time_major=True)
        X = paddle.to_tensor(x)

        def run_p() -> Any:
            layer.clear_gradients()
            layer(X)[0].sum().backward()

        return run_p
    if backend == "jax":
        import flax.linen as fnn
        import jax
        import jax.numpy as jnp

        cell = {"lstm": fnn.OptimizedLSTMCell, "gru": fnn.GRUCell}[kind]

        class Stack(fnn.Module):
            @fnn.compact
            def __call__(self, x: Any) -> Any:
                for _ in range(LAYERS):
                    x = fnn.RNN(cell(H), time_major=True)(x)
                return x

        model = Stack()
        X = jnp.asarray(x)
        variables = model.init(jax.random.PRNGKey(0), X)
        g = jax.jit(jax.grad(lambda v, x: jnp.sum(model.apply(v, x))))
        return lambda: jax.block_until_ready(g(variables, X))
    if backend == "tensorflow":
        return keras_layer(kind, backend)
    raise SystemExit(f"no native layer for {backend}")


def keras_layer(kind: str, backend: str) -> Callable[[], Any]:
    """Keras 3's stacked LSTM/GRU on this framework (inputs batch-major, as Keras wants)."""
    os.environ["KERAS_BACKEND"] = backend
    import keras

    cls = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[kind]
    model = keras.Sequential([keras.Input((T, C))] + [cls(H, return_sequences=True)
                                                     for _ in range(LAYERS)])
    x = _x().transpose(1, 0, 2).copy()
    if backend == "torch":
        import torch

        X = torch.from_numpy(x)

        def run() -> Any:
            model.zero_grad(set_to_none=True)
            model(X).sum().backward()

        return run
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(x: Any) -> Any:
            with tf.GradientTape() as tape:
                y = tf.reduce_sum(model(x))
            return tape.gradient(y, model.trainable_variables)

        Xt = tf.constant(x)
        return lambda: [t.numpy() for t in step(Xt)][:1]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]

        def f(tv: Any, x: Any) -> Any:
            y, _ = model.stateless_call(tv, ntv, x)
            return jnp.sum(y)

        g = jax.jit(jax.grad(f))
        Xj = jnp.asarray(x)
        return lambda: jax.block_until_ready(g(tv, Xj))
    raise SystemExit(f"Keras 3 has no {backend} backend")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--budget", type=float, default=0.3, help="seconds per side per round")
    p.add_argument("--no-keras", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import d2lcompat
    from benchmarks.run import compare

    backend = d2lcompat.backend()
    rows: dict[str, Any] = {"backend": backend}
    for kind in ("lstm", "gru"):
        mine = ours(kind, backend)
        rows[f"{kind} vs native"] = compare(mine, native(kind, backend), args.rounds, args.budget)
        if not args.no_keras and backend in ("torch", "jax"):
            rows[f"{kind} vs keras"] = compare(mine, keras_layer(kind, backend), args.rounds,
                                               args.budget)
        elif backend == "tensorflow":
            rows[f"{kind} vs keras"] = rows[f"{kind} vs native"]
    print(json.dumps(rows, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
