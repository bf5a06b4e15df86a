"""The TensorFlow adapter of d2lcompat. Importing this package does not import tensorflow."""

from d2lcompat._spec import BackendSpec

SPEC = BackendSpec(
    name="tensorflow",
    module="tensorflow",
    distribution="tensorflow-cpu",
    alt_distributions=("tensorflow",),
    extra="tensorflow",
    adapter="d2lcompat_tensorflow._adapter:TensorFlowBackend",
)
