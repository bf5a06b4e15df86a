"""Training-step benchmarks: d2lcompat against the native loop and Keras 3, same weights.

One SGD step (learning rate 0.1) of an MLP under the mean squared error (d2lcompat's
``L2Loss``, ``0.5·(pred − y)²``; the native loops compute the same ``0.5·mean``):

* **eager**: d2lcompat's `train_step` on a net that is not hybridized, against the
  framework's own eager loop — torch ``loss.backward()`` + ``torch.optim.SGD(foreach=True)``;
  a TensorFlow ``GradientTape`` + ``keras.optimizers.SGD.apply_gradients``; paddle
  ``loss.backward()`` + ``paddle.optimizer.SGD``; JAX ``jax.value_and_grad`` and a
  ``tree_map`` update, run op by op;
* **compiled**: `train_step` after ``net.hybridize()`` against the framework's fastest
  step — ``jax.jit`` of value-and-grad + update with donated buffers; ``tf.function``
  of the tape step; paddle ``jit.to_static`` forward + eager backward and optimizer
  (the paddle user's compiled training); torch eager + the fused ``foreach`` SGD
  (``torch.compile`` of the step is also timed and the faster of the two is the
  baseline);
* **keras**: `train_step` after ``hybridize()`` against Keras 3's ``train_on_batch``
  on the same backend (torch, TensorFlow, JAX; Keras has no Paddle backend).
* **compiled, stop_on_nan** (deep MLP): the compiled step with ``stop_on_nan=True``,
  `fit`'s default (a non-finite step keeps the old values), against the same native
  compiled step.

Only imported inside a benchmark worker process (one backend).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ._native import Layer

LR = 0.1
Step = Callable[[], Any]


def cases() -> list[tuple[str, int, list[int], int]]:
    """(name, in features, widths, batch), as the forward benchmarks."""
    return [
        ("MLP 20-256-10, batch 2", 20, [256, 10], 2),
        ("MLP 20-256-10, batch 256", 20, [256, 10], 256),
        ("deep MLP 8x1024, batch 64", 1024, [1024] * 8, 64),
    ]


def _data(n_in: int, n_out: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.uniform(-1, 1, size=(batch, n_in)).astype(np.float32),
            rng.uniform(-1, 1, size=(batch, n_out)).astype(np.float32))


# ------------------------------------------------------------------ d2lcompat
def ours(layers_spec: tuple[int, list[int]], x: np.ndarray, y: np.ndarray,
         hybrid: bool, stop_on_nan: bool = False) -> tuple[Step, list[Layer]]:
    import d2lcompat
    from d2lcompat import loss, nn, ops

    n_in, widths = layers_spec
    d2lcompat.seed(0)
    last = len(widths) - 1
    net = nn.Sequential(*[nn.Dense(u, activation=None if i == last else "relu")
                          for i, u in enumerate(widths)])
    net.initialize(d2lcompat.init.Xavier())
    X, Y = ops.tensor(x), ops.tensor(y)
    net(X)
    layers = [(ops.to_numpy(d.weight.data()), ops.to_numpy(d.bias.data()), i != last)
              for i, d in enumerate(net)]
    if hybrid:
        net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": LR})
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer, stop_on_nan=stop_on_nan)
    return (lambda: step(X, Y)), layers


# -------------------------------------------------------------------- natives
# Each framework's own SGD loop, for any model: the MLP rows below and the LeNet rows
# (benchmarks/_train_cnn.py) build their model and hand it to these.
def torch_sgd_step(model: Any, fwd: Any, x: np.ndarray, y: np.ndarray) -> Step:
    """``loss.backward()`` + ``torch.optim.SGD(foreach=True)``; ``fwd`` is ``model`` or
    ``torch.compile(model)``."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=LR, foreach=True)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = 0.5 * torch.mean((fwd(X) - Y) ** 2)
        loss.backward()
        opt.step()
        return loss

    return step


