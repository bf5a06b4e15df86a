"""A killed save leaves nothing that grows: temporary files are recognizable, and the
next save into the folder removes those of dead writers, never a live writer's."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import d2lcompat
from d2lcompat import nn, ops
from d2lcompat._io import atomic as _atomic
from d2lcompat_conformance.models import to_np

KILLS = int(os.environ.get("D2LCOMPAT_TEMPFILE_KILLS", "4"))

_WRITER = """
import sys, d2lcompat
from d2lcompat import nn, ops
net = nn.Sequential(nn.Dense(512, in_units=512), nn.Dense(512, in_units=512))
net.initialize()
k = 0
print("ready", flush=True)
while True:
    k += 1
    for p in net.collect_params().values():
        p.set_data(ops.full(p.shape, float(k)))
    net.save_parameters(sys.argv[1], **eval(sys.argv[2]))
"""


def _temps(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if _atomic.TMP_TAG in n)


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Dense(512), nn.Dense(512))


def _loads_whole(path: Path) -> float:
    clone = _net()
    clone.load_parameters(path)
    values = np.unique(np.concatenate([to_np(p.data()).ravel() for p in clone.collect_params().values()]))
    assert len(values) == 1, f"a mix of saves in one file: {values[:5]}"
    return float(values[0])


@pytest.mark.parametrize("sharded", [False, True], ids=["file", "shards"])
def test_repeated_sigkill_leaves_no_pile_of_temp_files(tmp_path: Path, sharded: bool) -> None:
    path = tmp_path / ("ck" if sharded else "ck.safetensors")
    kwargs = {"max_shard_size": 1_200_000} if sharded else {}
    first = _net()
    first.initialize(d2lcompat.init.Zero())
    first(ops.zeros((1, 512)))
    first.save_parameters(path, **kwargs)
    rng = random.Random(3)
    env = {**os.environ, "D2LCOMPAT_BACKEND": d2lcompat.backend()}
    seen = []
    for _ in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), repr(kwargs)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.2, 0.8))  # mid-save, most of the time
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        seen.append(_loads_whole(path))
        # at most the one file the writer just dropped: every earlier one was removed by
        # the saves that followed it
        assert len(_temps(tmp_path)) <= 1, _temps(tmp_path)
    assert max(seen) > 0, "the writers never completed a save: the test proved nothing"
    first.save_parameters(path, **kwargs)  # the next save cleans up after the dead writer
    assert _temps(tmp_path) == []
    assert _loads_whole(path) == 0.0


def test_a_live_writers_temp_file_is_never_removed(tmp_path: Path) -> None:
    # A writer that is alive and holds its lock: its temporary file stays, whatever its age.
    script = (
        "import os, sys, tempfile, time\n"
        "from d2lcompat._io import atomic as _atomic\n"
        "fd, tmp = tempfile.mkstemp(prefix=_atomic._prefix('x.safetensors'), dir=sys.argv[1])\n"
        "_atomic._lock(fd)\n"
        "os.utime(tmp, (0, 0))\n"  # very old
        "print(os.path.basename(tmp), flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        name = proc.stdout.readline().decode().strip()
        assert _atomic.TMP_TAG in name
        d2lcompat.save(tmp_path / "x.safetensors", ops.ones((2,)))
        assert (tmp_path / name).exists(), "a live writer's temporary file was removed"
    finally:
        proc.kill()
        proc.wait()
    d2lcompat.save(tmp_path / "x.safetensors", ops.ones((2,)))  # now its writer is dead
    assert not (tmp_path / name).exists()


def test_unlocked_young_temp_file_of_a_live_pid_is_kept(tmp_path: Path) -> None:
    # Another host's (or a reused pid's) file: only unlocked *and* old files are stale.
    young = tmp_path / f".a{_atomic.TMP_TAG}{os.getpid()}.otherhost.abc123"
    young.write_bytes(b"x")
    old = tmp_path / f".b{_atomic.TMP_TAG}{os.getpid()}.otherhost.def456"
    old.write_bytes(b"x")
    os.utime(old, (0, 0))
    unrelated = tmp_path / ".c.safetensors.abc.tmp"  # not ours: never touched
    unrelated.write_bytes(b"x")
    assert _atomic.clean_stale(str(tmp_path)) == [old.name]
    assert young.exists() and unrelated.exists()
