"""API §11 / issue 3: optax trains a d2lcompat net through functional_call and jax.grad."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from _tied import tied_regression


def test_optax_trains_a_tied_net_with_jit() -> None:
    net, X, y = tied_regression()
    params = net.collect_params()
    values = {k: p.native() for k, p in params.items()}
    assert all(isinstance(v, jax.Array) for v in values.values())

    def loss_fn(vals: dict, X: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean((net.functional_call(vals, X) - y) ** 2)

    opt = optax.sgd(0.05)
    state = opt.init(values)

    @jax.jit
    def step(vals: dict, state: optax.OptState) -> tuple:
        loss, grads = jax.value_and_grad(loss_fn)(vals, X, y)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(vals, updates), state, loss

    losses = []
    for _ in range(20):
        values, state, loss = step(values, state)
        losses.append(float(loss))
    assert losses[-1] < losses[0] * 0.5
    for k, v in values.items():
        params[k].set_data(v)
    assert net[1].weight is net[2].weight
    assert float(jnp.mean((net(X) - y) ** 2)) < losses[0] * 0.5
