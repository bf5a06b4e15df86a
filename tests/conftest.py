"""Tests run in the process of one backend, chosen by D2LCOMPAT_BACKEND (one tox env each).

Adapter tests of the other backends are not collected here: they run in their own env.
"""

from __future__ import annotations

import os

BACKENDS = ("torch", "tensorflow", "paddle", "jax")
_ACTIVE = os.environ.get("D2LCOMPAT_BACKEND", "")

collect_ignore = [f"backends/test_{b}_adapter.py" for b in BACKENDS if b != _ACTIVE]
collect_ignore += [
    f"native/test_{b}_{kind}.py" for b in BACKENDS if b != _ACTIVE for kind in ("native", "optim")
]
