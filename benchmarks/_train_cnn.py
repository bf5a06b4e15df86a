"""LeNet training-step benchmark: d2lcompat's `train_step` against each framework's own
loop on its own conv net with the same weights (the LeNet of `_native.Native.lenet`).

One SGD step (learning rate 0.1) under ``0.5·mean((logits − y)²)``, batch 256 of 28x28:
torch ``backward`` + ``SGD(foreach=True)`` (compiled: ``torch.compile`` of the forward);
TF a ``GradientTape`` + Keras SGD (compiled: ``tf.function``); paddle ``backward`` +
``paddle.optimizer.SGD`` (compiled: ``jit.to_static`` forward); JAX ``value_and_grad``
and a ``tree_map`` update (compiled: ``jax.jit`` with donated buffers).

Only imported inside a benchmark worker process (one backend).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._native import NATIVE, LeNetWeights

LR = 0.1
Step = Callable[[], Any]


def _torch(weights: LeNetWeights, x: np.ndarray, y: np.ndarray, compiled: bool) -> Step:
    import torch

    model = NATIVE["torch"]().lenet(weights)
    fwd = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=LR, foreach=True)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = 0.5 * torch.mean((fwd(X) - Y) ** 2)
        loss.backward()
        opt.step()
        return loss

    return step


def _tensorflow(weights: LeNetWeights, x: np.ndarray, y: np.ndarray, compiled: bool) -> Step:
    import keras
    import tensorflow as tf

    native = NATIVE["tensorflow"]()
    model = native.lenet(weights)
    variables = list(model.trainable_variables)
    opt = keras.optimizers.SGD(learning_rate=LR)
    opt.build(variables)
    X, Y = native.lenet_input(x), tf.constant(y)

    def step(X: Any, Y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = 0.5 * tf.reduce_mean(tf.square(model(X) - Y))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    fn = tf.function(step) if compiled else step
    return lambda: fn(X, Y)


def _paddle(weights: LeNetWeights, x: np.ndarray, y: np.ndarray, compiled: bool) -> Step:
    import paddle

    model = NATIVE["paddle"]().lenet(weights)
    fwd = paddle.jit.to_static(model) if compiled else model
    opt = paddle.optimizer.SGD(learning_rate=LR, parameters=model.parameters())
    X, Y = paddle.to_tensor(x), paddle.to_tensor(y)

    def step() -> Any:
        loss = 0.5 * paddle.mean((fwd(X) - Y) ** 2)
        loss.backward()
        opt.step()
        opt.clear_grad()
        return loss

    return step


def _jax(weights: LeNetWeights, x: np.ndarray, y: np.ndarray, compiled: bool) -> Step:
    import jax
    import jax.numpy as jnp

    native = NATIVE["jax"]()
    f = native._lenet_fn()
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in weights]

    def loss(ps: Any, X: Any, Y: Any) -> Any:
        return 0.5 * jnp.mean((f(ps, X) - Y) ** 2)

    def update(ps: Any, X: Any, Y: Any) -> Any:
        value, grads = jax.value_and_grad(loss)(ps, X, Y)
        return value, jax.tree_util.tree_map(lambda p, g: p - LR * g, ps, grads)

    run = jax.jit(update, donate_argnums=(0,)) if compiled else update
    X, Y = jnp.asarray(x), jnp.asarray(y)
    state = [params]

    def step() -> Any:
        value, state[0] = run(state[0], X, Y)
        return value

    return step


NATIVE_STEP: dict[str, Callable[..., Step]] = {
    "torch": _torch, "tensorflow": _tensorflow, "paddle": _paddle, "jax": _jax,
}


def lenet_train_cases(backend: str, net_factory: Callable[[], Any], rounds: int,
                      compare: Callable[..., dict[str, float]], record: Callable[..., None],
                      sync: Callable[[Any], None]) -> None:
    """Time the eager and compiled LeNet training step on ``backend``."""
    import d2lcompat
    from d2lcompat import init, loss, ops

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(256, 1, 28, 28)).astype(np.float32)
    y = rng.uniform(-1, 1, size=(256, 10)).astype(np.float32)
    name = "LeNet, batch 256"
    for kind, hybrid in (("train eager", False), ("train compiled", True)):
        d2lcompat.seed(0)
        net = net_factory()
        net.initialize(init.Xavier())
        X, Y = ops.tensor(x), ops.tensor(y)
        net(X)
        weights = [(ops.to_numpy(m.weight.data()), ops.to_numpy(m.bias.data()))
                   for m in net if hasattr(m, "weight")]
        if hybrid:
            net.hybridize()
        trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": LR})
        step = d2lcompat.train_step(net, loss.L2Loss(), trainer)
        ours = lambda: step(X, Y)  # noqa: E731, B023
        ours()
        ours()
        native = NATIVE_STEP[backend](weights, x, y, hybrid)
        sync(native())
        record(kind, name, compare(lambda: sync(ours()), lambda: sync(native()), rounds))  # noqa: B023
