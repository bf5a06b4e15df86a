"""What a load says about a file it cannot read: one clean CheckpointError that names
what the file looks like and who reads it, the same under every backend; and files
that are byte-for-byte reproducible."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import d2lcompat
from d2lcompat import CheckpointError, nn, ops
from d2lcompat._io import _clean
from d2lcompat._registry import active


def _error(path: Path) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        d2lcompat.load(path)
    exc = info.value
    # one clean error: no chained traceback ("During handling of the above exception...")
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__
    assert "\x1b" not in str(exc)
    return exc


def test_missing_file_is_one_clean_error(tmp_path: Path) -> None:
    exc = _error(tmp_path / "missing.safetensors")
    assert "missing.safetensors" in str(exc) and "No such file" in str(exc)
    net = nn.Dense(2, in_units=3)
    net.initialize()
    with pytest.raises(CheckpointError) as info:
        net.load_parameters(tmp_path / "missing.safetensors")
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)


def test_text_file_is_called_text_not_a_crash_victim(tmp_path: Path) -> None:
    path = tmp_path / "notes.safetensors"
    path.write_text("hello, this is not a checkpoint\n")
    msg = str(_error(path))
    assert "text file" in msg and "'hello, this is not a checkpoint'" in msg
    assert "crash" not in msg and "cut short" not in msg


def test_truncated_safetensors_is_told_it_was_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    d2lcompat.save(path, ops.ones((100,)))
    path.write_bytes(path.read_bytes()[:-40])
    assert "cut short" in str(_error(path))


@pytest.mark.parametrize(
    ("kind", "data", "words", "reader"),
    [
        ("zip", b"PK\x03\x04" + bytes(60), "zip archive", "D2LCOMPAT_BACKEND=torch d2lcompat convert"),
        ("hdf5", b"\x89HDF\r\n\x1a\n" + bytes(60), "HDF5 file",
         "D2LCOMPAT_BACKEND=tensorflow d2lcompat convert"),
        ("pickle", pickle.dumps({"w": [1.0, 2.0]}, protocol=4), "Python pickle",
         "D2LCOMPAT_BACKEND=paddle d2lcompat convert --trusted"),
        ("npy", b"\x93NUMPY" + bytes(60), "NumPy .npy file", ""),
    ],
)
def test_foreign_files_say_what_they_look_like_and_who_reads_them(
    tmp_path: Path, kind: str, data: bytes, words: str, reader: str
) -> None:
    path = tmp_path / f"foreign.{kind}"
    path.write_bytes(data)
    msg = str(_error(path))  # load() reads safetensors only: the same on every backend
    assert words in msg and reader in msg
    assert active().name not in msg.split("(")[0]
    # load_parameters may try the running framework's own reader; the message still
    # names the kind and the converter, cleaned of framework formatting
    net = nn.Dense(2, in_units=3)
    net.initialize()
    with pytest.raises(CheckpointError) as info:
        net.load_parameters(path, trusted=True)
    text = str(info.value)
    assert words in text and reader in text and "\x1b" not in text
    assert info.value.__cause__ is None


def test_load_messages_are_the_same_under_every_backend(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    msg = str(_error(path))
    # nothing in it depends on the running backend
    for name in ("torch", "tensorflow", "paddle", "jax"):
        msg = msg.replace(f"D2LCOMPAT_BACKEND={name}", "")
    assert active().name not in msg, msg


def test_framework_text_is_cleaned() -> None:
    raw = "\x1b[31mError:\x1b[0m  something\n  went wrong " + "word " * 200
    out = _clean(raw)
    assert "\x1b" not in out and "\n" not in out
    assert out.endswith("word …") and len(out) <= 310


def test_two_saves_of_the_same_seeded_net_are_byte_identical(tmp_path: Path) -> None:
    def saved(name: str) -> bytes:
        d2lcompat.seed(7)
        net = nn.Sequential(nn.Dense(8, activation="relu"), nn.Dense(3))
        net.initialize()
        net(ops.ones((1, 5)))
        net.save_parameters(tmp_path / name)
        return (tmp_path / name).read_bytes()

    assert saved("a") == saved("b")
    d2lcompat.seed(7)
    d2lcompat.save(tmp_path / "c", {"b": ops.ones((2,)), "a": ops.zeros((3,), dtype="float16")})
    d2lcompat.seed(7)
    d2lcompat.save(tmp_path / "d", {"b": ops.ones((2,)), "a": ops.zeros((3,), dtype="float16")})
    assert (tmp_path / "c").read_bytes() == (tmp_path / "d").read_bytes()
    # the header is sorted JSON; the widest dtype comes first in the data
    head = (tmp_path / "c").read_bytes()
    n = int.from_bytes(head[:8], "little")
    header = json.loads(head[8 : 8 + n])
    assert list(header) == sorted(header)
    assert header["b"]["data_offsets"][0] == 0  # float32 before float16


def test_file_written_by_safetensors_itself_loads(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"z": np.arange(6, dtype=np.float32).reshape(2, 3), "a": np.array([True, False])},
              str(tmp_path / "x.safetensors"))
    got = d2lcompat.load(tmp_path / "x.safetensors")
    assert sorted(got) == ["a", "z"]
    np.testing.assert_array_equal(ops.to_numpy(got["z"]), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert ops.to_numpy(got["a"]).tolist() == [True, False]


def test_64_bit_values_load_where_the_backend_holds_them(tmp_path: Path) -> None:
    # A file with int64/float64 (written by a backend that has them) loads everywhere:
    # unchanged where the backend has 64-bit types, else narrowed after a range check.
    from safetensors.numpy import save_file

    small = tmp_path / "small.safetensors"
    save_file({"i": np.array([1, -2, 2**31 - 1], np.int64), "f": np.array([0.5, -1e30])}, str(small))
    got = d2lcompat.load(small)
    has64 = "int64" in active().SUPPORTED_DTYPES
    assert ops.dtype(got["i"]) == ("int64" if has64 else "int32")
    assert ops.dtype(got["f"]) == ("float64" if has64 else "float32")
    assert ops.to_numpy(got["i"]).tolist() == [1, -2, 2**31 - 1]
    big = tmp_path / "big.safetensors"
    save_file({"i": np.array([2**40], np.int64)}, str(big))
    if has64:
        assert ops.to_numpy(d2lcompat.load(big)["i"]).tolist() == [2**40]
    else:
        with pytest.raises(CheckpointError, match="jax_enable_x64"):
            d2lcompat.load(big)


def test_a_never_run_deferred_net_shows_no_placeholder_shape(tmp_path: Path) -> None:
    import re

    ran = nn.Sequential(nn.Dense(128, activation="relu"), nn.Dense(10))
    ran.initialize()
    ran(ops.ones((2, 20)))
    ran.save_parameters(tmp_path / "a.safetensors")
    deferred = nn.Sequential(nn.Dense(64, activation="relu"), nn.Dense(10), nn.Dense(3))
    deferred.initialize()  # never run: the input sizes are unknown
    with pytest.raises(d2lcompat.CheckpointError) as info:
        deferred.load_parameters(tmp_path / "a.safetensors")
    text = str(info.value)
    assert not re.search(r"\(\d+, 0\)", text), text  # no (64, 0) placeholder
    assert ("shape: '0.weight' is (64, ?) in the model, not yet initialized (input size "
            "unknown), but (128, 20) in the file") in text
    assert "shape: '0.bias' is (64,) in the model but (128,) in the file" in text
    assert ("missing: the file has no '2.weight' (shape (3, ?): not yet initialized (input "
            "size unknown), float32)") in text
    with pytest.raises(d2lcompat.CheckpointError) as info:
        deferred.save_parameters(tmp_path / "b.safetensors")
    text = str(info.value)
    assert "'0.weight' (shape (64, ?): not yet initialized (input size unknown))" in text
    assert not re.search(r"\(\d+, 0\)", text), text