def tf_sgd_step(forward: Callable[[Any], Any], variables: list[Any], X: Any, Y: Any,
                compiled: bool) -> Step:
    """A ``GradientTape`` step + ``keras.optimizers.SGD.apply_gradients``, under
    ``tf.function`` when ``compiled``. The batch is an argument, as in a training loop
    (captured constants would let TensorFlow skip binding inputs every real step binds)."""
    import keras
    import tensorflow as tf

    opt = keras.optimizers.SGD(learning_rate=LR)
    opt.build(variables)

    def step(X: Any, Y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = 0.5 * tf.reduce_mean(tf.square(forward(X) - Y))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    fn = tf.function(step) if compiled else step
    return lambda: fn(X, Y)


def paddle_sgd_step(model: Any, fwd: Any, x: np.ndarray, y: np.ndarray) -> Step:
    """``loss.backward()`` + ``paddle.optimizer.SGD``; ``fwd`` is ``model`` or
    ``paddle.jit.to_static(model)``."""
    import paddle

    opt = paddle.optimizer.SGD(learning_rate=LR, parameters=model.parameters())
    X, Y = paddle.to_tensor(x), paddle.to_tensor(y)

    def step() -> Any:
        loss = 0.5 * paddle.mean((fwd(X) - Y) ** 2)
        loss.backward()
        opt.step()
        opt.clear_grad()
        return loss

    return step


def jax_sgd_step(forward: Callable[[Any, Any], Any], params: Any, x: np.ndarray,
                 y: np.ndarray, compiled: bool) -> Step:
    """``jax.value_and_grad`` + a ``tree_map`` update of ``forward(params, X)``: op by op,
    or one ``jax.jit`` with the parameters donated when ``compiled``."""
    import jax
    import jax.numpy as jnp

    def update(ps: Any, X: Any, Y: Any) -> Any:
        value, grads = jax.value_and_grad(
            lambda ps: 0.5 * jnp.mean((forward(ps, X) - Y) ** 2))(ps)
        return value, jax.tree_util.tree_map(lambda p, g: p - LR * g, ps, grads)

    run = jax.jit(update, donate_argnums=(0,)) if compiled else update
    X, Y = jnp.asarray(x), jnp.asarray(y)
    state = [params]

    def step() -> Any:
        value, state[0] = run(state[0], X, Y)
        return value

    return step


class TorchTrain:
    def _model(self, layers: list[Layer]) -> Any:
        from ._native import TorchNative

        return TorchNative().mlp(layers)

    def eager(self, layers: list[Layer], x: np.ndarray, y: np.ndarray) -> Step:
        model = self._model(layers)
        return torch_sgd_step(model, model, x, y)

    def compiled(self, layers: list[Layer], x: np.ndarray, y: np.ndarray) -> Step:
        # torch.compile of the forward + fused SGD; the driver keeps the faster of this
        # and the eager loop as the native compiled baseline.
        import torch

        model = self._model(layers)
        return torch_sgd_step(model, torch.compile(model), x, y)

    def sync(self, v: Any) -> None:
        pass


class TensorFlowTrain:
    def _step(self, layers: list[Layer], x: np.ndarray, y: np.ndarray, compiled: bool) -> Step:
        import tensorflow as tf

        ws = [tf.Variable(w.T.copy()) for w, _, _ in layers]  # kernels (in, out), as Keras
        bs = [tf.Variable(b) for _, b, _ in layers]
        relus = [r for _, _, r in layers]

        def forward(h: Any) -> Any:
            for w, b, r in zip(ws, bs, relus):
                h = tf.matmul(h, w) + b
                if r:
                    h = tf.nn.relu(h)
            return h

        variables = [v for pair in zip(ws, bs) for v in pair]
        return tf_sgd_step(forward, variables, tf.constant(x), tf.constant(y), compiled)

    def eager(self, layers: list[Layer], x: np.ndarray, y: np.ndarray) -> Step:
        return self._step(layers, x, y, False)

    def compiled(self, layers: list[Layer], x: np.ndarray, y: np.ndarray) -> Step:
        return self._step(layers, x, y, True)

    def sync(self, v: Any) -> None:
        pass


class PaddleTrain:
    def _model(self, layers: list[Layer]) -> Any:
        from ._native import PaddleNative

        return PaddleNative().mlp(layers)

    def eager(self, layers: list[Layer], x: np.ndarray, y: np.ndarray) -> Step:
        model = self._model(layers)
        return paddle_sgd_step(model, model, x, y)

    def compiled(self, layers: list[Layer], x: np.ndarray, y: np.ndarray) -> Step:
        import paddle

        model = self._model(layers)
        return paddle_sgd_step(model, paddle.jit.to_static(model), x, y)

    def sync(self, v: Any) -> None:
        pass


class JaxTrain:
    def _step(self, layers: list[Layer], x: np.ndarray, y: np.ndarray, compiled: bool) -> Step:
        import jax.numpy as jnp

        relus = tuple(r for _, _, r in layers)
        params = [(jnp.asarray(w), jnp.asarray(b)) for w, b, _ in layers]

        def forward(ps: Any, h: Any) -> Any:
            for (w, b), r in zip(ps, relus):
                h = h @ w.T + b
                if r:
                    h = jnp.maximum(h, 0)  # plain jnp, not jax.nn.relu's custom-JVP path
            return h

        return jax_sgd_step(forward, params, x, y, compiled)

    def eager(self, layers: list[Layer], x: np.ndarray, y: np.ndarray) -> Step:
        return self._step(layers, x, y, False)

    def compiled(self, layers: list[Layer], x: np.ndarray, y: np.ndarray) -> Step:
        return self._step(layers, x, y, True)

    def sync(self, v: Any) -> None:
        import jax

        jax.block_until_ready(v)


NATIVE_TRAIN: dict[str, type[Any]] = {
    "torch": TorchTrain,
    "tensorflow": TensorFlowTrain,
    "paddle": PaddleTrain,
    "jax": JaxTrain,
}


def keras_step(backend: str, layers: list[Layer], x: np.ndarray, y: np.ndarray) -> Step | None:
    """Keras 3's ``train_on_batch`` on ``backend`` with the same weights (None where
    Keras has no such backend or is not installed)."""
    if backend == "paddle":
        return None
    os.environ["KERAS_BACKEND"] = backend
    try:
        import keras
    except ImportError:
        print("  keras is not installed: no Keras 3 row", file=sys.stderr)
        return None
    if keras.backend.backend() != backend:
        return None
    model = keras.Sequential([keras.Input((layers[0][0].shape[1],))] + [
        keras.layers.Dense(w.shape[0], activation="relu" if r else None) for w, _, r in layers
    ])
    for dense, (w, b, _) in zip(model.layers, layers):
        dense.set_weights([w.T.copy(), b])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss="mse")
    # The backend's own tensors, as d2lcompat's side gets: no NumPy conversion timed.
    X, Y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
    model.train_on_batch(X, Y)  # builds and compiles the train function

    def step() -> Any:
        return model.train_on_batch(X, Y)

    return step


