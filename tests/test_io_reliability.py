"""Checkpoint files under attack (issue 19): shards confined to their folder, no
partial loads (read failures, files rewritten in place, a racing writer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import CheckpointError, nn, ops
from d2lcompat._io import stformat
from d2lcompat_conformance.models import to_np


def _net(seed: int) -> nn.Sequential:
    d2lcompat.seed(seed)
    net = nn.Sequential(nn.Dense(16, activation="relu", in_units=8), nn.Dense(4, in_units=16),
                        nn.Dense(2, in_units=4))
    net.initialize()
    return net


def _values(net: nn.Block) -> dict[str, np.ndarray]:
    return {k: to_np(p.data()).copy() for k, p in net.collect_params().items()}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _sharded(folder: Path, seed: int = 1) -> dict[str, np.ndarray]:
    net = _net(seed)
    net.save_parameters(folder, max_shard_size=200)
    return _values(net)


def _shards(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(".safetensors"))


# ------------------------------------------------------------ 1. shard confinement
@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_a_shard_linked_outside_the_folder_is_refused(tmp_path: Path, how: str) -> None:
    want = _sharded(tmp_path / "ck")
    outside = tmp_path / "outside"
    outside.mkdir()
    shard = _shards(tmp_path / "ck")[1]
    os.replace(tmp_path / "ck" / shard, outside / shard)
    target = outside / shard if how == "absolute" else Path("..") / "outside" / shard
    os.symlink(target, tmp_path / "ck" / shard)
    net = _net(7)
    before = _values(net)
    for call in (lambda: net.load_parameters(tmp_path / "ck"),
                 lambda: d2lcompat.load(tmp_path / "ck"),
                 lambda: d2lcompat.load(tmp_path / "ck" / "model.safetensors.index.json"),
                 lambda: d2lcompat.convert(tmp_path / "ck", tmp_path / "out.safetensors")):
        with pytest.raises(CheckpointError, match="outside") as info:
            call()
        message = str(info.value)
        assert f"'{shard}' points to '{os.path.realpath(outside / shard)}'" in message
        assert "trusted=True" in message
        assert _same(_values(net), before)
    assert not (tmp_path / "out.safetensors").exists()
    # The caller who trusts the checkpoint reads it.
    net.load_parameters(tmp_path / "ck", trusted=True)
    assert _same(_values(net), want)
    assert _same({k: to_np(v) for k, v in d2lcompat.load(tmp_path / "ck", trusted=True).items()}, want)


def test_a_text_file_outside_is_never_opened_nor_quoted(tmp_path: Path) -> None:
    _sharded(tmp_path / "ck")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-password-1234 and more text\n")
    shard = _shards(tmp_path / "ck")[0]
    os.remove(tmp_path / "ck" / shard)
    os.symlink(secret, tmp_path / "ck" / shard)
    net = _net(3)
    before = _values(net)
    for trusted in (False, True):
        with pytest.raises(CheckpointError) as info:
            net.load_parameters(tmp_path / "ck", trusted=trusted)
        assert "TOPSECRET" not in str(info.value), str(info.value)
        assert _same(_values(net), before)
    # A text file inside the folder is the user's own: its beginning is quoted.
    os.remove(tmp_path / "ck" / shard)
    (tmp_path / "ck" / shard).write_text("just some notes\n")
    with pytest.raises(CheckpointError, match="just some notes"):
        net.load_parameters(tmp_path / "ck")


def test_a_single_model_file_linked_outside_a_folder_is_refused(tmp_path: Path) -> None:
    net = _net(1)
    net.save_parameters(tmp_path / "elsewhere.safetensors")
    (tmp_path / "m").mkdir()
    os.symlink(tmp_path / "elsewhere.safetensors", tmp_path / "m" / "model.safetensors")
    clone = _net(2)
    with pytest.raises(CheckpointError, match="'model.safetensors' points to"):
        clone.load_parameters(tmp_path / "m")
    clone.load_parameters(tmp_path / "m", trusted=True)
    assert _same(_values(clone), _values(net))


@pytest.mark.parametrize("entry", ["../evil.safetensors", "/etc/passwd", "sub/x.safetensors", ".."])
def test_weight_map_names_outside_the_folder_are_refused(tmp_path: Path, entry: str) -> None:
    _sharded(tmp_path / "ck")
    index = tmp_path / "ck" / "model.safetensors.index.json"
    doc = json.loads(index.read_text())
    first = next(iter(doc["weight_map"]))
    doc["weight_map"][first] = entry
    index.write_text(json.dumps(doc))
    net = _net(3)
    before = _values(net)
    for trusted in (False, True):  # trusted never allows other names than files of the folder
        with pytest.raises(CheckpointError, match="not a file name in the same folder"):
            net.load_parameters(tmp_path / "ck", trusted=trusted)
    assert _same(_values(net), before)


def test_a_hugging_face_hub_cache_layout_loads(tmp_path: Path) -> None:
    # models--org--name/blobs/<hash>, snapshots/<rev>/<file> -> ../../blobs/<hash>
    built = tmp_path / "built"
    want = _sharded(built)
    repo = tmp_path / "hub" / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for i, name in enumerate(sorted(os.listdir(built))):
        blob = f"{i:040x}"
        os.replace(built / name, repo / "blobs" / blob)
        os.symlink(Path("..") / ".." / "blobs" / blob, snapshot / name)
    net = _net(5)
    net.load_parameters(snapshot)
    assert _same(_values(net), want)
    net = _net(5)
    net.load_parameters(snapshot / "model.safetensors.index.json")
    assert _same(_values(net), want)
    # ... but a link from the snapshot to another repository's blobs is refused.
    other = tmp_path / "hub" / "models--other--name" / "blobs"
    other.mkdir(parents=True)
    shard = _shards(snapshot)[0]
    os.replace(os.path.realpath(snapshot / shard), other / "x")
    os.remove(snapshot / shard)
    os.symlink(other / "x", snapshot / shard)
    with pytest.raises(CheckpointError, match="outside"):
        _net(6).load_parameters(snapshot)


# --------------------------------------------------------------- 2. no partial loads
@pytest.fixture(params=["kept buffers", "undo file"])
def journal(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a load keeps the old values for its undo (`source._Journal`): the
    framework's own old buffers (a load below `KEEP_OLD_BYTES`), and the undo file
    (above it)."""
    from d2lcompat._io import source

    if request.param == "undo file":
        monkeypatch.setattr(source, "KEEP_OLD_BYTES", 0)
    else:
        monkeypatch.setattr(source, "KEEP_OLD_BYTES", 1 << 40)
        monkeypatch.setattr(source, "_available_bytes", lambda: None)
    return str(request.param)


