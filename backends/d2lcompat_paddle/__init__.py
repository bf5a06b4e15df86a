"""The PaddlePaddle adapter of d2lcompat. Importing this package does not import paddle."""

from d2lcompat_spec import BackendSpec  # not d2lcompat: that would choose a backend

SPEC = BackendSpec(
    name="paddle",
    module="paddle",
    distribution="paddlepaddle",
    alt_distributions=("paddlepaddle-gpu",),
    extra="paddle",
    adapter="d2lcompat_paddle._adapter:PaddleBackend",
    launcher=("-m", "paddle.distributed.launch", "--nproc_per_node={nproc}", "--log_dir={log_dir}"),
)
