"""The TensorFlow adapter of d2lcompat. Importing this package does not import tensorflow."""

from d2lcompat_spec import BackendSpec  # not d2lcompat: that would choose a backend

SPEC = BackendSpec(
    name="tensorflow",
    module="tensorflow",
    distribution="tensorflow-cpu",
    alt_distributions=("tensorflow",),
    extra="tensorflow",
    adapter="d2lcompat_tensorflow._adapter:TensorFlowBackend",
)
