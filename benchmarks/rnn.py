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
  layers, eager on torch, compiled on TensorFlow and JAX as above;
* every backend: the char LSTM's `train_step` (clipped SGD, after ``hybridize()``)
  against the fastest native step a user of that framework writes — JAX: ``jax.jit``
  with Flax layers and donated buffers; TensorFlow: one ``tf.function`` with
  ``keras.layers`` and ``tf.clip_by_global_norm``; torch: eager ``torch.nn.LSTM`` with
  ``clip_grad_norm_(foreach=True)`` and ``SGD(foreach=True)`` (d2lcompat's torch step is
  eager too: compiling does not pay on CPU, docs/training.md); Paddle: eager
  ``paddle.nn.LSTM`` with ``ClipGradByGlobalNorm`` in ``paddle.optimizer.SGD`` — and
  Keras 3's ``train_on_batch`` on torch, TensorFlow and JAX.

``--only layers`` / ``--only step`` run one half.
"""

from __future__ import annotations

import argparse
import functools
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


#: The char LSTM's training step: vocabulary, embedding, hidden size, batch, steps.
V, E, HC, B, S = 28, 32, 128, 32, 35


def ours_step() -> Callable[[], Any]:
    """d2lcompat's compiled `train_step` (SGD 1.0, clip_global_norm=1) of the char LSTM
    (embedding, one LSTM layer, Dense read-out; cross-entropy)."""
    import d2lcompat
    from d2lcompat import loss, nn, ops

    class CharLM(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(V, E)
            self.rnn = nn.LSTM(HC, layout="NTC", input_size=E)
            self.dense = nn.Dense(V, in_units=HC)

        def forward(self, X: Any) -> Any:
            d = self.dense
            return ops.linear(self.rnn(self.embedding(X)), d.weight.data(), d.bias.data())

    d2lcompat.seed(0)
    net = CharLM()
    net.initialize(d2lcompat.init.Xavier())
    net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 1.0},
                                clip_global_norm=1.0)
    step = d2lcompat.train_step(net, loss.SoftmaxCrossEntropyLoss(), trainer)
    rng = np.random.default_rng(0)
    X = ops.tensor(rng.integers(0, V, (B, S)))
    Y = ops.tensor(rng.integers(0, V, (B, S)))
    return lambda: float(ops.item(step(X, Y)))


def native_step_jax() -> Callable[[], Any]:
    """The same step written in JAX + Flax: ``jax.jit`` with donated buffers, Flax's
    ``nn.RNN(nn.OptimizedLSTMCell)``, optax-free SGD with the global-norm clip."""
    import flax.linen as fnn
    import jax
    import jax.numpy as jnp

    class CharLM(fnn.Module):
        @fnn.compact
        def __call__(self, x: Any) -> Any:
            h = fnn.Embed(V, E)(x)
            h = fnn.RNN(fnn.OptimizedLSTMCell(HC))(h)
            return fnn.Dense(V)(h)

    model = CharLM()
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.integers(0, V, (B, S)))
    Y = jnp.asarray(rng.integers(0, V, (B, S)))
    params = model.init(jax.random.PRNGKey(0), X)

    def loss_fn(p: Any) -> Any:
        logits = model.apply(p, X)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, Y[..., None], axis=-1))

    @functools.partial(jax.jit, donate_argnums=0)
    def step(p: Any) -> Any:
        value, g = jax.value_and_grad(loss_fn)(p)
        leaves = jax.tree_util.tree_leaves(g)
        norm = jnp.sqrt(sum(jnp.sum(x * x) for x in leaves))
        scale = 1.0 / jnp.maximum(norm + 1e-8, 1.0)
        return jax.tree_util.tree_map(lambda w, d: w - 1.0 * scale * d, p, g), value

    box = [params]

    def run() -> float:
        box[0], value = step(box[0])
        return float(value)

    return run


def _char_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, V, (B, S)), rng.integers(0, V, (B, S))


def native_step_torch() -> Callable[[], Any]:
    """The step as a good torch user writes it on CPU: ``torch.nn.LSTM`` (the fused
    ``mkldnn``/``_VF.lstm`` kernel) + ``Linear``, eager autograd,
    ``clip_grad_norm_(foreach=True)``, ``SGD(foreach=True)``, ``zero_grad(set_to_none)``.
    Eager, like d2lcompat's torch `train_step` (docs/training.md: compiling the step
    does not pay on CPU): like is compared with like."""
    import torch

    class CharLM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(V, E)
            self.rnn = torch.nn.LSTM(E, HC, batch_first=True)
            self.dense = torch.nn.Linear(HC, V)

        def forward(self, x: Any) -> Any:
            return self.dense(self.rnn(self.embedding(x))[0])

    torch.manual_seed(0)
    model = CharLM()
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=1.0, foreach=True)
    xs, ys = _char_data()
    X, Y = torch.from_numpy(xs), torch.from_numpy(ys).reshape(-1)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run() -> float:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(X).reshape(-1, V), Y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        return loss.item()

    return run


def native_step_tensorflow() -> Callable[[], Any]:
    """One ``tf.function``: ``keras.layers.Embedding``/``LSTM``/``Dense`` (TensorFlow's
    own layers), a ``GradientTape``, ``tf.clip_by_global_norm`` and the plain SGD update
    (``assign_sub``) in the graph."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((S,), dtype="int32"), keras.layers.Embedding(V, E),
                              keras.layers.LSTM(HC, return_sequences=True),
                              keras.layers.Dense(V)])
    variables = model.trainable_variables
    xs, ys = _char_data()
    X, Y = tf.constant(xs.astype(np.int32)), tf.constant(ys.astype(np.int32))

    @tf.function
    def step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads, _ = tf.clip_by_global_norm(tape.gradient(loss, variables), 1.0)
        for v, g in zip(variables, grads):  # the embedding's gradient is IndexedSlices
            v.assign_sub(1.0 * tf.convert_to_tensor(g))
        return loss

    return lambda: float(step(X, Y))


