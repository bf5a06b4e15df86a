"""The JAX adapter of d2lcompat. Importing this package does not import jax."""

from d2lcompat_spec import BackendSpec  # not d2lcompat: that would choose a backend

SPEC = BackendSpec(
    name="jax",
    module="jax",
    distribution="jax",
    extra="jax",
    adapter="d2lcompat_jax._adapter:JaxBackend",
)
