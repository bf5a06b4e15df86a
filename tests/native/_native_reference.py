"""The reference two-layer MLP behind IO09's native fixtures (NumPy only).

``python tests/native/_native_reference.py`` rewrites ``conformance/data/native_mlp_io.safetensors``
(the input and the expected output); each ``test_<backend>_native.py`` writes its
framework's own file of the same weights (``mlp.pt``, ``mlp.pdparams``, ``mlp.weights.h5``)
when it is missing or ``D2LCOMPAT_REGEN_FIXTURES=1``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IN, HIDDEN, OUT = 4, 8, 3
DATA = Path(__file__).resolve().parents[2] / "conformance" / "data"


def reference() -> dict[str, np.ndarray]:
    """Weights in d2lcompat's layout (Dense weight ``(out, in)``), an input and the output
    of ``Dense(8, relu) -> Dense(3)`` computed in float64."""
    rng = np.random.default_rng(20240501)
    w0 = rng.standard_normal((HIDDEN, IN)).astype(np.float32)
    b0 = rng.standard_normal(HIDDEN).astype(np.float32)
    w1 = rng.standard_normal((OUT, HIDDEN)).astype(np.float32)
    b1 = rng.standard_normal(OUT).astype(np.float32)
    x = rng.standard_normal((5, IN)).astype(np.float32)
    h = np.maximum(x.astype(np.float64) @ w0.T + b0, 0)
    y = (h @ w1.T + b1).astype(np.float32)
    return {"0.weight": w0, "0.bias": b0, "1.weight": w1, "1.bias": b1, "x": x, "y": y}


def write_io() -> Path:
    from safetensors.numpy import save_file

    ref = reference()
    path = DATA / "native_mlp_io.safetensors"
    save_file({"x": ref["x"], "y": ref["y"]}, str(path), metadata={"about": "IO09 input/output"})
    return path


if __name__ == "__main__":
    print(write_io())
