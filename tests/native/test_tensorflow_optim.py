"""API §11 / issue 3: a Keras optimizer trains a d2lcompat net through param.native()."""

from __future__ import annotations

import keras
import tensorflow as tf
from _tied import tied_regression

from d2lcompat import ops


def test_keras_optimizer_trains_a_tied_net() -> None:
    net, X, y = tied_regression()
    natives = [p.native() for p in net.collect_params().values()]
    assert all(isinstance(v, tf.Variable) for v in natives)
    opt = keras.optimizers.SGD(learning_rate=0.05)
    losses = []
    for _ in range(20):
        with tf.GradientTape() as tape:
            loss = ops.mean(ops.square(net(X) - y))
        grads = tape.gradient(loss, natives)
        opt.apply_gradients(zip(grads, natives))
        losses.append(float(loss))
    assert losses[-1] < losses[0] * 0.5
    assert net[1].weight.native() is net[2].weight.native()
