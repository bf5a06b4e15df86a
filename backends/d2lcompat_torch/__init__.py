"""The PyTorch adapter of d2lcompat. Importing this package does not import torch."""

from d2lcompat._spec import BackendSpec

SPEC = BackendSpec(
    name="torch",
    module="torch",
    distribution="torch",
    extra="torch",
    adapter="d2lcompat_torch._adapter:TorchBackend",
)