def train_cases(backend: str, rounds: int, compare: Callable[..., dict[str, float]],
                record: Callable[..., None]) -> None:
    """Time every training row on ``backend`` (this process's backend)."""
    native = NATIVE_TRAIN[backend]()
    sync = native.sync
    for name, n_in, widths, batch in cases():
        x, y = _data(n_in, widths[-1], batch)
        eager_ours, layers = ours((n_in, widths), x, y, hybrid=False)
        eager_native = native.eager(layers, x, y)
        record("train eager", name, compare(lambda: sync(eager_ours()),  # noqa: B023
                                            lambda: sync(eager_native()), rounds))  # noqa: B023
        comp_ours, layers = ours((n_in, widths), x, y, hybrid=True)
        comp_ours()  # eager first call, then the compile
        comp_ours()
        comp_native = native.compiled(layers, x, y)
        sync(comp_native())
        extra: dict[str, Any] = {}
        if backend == "torch":
            # torch.compile pays only where it is faster than the eager + foreach loop.
            from .run import _per_call, calibrate

            fresh = native.eager(layers, x, y)
            n = calibrate(fresh)
            if _per_call(fresh, n) < _per_call(comp_native, n):
                comp_native = fresh
                extra["native"] = "eager + foreach SGD (faster than torch.compile here)"
            else:
                extra["native"] = "torch.compile forward + foreach SGD"
        record("train compiled", name, compare(lambda: sync(comp_ours()),  # noqa: B023
                                               lambda: sync(comp_native()), rounds),  # noqa: B023
               **extra)
        k = keras_step(backend, layers, x, y)
        if k is not None:
            record("train vs keras", name, compare(lambda: sync(comp_ours()), k, rounds))  # noqa: B023
        if name.startswith("deep"):
            # `fit`'s default, `stop_on_nan=True`: the compiled step keeps the old values
            # of a non-finite step (`where` in the graph), against the same native step.
            guarded, _ = ours((n_in, widths), x, y, hybrid=True, stop_on_nan=True)
            guarded()
            guarded()
            record("train compiled, stop_on_nan", name,
                   compare(lambda: sync(guarded()), lambda: sync(comp_native()), rounds))  # noqa: B023