@pytest.mark.parametrize("limit", ["default", "zero"])
def test_a_small_load_keeps_the_old_values_without_an_undo_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    # Below KEEP_OLD_BYTES the old values stay in the framework's old buffers (no undo
    # file: one made to fail here is never asked for); above it, the undo file is
    # written first, and a TMPDIR that cannot take it stops the load, nothing changed.
    import tempfile

    from d2lcompat._io import source
    from d2lcompat._registry import active

    if limit == "zero":
        monkeypatch.setattr(source, "KEEP_OLD_BYTES", 0)
    _net(1).save_parameters(tmp_path / "p")
    net = _net(2)
    before = _values(net)
    natives = {k: p.native() for k, p in net.collect_params().items()}

    def no_space(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_space)
    if limit == "zero" and active().SUPPORTS_MUTABLE_VARIABLES:
        with pytest.raises(CheckpointError, match="No space left on device"):
            net.load_parameters(tmp_path / "p")
        assert _same(_values(net), before)
    else:
        net.load_parameters(tmp_path / "p")
        assert _same(_values(net), _values(_net(1)))
        if active().SUPPORTS_MUTABLE_VARIABLES:  # the same variable objects
            assert all(p.native() is natives[k] for k, p in net.collect_params().items())


def test_the_kept_buffers_are_the_old_values_after_training(tmp_path: Path) -> None:
    # A load into a net a compiled step has trained (its parameters swapped for fresh
    # buffers under torch and Paddle, copied on write under TensorFlow) is trained on
    # by the same compiled step with the same numbers as a net that only ever held the
    # file's values: the step reads the new buffers, not the kept old ones.
    from d2lcompat import Trainer, loss

    _net(1).save_parameters(tmp_path / "p")
    x = ops.tensor(np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 8))
    y = ops.tensor(np.ones((3, 2), np.float32))

    def trained(net: nn.Sequential) -> Any:
        net.hybridize()
        return d2lcompat.train_step(net, loss.L2Loss(), Trainer(net.collect_params(), "sgd",
                                                                {"learning_rate": 0.1}))

    a, b = _net(2), _net(1)
    step_a, step_b = trained(a), trained(b)
    for _ in range(2):
        step_a(x, y)
    a.load_parameters(tmp_path / "p")
    b.load_parameters(tmp_path / "p")
    assert _same(_values(a), _values(b))
    for _ in range(2):
        np.testing.assert_allclose(to_np(step_a(x, y)), to_np(step_b(x, y)), rtol=1e-6)
    assert _same(_values(a), _values(b))


