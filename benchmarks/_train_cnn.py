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
from ._train import LR, Step, jax_sgd_step, paddle_sgd_step, tf_sgd_step, torch_sgd_step


def _torch(weights: LeNetWeights, x: np.ndarray, y: np.ndarray, compiled: bool) -> Step:
    import torch

    model = NATIVE["torch"]().lenet(weights)
    return torch_sgd_step(model, torch.compile(model) if compiled else model, x, y)


def _tensorflow(weights: LeNetWeights, x: np.ndarray, y: np.ndarray, compiled: bool) -> Step:
    import tensorflow as tf

    native = NATIVE["tensorflow"]()
    model = native.lenet(weights)
    return tf_sgd_step(model, list(model.trainable_variables), native.lenet_input(x),
                       tf.constant(y), compiled)


def _paddle(weights: LeNetWeights, x: np.ndarray, y: np.ndarray, compiled: bool) -> Step:
    import paddle

    model = NATIVE["paddle"]().lenet(weights)
    return paddle_sgd_step(model, paddle.jit.to_static(model) if compiled else model, x, y)


def _jax(weights: LeNetWeights, x: np.ndarray, y: np.ndarray, compiled: bool) -> Step:
    import jax.numpy as jnp

    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in weights]
    return jax_sgd_step(NATIVE["jax"]()._lenet_fn(), params, x, y, compiled)


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