def native_step_paddle() -> Callable[[], Any]:
    """``paddle.nn.LSTM`` (the fused ``rnn`` op) + ``Linear``, eager, with
    ``ClipGradByGlobalNorm`` inside ``paddle.optimizer.SGD``."""
    import paddle

    class CharLM(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = paddle.nn.Embedding(V, E)
            self.rnn = paddle.nn.LSTM(E, HC)
            self.dense = paddle.nn.Linear(HC, V)

        def forward(self, x: Any) -> Any:
            return self.dense(self.rnn(self.embedding(x))[0])

    paddle.seed(0)
    model = CharLM()
    opt = paddle.optimizer.SGD(1.0, parameters=model.parameters(),
                               grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0))
    xs, ys = _char_data()
    X, Y = paddle.to_tensor(xs), paddle.to_tensor(ys.reshape(-1))

    def run() -> float:
        loss = paddle.nn.functional.cross_entropy(model(X).reshape([-1, V]), Y)
        loss.backward()
        opt.step()
        opt.clear_grad(set_to_zero=False)
        return float(loss)

    return run


def keras_step(backend: str) -> Callable[[], Any]:
    """Keras 3's own training step on this framework: ``model.train_on_batch`` with
    ``SGD(1.0, global_clipnorm=1)`` (compiled as Keras decides, ``jit_compile="auto"``:
    XLA on JAX, a ``tf.function`` on TensorFlow, eager on torch)."""
    os.environ["KERAS_BACKEND"] = backend
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((S,), dtype="int32"), keras.layers.Embedding(V, E),
                              keras.layers.LSTM(HC, return_sequences=True),
                              keras.layers.Dense(V)])
    model.compile(optimizer=keras.optimizers.SGD(1.0, global_clipnorm=1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    xs, ys = _char_data()
    X, Y = xs.astype(np.int32), ys.astype(np.int32)
    return lambda: float(model.train_on_batch(X, Y))


NATIVE_STEPS: dict[str, Callable[[], Callable[[], Any]]] = {
    "jax": native_step_jax, "torch": native_step_torch,
    "tensorflow": native_step_tensorflow, "paddle": native_step_paddle,
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--budget", type=float, default=0.3, help="seconds per side per round")
    p.add_argument("--no-keras", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--only", choices=("layers", "step"), default=None,
                   help="only the layer rows or only the char LSTM train_step rows")
    args = p.parse_args(argv)
    import d2lcompat
    from benchmarks.run import compare as _compare

    def compare(a: Callable[[], Any], b: Callable[[], Any], rounds: int,
                budget: float) -> dict[str, float]:
        for _ in range(3):  # compile (and re-trace, where a second call does) first, so
            a()  # that the calibration times steady calls
            b()
        return _compare(a, b, rounds, budget)

    backend = d2lcompat.backend()
    rows: dict[str, Any] = {"backend": backend}
    for kind in ("lstm", "gru") if args.only != "step" else ():
        mine = ours(kind, backend)
        rows[f"{kind} vs native"] = compare(mine, native(kind, backend), args.rounds, args.budget)
        if not args.no_keras and backend in ("torch", "jax"):
            rows[f"{kind} vs keras"] = compare(mine, keras_layer(kind, backend), args.rounds,
                                               args.budget)
        elif backend == "tensorflow":
            rows[f"{kind} vs keras"] = rows[f"{kind} vs native"]
    if args.only != "layers":
        step = ours_step()
        rows["char LSTM train_step vs native compiled"] = compare(
            step, NATIVE_STEPS[backend](), args.rounds, args.budget)
        if not args.no_keras and backend != "paddle":
            rows["char LSTM train_step vs keras"] = compare(step, keras_step(backend),
                                                            args.rounds, args.budget)
    print(json.dumps(rows, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
