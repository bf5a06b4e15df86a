"""The PaddlePaddle adapter of d2lcompat. Importing this package does not import paddle."""

from d2lcompat._spec import BackendSpec

SPEC = BackendSpec(
    name="paddle",
    module="paddle",
    distribution="paddlepaddle",
    alt_distributions=("paddlepaddle-gpu",),
    extra="paddle",
    adapter="d2lcompat_paddle._adapter:PaddleBackend",
)
