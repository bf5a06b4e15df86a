"""The DP scenarios' training run, and the worker they spawn.

``python -m d2lcompat_conformance._dp_train MODE OUT`` trains the fixed model for
`STEPS` SGD steps and writes ``OUT/rank<r>.npz`` (every parameter) and, on worker
0, ``OUT/ckpt.safetensors`` (``save_parameters``):

``single``     one worker, the whole batch (the reference);
``processes``  one of ``D2LCOMPAT_WORLD_SIZE`` processes (`d2lcompat.parallel.init`),
               its own shard of each batch, gradients averaged by the framework's
               collective (`parallel.all_reduce_mean`);
``devices``    one process, each batch split over its devices
               (`parallel.DeviceParallel`: XLA sharding, ``MirroredStrategy``).

Written against the public API only; no backend names.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BATCH", "LR", "STEPS", "batches", "main", "make_net", "train"]

LR, STEPS, BATCH, FEATURES, SEED = 0.5, 5, 8, 4, 3


def batches() -> tuple[np.ndarray, np.ndarray]:
    """`STEPS` fixed batches of `BATCH` samples: X ``(STEPS, BATCH, FEATURES)``, y ``(STEPS, BATCH, 1)``."""
    rng = np.random.default_rng(12)
    X = rng.standard_normal((STEPS, BATCH, FEATURES)).astype(np.float32)
    w = rng.standard_normal((FEATURES, 1)).astype(np.float32)
    y = (np.tanh(X @ w) + 0.1).astype(np.float32)
    return X, y


def make_net() -> Any:
    """The model every worker builds: the same seed gives the same start everywhere."""
    import d2lcompat
    from d2lcompat import nn

    d2lcompat.seed(SEED)
    net = nn.Sequential(
        nn.Dense(8, activation="relu", in_units=FEATURES), nn.Dense(1, in_units=8)
    )
    net.initialize()
    return net


def train(mode: str) -> Any:
    """Train `make_net` for `STEPS` SGD steps in ``mode`` with ``d2lcompat.train_step``;
    return the net. The same few lines serve every mode: only the data each worker
    sees and the ``devices`` differ."""
    import d2lcompat
    from d2lcompat import loss, ops, parallel

    if mode == "processes":
        parallel.init()
    net = make_net()
    params = net.collect_params()
    workers, rank = parallel.world_size(), parallel.rank()
    if mode == "processes":
        if workers < 2:
            raise RuntimeError("mode 'processes' needs D2LCOMPAT_WORLD_SIZE >= 2")
        parallel.sync_parameters(params)  # as DDP does; equal already (same seed)
    devices = parallel.local_devices()[:2] if mode == "devices" else None
    if devices is not None and len(devices) < 2:
        raise RuntimeError(f"mode 'devices' needs two devices; this process has {devices}")
    trainer = d2lcompat.Trainer(params, "sgd", {"learning_rate": LR})
    # train_step: the eager step (autograd.grad + Trainer.step, which all-reduces over
    # the workers) or, with devices, the step split over them by the framework.
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer, devices=devices)
    X, y = batches()
    local = BATCH // workers if mode == "processes" else BATCH
    rows = slice(rank * local, (rank + 1) * local)
    for s in range(STEPS):
        step(ops.tensor(X[s, rows]), ops.tensor(y[s, rows]))
    return net


def params_np(net: Any) -> dict[str, np.ndarray]:
    from d2lcompat import ops

    return {n: ops.to_numpy(p.data()) for n, p in net.collect_params().items()}


def main(argv: list[str] | None = None) -> int:
    mode, out = (argv if argv is not None else sys.argv[1:])[:2]
    from d2lcompat import parallel

    net = train(mode)
    out_dir = Path(out)
    np.savez(out_dir / f"rank{parallel.rank()}.npz", **params_np(net))
    if parallel.rank() == 0:
        net.save_parameters(out_dir / "ckpt.safetensors")
    parallel.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