@pytest.mark.usefixtures("journal")
@pytest.mark.parametrize("sharded", [False, True])
@pytest.mark.parametrize("nth", [0, 1, 3, 5])
def test_a_read_failing_on_the_nth_tensor_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sharded: bool, nth: int
) -> None:
    path = tmp_path / "ck"
    src = _net(1)
    if sharded:
        src.save_parameters(path, max_shard_size=200)
    else:
        src.save_parameters(path)
    calls = [0]

    def failing(real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if calls[0] == nth:
                calls[0] += 1
                raise OSError(5, "Input/output error")
            calls[0] += 1
            return real(*args, **kwargs)
        return wrapper

    # Every way a load reads a tensor's bytes: straight into a parameter (preadv) or a
    # view of the memory map.
    monkeypatch.setattr(stformat, "read_into", failing(stformat.read_into))
    monkeypatch.setattr(stformat.Mapped, "view", failing(stformat.Mapped.view))
    for net in (_net(2), nn.Sequential(nn.Dense(16, activation="relu"), nn.Dense(4), nn.Dense(2))):
        deferred = not net[0].weight.is_initialized
        before = {} if deferred else _values(net)
        calls[0] = 0
        with pytest.raises(CheckpointError):
            net.load_parameters(path)
        assert calls[0] == nth + 1
        if deferred:
            assert not any(p.is_initialized for p in net.collect_params().values())
        else:
            assert _same(_values(net), before)


@pytest.mark.usefixtures("journal")
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
def test_the_rollback_restores_every_dtype(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    def net(seed: int) -> nn.Sequential:
        d2lcompat.seed(seed)
        n = nn.Sequential(nn.Dense(4, in_units=3, dtype=dtype), nn.Dense(2, in_units=4, dtype=dtype))
        n.initialize()
        return n

    def values(n: nn.Block) -> dict[str, np.ndarray]:
        return {k: to_np(ops.cast(p.data(), "float32")).copy() for k, p in n.collect_params().items()}

    net(1).save_parameters(tmp_path / "p")
    target = net(2)
    before = values(target)
    calls = [0]

    def failing(real: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            calls[0] += 1
            if calls[0] == 4:
                raise OSError(5, "Input/output error")
            return real(*args)
        return wrapper

    monkeypatch.setattr(stformat, "read_into", failing(stformat.read_into))
    monkeypatch.setattr(stformat.Mapped, "view", failing(stformat.Mapped.view))
    with pytest.raises(CheckpointError, match="Input/output error"):
        target.load_parameters(tmp_path / "p")
    assert _same(values(target), before)
    assert all(p.dtype == dtype for p in target.collect_params().values())


@pytest.mark.usefixtures("journal")
def test_a_file_rewritten_in_place_during_the_load_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process rewrites a shard in place (same size, other bytes) between the
    # validation and the reading: the load notices and puts every parameter back.
    from d2lcompat._io import source

    _sharded(tmp_path / "ck", seed=1)
    other = _sharded(tmp_path / "other", seed=2)
    victim = _shards(tmp_path / "ck")[-1]
    real_apply_all = source._apply_all

    def rewrite_then_apply(*args: Any) -> None:
        data = (tmp_path / "other" / victim).read_bytes()
        with open(tmp_path / "ck" / victim, "r+b") as f:
            f.write(data)
        st = os.stat(tmp_path / "ck" / victim)
        os.utime(tmp_path / "ck" / victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        real_apply_all(*args)

    monkeypatch.setattr(source, "_apply_all", rewrite_then_apply)
    net = _net(3)
    before = _values(net)
    with pytest.raises(CheckpointError, match="changed"):
        net.load_parameters(tmp_path / "ck")
    assert _same(_values(net), before)
    assert not _same(before, other)


def _tiny_net(seed: int, deferred: bool = False) -> nn.Sequential:
    # 32 tensors of 4 bytes each, back to back in the file: some of them start 64-byte
    # aligned in its memory map, the case where jax.device_put would not copy (issue 22);
    # and a 64 KiB weight. Never run: only its parameters matter.
    d2lcompat.seed(seed)
    units = 0 if deferred else 1
    net = nn.Sequential(*[nn.Dense(1, in_units=units) for _ in range(16)],
                        nn.Dense(128, in_units=128 * (not deferred)))
    net.initialize()
    if not deferred:  # every tensor differs from the other seed's (biases start at 0)
        rng = np.random.default_rng(seed)
        for p in net.collect_params().values():
            p.set_data(ops.tensor(rng.normal(size=p.shape).astype(np.float32)))
    return net


@pytest.mark.parametrize("how", ["into initialized parameters", "into deferred ones", "load()"])
def test_what_a_load_gives_shares_no_memory_with_the_file(tmp_path: Path, how: str) -> None:
    # The file rewritten in place (same size, other bytes) or removed after the load
    # leaves the loaded values as they were: each one is a copy, not a view of the file.
    saved, other = _tiny_net(1), _tiny_net(2)
    want, theirs = _values(saved), _values(other)
    assert not any(np.array_equal(want[k], theirs[k]) for k in want)
    saved.save_parameters(tmp_path / "p")
    other.save_parameters(tmp_path / "q")
    if how == "load()":
        loaded = d2lcompat.load(tmp_path / "p")

        def values() -> dict[str, np.ndarray]:
            return {k: to_np(v).copy() for k, v in loaded.items()}
    else:
        net = _tiny_net(3, deferred=how == "into deferred ones")  # shapes from the file
        net.load_parameters(tmp_path / "p")

        def values() -> dict[str, np.ndarray]:
            return _values(net)
    assert _same(values(), want)
    data = (tmp_path / "q").read_bytes()
    assert len(data) == os.path.getsize(tmp_path / "p")
    with open(tmp_path / "p", "r+b") as f:
        f.write(data)
    assert _same(values(), want)
    os.remove(tmp_path / "p")
    assert _same(values(), want)


_WRITER = textwrap.dedent("""
    import sys, time
    import d2lcompat
    from d2lcompat import nn
    folder, ready, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    nets = []
    for seed in (1, 2):
        d2lcompat.seed(seed)
        net = nn.Sequential(nn.Dense(16, activation="relu", in_units=8), nn.Dense(4, in_units=16),
                            nn.Dense(2, in_units=4))
        net.initialize()
        net.save_parameters(f"{ready}.{seed}.safetensors")
        nets.append(net)
    nets[0].save_parameters(folder, max_shard_size=200)
    open(ready, "w").close()
    for i in range(n):
        nets[i % 2].save_parameters(folder, max_shard_size=200)
""")


@pytest.mark.usefixtures("journal")
def test_loads_racing_a_writer_are_all_or_nothing(tmp_path: Path) -> None:
    # A second process saves two different nets alternately, 40 times, into the folder
    # this one loads from: every load either gives one save's values exactly, or raises
    # with every parameter unchanged.
    folder, ready = tmp_path / "ck", tmp_path / "ready"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder), str(ready), "40"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert writer.poll() is None, writer.communicate()[0].decode()
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.05)
        saved = []
        for seed in (1, 2):
            probe = _net(9)
            probe.load_parameters(f"{ready}.{seed}.safetensors")
            saved.append(_values(probe))
        net = _net(3)
        loads = failures = 0
        messages: list[str] = []
        fresh = _values(net)
        while (writer.poll() is None or loads < 5) and loads < 400:
            for k, p in net.collect_params().items():  # values neither save holds
                p.set_data(ops.tensor(fresh[k]))
            before = _values(net)
            try:
                net.load_parameters(folder)
            except CheckpointError as exc:
                failures += 1
                messages.append(str(exc).splitlines()[0])
                assert _same(_values(net), before), "a failed load changed parameters"
            else:
                got = _values(net)
                assert any(_same(got, s) for s in saved), "a load mixed two saves"
            loads += 1
        assert writer.wait(timeout=120) == 0, writer.communicate()[0].decode()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    print(f"racing: {failures} of {loads} loads failed", messages[:5])
    assert loads > failures, f"{failures} of {loads} loads failed"


def test_shards_beyond_the_pinned_ones_are_opened_again_when_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from d2lcompat._io import source

    monkeypatch.setattr(source, "MAX_PINNED", 1)
    want = _sharded(tmp_path / "ck")
    assert len(_shards(tmp_path / "ck")) > 2
    net = _net(4)
    net.load_parameters(tmp_path / "ck")
    assert _same(_values(net), want)
    # A shard replaced after validation is noticed there, and the load rolls back.
    real_apply_all = source._apply_all
    last = _shards(tmp_path / "ck")[-1]

    def replace_then_apply(*args: Any) -> None:
        data = (tmp_path / "ck" / last).read_bytes()
        (tmp_path / "new").write_bytes(data)
        os.replace(tmp_path / "new", tmp_path / "ck" / last)
        real_apply_all(*args)

    monkeypatch.setattr(source, "_apply_all", replace_then_apply)
    net = _net(5)
    before = _values(net)
    with pytest.raises(CheckpointError, match="changed"):
        net.load_parameters(tmp_path / "ck")
    assert _same(_values(net), before)
