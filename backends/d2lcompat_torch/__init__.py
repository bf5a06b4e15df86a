"""The PyTorch adapter of d2lcompat. Importing this package does not import torch."""

from d2lcompat_spec import BackendSpec  # not d2lcompat: that would choose a backend

SPEC = BackendSpec(
    name="torch",
    module="torch",
    distribution="torch",
    extra="torch",
    adapter="d2lcompat_torch._adapter:TorchBackend",
    launcher=("-m", "torch.distributed.run", "--standalone", "--nproc-per-node={nproc}"),
)
