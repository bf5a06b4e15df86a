"""API §6: the same seed gives bit-identical parameters in every process and on every backend.

Every backend's env compares its digest with one computed by NumPy alone (the
reference below), so all four agree with each other by transitivity; the
conformance runner (XB02) also compares them directly.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np

import d2lcompat
from d2lcompat_conformance.scenarios.in_ import seeded_digest


def numpy_reference_digest() -> str:
    rng = np.random.default_rng(42)
    h = hashlib.sha256()
    shapes = [("0.weight", (256, 20), 20 + 256), ("0.bias", (256,), None),
              ("1.weight", (10, 256), 256 + 10), ("1.bias", (10,), None)]
    for name, shape, fans in shapes:
        if fans is None:
            arr = np.zeros(shape, np.float32)
        else:
            bound = np.sqrt(6.0 / fans)
            arr = rng.uniform(-bound, bound, shape).astype(np.float32)
        h.update(name.encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def test_seed_digest_matches_numpy_reference_in_process() -> None:
    assert seeded_digest() == numpy_reference_digest()


def test_seed_digest_is_the_same_in_another_process() -> None:
    code = "from d2lcompat_conformance.scenarios.in_ import seeded_digest; print(seeded_digest())"
    env = dict(os.environ, D2LCOMPAT_BACKEND=d2lcompat.backend())
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == numpy_reference_digest()


def test_random_ops_follow_the_seed() -> None:
    d2lcompat.seed(7)
    a = d2lcompat.ops.to_numpy(d2lcompat.ops.random.normal((3, 4), 1.0, 2.0))
    rng = np.random.default_rng(7)
    np.testing.assert_array_equal(a, rng.normal(1.0, 2.0, (3, 4)).astype(np.float32))
    b = d2lcompat.ops.to_numpy(d2lcompat.ops.random.uniform((5,), -1.0, 1.0))
    np.testing.assert_array_equal(b, rng.uniform(-1.0, 1.0, (5,)).astype(np.float32))
