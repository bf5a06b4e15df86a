"""XB06, the Transformer's part: the same seed gives the same Transformer parameters,
outputs and loss curve on every backend.

`transformer_curve` runs in one backend's process and returns host arrays; the XB
runner saves them from each backend and compares every pair to 1e-4 relative.

Examples
--------
::

    from d2lcompat_conformance.xb_transformer import transformer_curve
    ref = transformer_curve(20)   # {'param:encoder.embedding.weight': ..., 'output': ..., 'loss': ...}
"""

from __future__ import annotations

import numpy as np

from d2lcompat import autograd, ops

from . import seq2seq

__all__ = ["NUM_STEPS", "transformer_curve"]

NUM_STEPS = 6
_CACHE: dict[int, dict[str, np.ndarray]] = {}


def transformer_curve(steps: int = 20) -> dict[str, np.ndarray]:
    """A seeded encoder-decoder Transformer (the book's, 2 blocks, 4 heads, 32 hidden
    units, no dropout) on fixed NumPy data (digit reversal): its initial parameters
    (``'param:<name>'``), its outputs on a fixed batch before training (``'output'``,
    predict mode) and the mean losses of ``steps`` Adam steps (``'loss'``), as float32
    host arrays. Computed once per process and number of steps."""
    if steps in _CACHE:
        return _CACHE[steps]
    vocab, X, y, _, _ = seq2seq.reverse_task(64, NUM_STEPS, seed=606)
    net = seq2seq.build(len(vocab), NUM_STEPS, seed=2606)
    out: dict[str, np.ndarray] = {
        f"param:{name}": np.array(ops.to_numpy(p.data()), dtype=np.float32)
        for name, p in net.collect_params().items()
    }
    with autograd.predict_mode():
        out["output"] = np.array(ops.to_numpy(net(ops.tensor(X[:8]))), dtype=np.float32)
    # Batches in a fixed order (seed 6060), 16 samples each.
    out["loss"] = seq2seq.train(net, X, y, steps, 16, 0.01, seed=6060).astype(np.float32)
    _CACHE[steps] = out
    return out
