"""XB01 and XB03: files written under backend A load under backend B.

The conformance runner calls `write_reference` in backend A's process and then
`check_reference` in backend B's process (each backend in its own process, never two
frameworks in one), for every ordered pair (A, B), B == A included.

Files written by backend ``A`` into ``folder`` (all safetensors, written by d2lcompat):

* ``A.params.safetensors`` — ``save_parameters`` of a seeded MLP;
* ``A.io.safetensors`` — ``save({'x': X, 'y': net(X)})``, the input and A's output;
* ``A.tensor.safetensors``, ``A.list.safetensors``, ``A.dict.safetensors`` — `save` of a
  tensor, a list and a dict with deterministic values in several dtypes;
* ``A.sharded/`` — the same MLP saved with ``max_shard_size`` (3 shards and
  ``model.safetensors.index.json``, the Hugging Face layout); XB01 loads it too.

Examples
--------
Within one backend (what ``tests/test_xb.py`` does)::

    from d2lcompat_conformance.xb import check_reference, write_reference
    write_reference(folder)
    results = check_reference(folder, d2lcompat.backend())
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import nn, ops

__all__ = ["check_reference", "reference_tensors", "write_reference"]

RTOL, ATOL = 1e-5, 1e-6
#: Small enough for three shards of the MLP's 5,140 bytes.
SHARD_BYTES = 2200


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Dense(32, activation="relu"), nn.Dense(16, activation="relu"), nn.Dense(5))


def reference_tensors() -> dict[str, np.ndarray]:
    """The deterministic host values every backend saves for XB03 (dtypes every
    backend has: float32, float16, int32, bool)."""
    return {
        "a": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
        "b": (np.arange(6, dtype=np.float32) - 2.5).astype(np.float16),
        "c": np.arange(-3, 3, dtype=np.int32),
        "d": np.array([True, False, True]),
    }


def _native(arr: np.ndarray) -> Any:
    return ops.tensor(arr, dtype=str(arr.dtype))


def write_reference(dir: str | Path) -> list[str]:  # noqa: A002 - the runner's keyword
    """Write this backend's reference files into ``dir``; return their paths."""
    folder = Path(dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = d2lcompat.backend()
    d2lcompat.seed(1234)
    net = _mlp()
    net.initialize(d2lcompat.init.Xavier())
    X = ops.random.uniform((4, 20), low=-1.0, high=1.0)
    Y = net(X)
    paths = {k: folder / f"{name}.{k}.safetensors" for k in ("params", "io", "tensor", "list", "dict")}
    net.save_parameters(paths["params"])
    sharded = folder / f"{name}.sharded"
    net.save_parameters(sharded, max_shard_size=SHARD_BYTES)
    d2lcompat.save(paths["io"], {"x": X, "y": Y})
    ref = {k: _native(v) for k, v in reference_tensors().items()}
    d2lcompat.save(paths["tensor"], ref["a"])
    d2lcompat.save(paths["list"], [ref["a"], ref["b"], ref["c"]])
    d2lcompat.save(paths["dict"], {"d": ref["d"], "c": ref["c"], "b": ref["b"]})
    return [str(p) for p in paths.values()] + [str(sharded)]


def _result(sid: str, writer: str, status: str, message: str = "") -> dict[str, str]:
    return {"id": sid, "writer": writer, "reader": d2lcompat.backend(), "status": status,
            "message": message}


def _equal(got: Any, want: np.ndarray, what: str) -> None:
    have = ops.to_numpy(got)
    assert ops.dtype(got) == str(want.dtype), f"{what}: dtype {ops.dtype(got)}, expected {want.dtype}"
    assert have.shape == want.shape, f"{what}: shape {have.shape}, expected {want.shape}"
    np.testing.assert_array_equal(have, want, err_msg=what)


def _xb01(folder: Path, writer: str) -> None:
    net = _mlp()
    net.load_parameters(folder / f"{writer}.params.safetensors")
    io = d2lcompat.load(folder / f"{writer}.io.safetensors")
    stored = d2lcompat.load(folder / f"{writer}.params.safetensors")
    for k, p in net.collect_params().items():  # the values themselves: bit-identical
        np.testing.assert_array_equal(ops.to_numpy(p.data()), ops.to_numpy(stored[k]), err_msg=k)
    np.testing.assert_allclose(ops.to_numpy(net(io["x"])), ops.to_numpy(io["y"]), rtol=RTOL,
                               atol=ATOL, err_msg=f"{writer}'s output vs this backend's")
    sharded = _mlp()
    sharded.load_parameters(folder / f"{writer}.sharded")
    shards = sorted(p.name for p in (folder / f"{writer}.sharded").iterdir())
    assert shards == [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)] + [
        "model.safetensors.index.json"], f"sharded layout: {shards}"
    for k, p in sharded.collect_params().items():
        np.testing.assert_array_equal(ops.to_numpy(p.data()), ops.to_numpy(stored[k]),
                                      err_msg=f"sharded {k}")


def _xb03(folder: Path, writer: str) -> None:
    ref = reference_tensors()
    t = d2lcompat.load(folder / f"{writer}.tensor.safetensors")
    _equal(t, ref["a"], "tensor")
    lst = d2lcompat.load(folder / f"{writer}.list.safetensors")
    assert isinstance(lst, list) and len(lst) == 3, f"list: got {type(lst).__name__} of {len(lst)}"
    for got, key in zip(lst, "abc"):
        _equal(got, ref[key], f"list item {key}")
    dct = d2lcompat.load(folder / f"{writer}.dict.safetensors")
    assert isinstance(dct, dict) and list(dct) == ["d", "c", "b"], f"dict keys {list(dct)}"
    for key, got in dct.items():
        _equal(got, ref[key], f"dict[{key!r}]")


def check_reference(dir: str | Path, writer: str) -> list[dict[str, str]]:  # noqa: A002
    """Load the files ``writer`` wrote into ``dir`` under this process's backend; return
    one result per scenario: ``{id, writer, reader, status, message}``, ``status`` in
    ``pass`` / ``fail``."""
    folder = Path(dir)
    out = []
    for sid, fn in (("XB01", _xb01), ("XB03", _xb03)):
        try:
            fn(folder, writer)
        except Exception as exc:  # noqa: BLE001 - every failure is a result
            tb = traceback.format_exc(limit=4)
            out.append(_result(sid, writer, "fail", f"{type(exc).__name__}: {exc}\n{tb}"))
        else:
            out.append(_result(sid, writer, "pass"))
    return out
