"""One NumPy `Generator` owned by d2lcompat drives every random draw.

Initializers and ``ops.random.*`` draw on the host from this generator and then
convert, so the same seed gives bit-identical values on every backend.
"""

from __future__ import annotations

import numpy as np

__all__ = ["generator", "seed"]

# Created at the first draw, not at import: numpy.random costs start-up time.
_GENERATOR: np.random.Generator | None = None


def seed(n: int) -> None:
    """Seed d2lcompat's random generator (initializers, ``ops.random``, dropout masks).

    Examples
    --------
    >>> import d2lcompat
    >>> d2lcompat.seed(42)
    >>> a = d2lcompat.ops.to_numpy(d2lcompat.ops.random.normal((3,)))
    >>> d2lcompat.seed(42)
    >>> bool((a == d2lcompat.ops.to_numpy(d2lcompat.ops.random.normal((3,)))).all())
    True
    """
    global _GENERATOR
    _GENERATOR = np.random.default_rng(int(n))


def generator() -> np.random.Generator:
    """The generator in use (private to the core and to initializers)."""
    global _GENERATOR
    if _GENERATOR is None:
        _GENERATOR = np.random.default_rng()
    return _GENERATOR
