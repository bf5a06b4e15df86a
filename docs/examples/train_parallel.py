"""One training script for one device, several devices, or several processes.

    python train_parallel.py                              # one device
    D2LCOMPAT_CPU_DEVICES=2 python train_parallel.py      # two devices, one process (JAX, TF)
    d2lcompat launch --nproc 2 train_parallel.py          # the framework's own launcher

See docs/distributed.md.
"""

import sys

import numpy as np

import d2lcompat
from d2lcompat import loss, nn, ops, parallel

parallel.init()  # joins the group `d2lcompat launch` started; a no-op in a lone process
devices = parallel.local_devices()  # this worker's devices: its GPU, or the CPU devices
workers, rank = parallel.world_size(), parallel.rank()

d2lcompat.seed(0)
net = nn.Sequential(nn.Dense(16, activation="relu", in_units=4), nn.Dense(1, in_units=16))
net.initialize()
parallel.sync_parameters(net.collect_params())  # every worker starts from worker 0's values
trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
step = d2lcompat.train_step(net, loss.L2Loss(), trainer, devices=devices)

rng = np.random.default_rng(0)
X = rng.standard_normal((256, 4)).astype("float32")
y = X.sum(axis=1, keepdims=True).astype("float32")
batch = 32  # the global batch: each worker takes its own contiguous shard of it
local = batch // workers
for epoch in range(3):
    for i in range(0, len(X), batch):
        rows = slice(i + rank * local, i + (rank + 1) * local)
        mean_loss = step(ops.tensor(X[rows]), ops.tensor(y[rows]))
    if rank == 0:
        print(f"epoch {epoch}: loss {float(ops.item(mean_loss)):.6f} "
              f"({workers} worker(s), devices {devices})")
if rank == 0:
    net.save_parameters(sys.argv[1] if len(sys.argv) > 1 else "model.safetensors")
parallel.shutdown()
