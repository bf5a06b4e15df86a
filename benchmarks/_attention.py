"""Multi-head attention, forward + backward: d2lcompat's `nn.MultiHeadAttention` against
the same computation written natively around the framework's fused attention.

The case (issue 21): B=32, T=128, d=256, 8 heads, self-attention with a key mask
(``valid_lens`` of shape ``(B,)``), no biases. Both sides compute the loss ``sum(out)``
and its gradient with respect to the four weight matrices, eagerly (d2lcompat's
`autograd.grad` against torch/paddle ``backward``, a TensorFlow ``GradientTape`` and
``jax.value_and_grad``), with the same weights and inputs. Target: ratio <= 1.10.

Run alone (one backend per process)::

    D2LCOMPAT_BACKEND=torch python -m benchmarks._attention --rounds 7
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

B, T, D, H = 32, 128, 256, 8
NAMES = ("W_q", "W_k", "W_v", "W_o")


def _inputs() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(21)
    X = rng.normal(size=(B, T, D)).astype(np.float32)
    lens = rng.integers(T // 4, T + 1, size=B).astype(np.int64)
    W = {n: (rng.normal(size=(D, D)) / math.sqrt(D)).astype(np.float32) for n in NAMES}
    return X, lens, W


def _native_torch(X: np.ndarray, lens: np.ndarray, W: dict[str, np.ndarray]) -> Callable[[], Any]:
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(X)
    keep = (torch.arange(T)[None, :] < torch.from_numpy(lens)[:, None])[:, None, None, :]
    ws = [torch.from_numpy(W[n]).requires_grad_(True) for n in NAMES]

    def step() -> Any:
        q, k, v = (F.linear(x, w).view(B, T, H, D // H).transpose(1, 2) for w in ws[:3])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        y = F.linear(out.transpose(1, 2).reshape(B, T, D), ws[3])
        return torch.autograd.grad(y.sum(), ws)[3].numpy()

    return step


def _native_jax(X: np.ndarray, lens: np.ndarray, W: dict[str, np.ndarray]) -> Callable[[], Any]:
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(X)
    keep = (jnp.arange(T)[None, :] < jnp.asarray(lens)[:, None])[:, None, None, :]
    ws = [jnp.asarray(W[n]) for n in NAMES]

    def loss(ws: list[Any]) -> Any:
        q, k, v = ((x @ w.T).reshape(B, T, H, D // H) for w in ws[:3])
        out = jax.nn.dot_product_attention(q, k, v, mask=keep)
        return jnp.sum(out.reshape(B, T, D) @ ws[3].T)

    grad = jax.value_and_grad(loss)

    def step() -> Any:
        _, g = grad(ws)
        return np.asarray(g[3])

    return step


def _native_paddle(X: np.ndarray, lens: np.ndarray, W: dict[str, np.ndarray]) -> Callable[[], Any]:
    import paddle
    import paddle.nn.functional as F

    x = paddle.to_tensor(X)
    keep = (paddle.arange(T)[None, :] < paddle.to_tensor(lens)[:, None])[:, None, None, :]
    ws = [paddle.to_tensor(W[n].T, stop_gradient=False) for n in NAMES]  # Paddle's (in, out)

    def step() -> Any:
        q, k, v = (F.linear(x, w).reshape([B, T, H, D // H]) for w in ws[:3])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, training=False)
        y = F.linear(out.reshape([B, T, D]), ws[3])
        return paddle.grad(y.sum(), ws)[3].numpy()

    return step


def _native_tensorflow(X: np.ndarray, lens: np.ndarray, W: dict[str, np.ndarray]) -> Callable[[], Any]:
    import tensorflow as tf

    x = tf.constant(X)
    keep = (tf.range(T)[None, :] < tf.constant(lens, tf.int32)[:, None])[:, None, None, :]
    ws = [tf.Variable(W[n]) for n in NAMES]
    bias = tf.where(keep, 0.0, -1e6)  # TF has no fused attention: Keras composes it too

    def step() -> Any:
        with tf.GradientTape() as tape:
            q, k, v = (tf.transpose(tf.reshape(tf.matmul(x, w, transpose_b=True), (B, T, H, D // H)),
                                    (0, 2, 1, 3)) for w in ws[:3])
            scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(D // H) + bias
            out = tf.matmul(tf.nn.softmax(scores, axis=-1), v)
            y = tf.matmul(tf.reshape(tf.transpose(out, (0, 2, 1, 3)), (B, T, D)), ws[3], transpose_b=True)
            total = tf.reduce_sum(y)
        return tape.gradient(total, ws)[3].numpy()

    return step


NATIVE = {"torch": _native_torch, "jax": _native_jax, "paddle": _native_paddle,
          "tensorflow": _native_tensorflow}


def attention_cases(backend: str, rounds: int, compare: Callable[..., dict[str, float]],
                    record: Callable[..., None]) -> None:
    """Record the ``attention`` row of this backend."""
    from d2lcompat import autograd, nn, ops

    X, lens, W = _inputs()
    mha = nn.MultiHeadAttention(D, H, 0.0)
    mha.initialize()
    x, vl = ops.tensor(X), ops.tensor(lens)
    mha(x, x, x, vl)
    for n in NAMES:
        getattr(mha, n).weight.set_data(W[n])
    params = mha.collect_params()

    def ours() -> Any:
        _, g = autograd.grad(lambda: ops.sum(mha(x, x, x, vl)), params)
        return ops.to_numpy(g["W_o.weight"])  # both sides end on one host copy (a sync)

    native = NATIVE[backend](X, lens, W)
    ref = native()
    diff = float(np.abs(ours() - (ref.T if backend == "paddle" else ref)).max())
    record("attention", f"MHA fwd+bwd B{B} T{T} d{D} h{H} mask", compare(ours, native, rounds, 0.5),
           max_abs_diff=diff)


def main(argv: list[str] | None = None) -> int:
    import d2lcompat

    from .run import compare

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)
    rows: list[dict[str, Any]] = []

    def record(kind: str, name: str, result: dict[str, Any], **extra: Any) -> None:
        rows.append({"kind": kind, "case": name, **result, **extra})

    attention_cases(d2lcompat.backend(), args.rounds, compare, record)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
