"""Devices as a second axis over the same scenarios (docs/style.md lesson 8).

Each test starts a fresh process of this session's backend (``D2LCOMPAT_BACKEND``),
because the device set is fixed when the framework starts:

* the DV group with two CPU devices (``D2LCOMPAT_CPU_DEVICES=2``): on a backend that
  can split its CPU (``SUPPORTS_CPU_DEVICES``) every DV scenario passes, DV06 (mixing
  devices raises `DeviceError`) included; elsewhere DV06 is ``unsupported`` with the
  reason and the others still pass;
* the whole catalogue with the default device ``cpu:1`` (``D2LCOMPAT_DEVICE=cpu:1``),
  what a GPU run with ``D2LCOMPAT_DEVICE=gpu:0`` does on a machine that has one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

import d2lcompat
from d2lcompat._registry import active

_RUN = """
import json, sys
from d2lcompat_conformance import load_all, run_all
ids = [i for i in load_all() if i.startswith(tuple(sys.argv[1].split(",")))] if sys.argv[1] else None
print("RESULTS" + json.dumps([r.to_dict() for r in run_all(ids)]))
"""


def _run(prefixes: str, timeout: float, **env: str) -> list[dict[str, Any]]:
    full = {**os.environ, "D2LCOMPAT_BACKEND": d2lcompat.backend(), **env}
    full.pop("XLA_FLAGS", None)  # the core derives it from D2LCOMPAT_CPU_DEVICES
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, prefixes],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS")][-1]
    return list(json.loads(line[len("RESULTS") :]))


def _failures(results: list[dict[str, Any]]) -> list[str]:
    return [f"{r['id']}: {r['message'][:800]}" for r in results if r["status"] == "fail"]


def test_dv_scenarios_with_two_cpu_devices() -> None:
    results = _run("DV", timeout=300, D2LCOMPAT_CPU_DEVICES="2")
    by_id = {r["id"]: r for r in results}
    assert sorted(by_id) == [f"DV0{i}" for i in range(1, 8)]
    assert not _failures(results), "\n".join(_failures(results))
    if active().SUPPORTS_CPU_DEVICES:
        statuses = {sid: r["status"] for sid, r in by_id.items()}
        assert set(statuses.values()) == {"pass"}, statuses
    else:
        dv06 = by_id["DV06"]
        assert dv06["status"] == "unsupported", dv06
        assert "D2LCOMPAT_CPU_DEVICES=2" in dv06["message"] and "single CPU" in dv06["message"]
        assert all(r["status"] == "pass" for sid, r in by_id.items() if sid != "DV06")


@pytest.mark.skipif(
    not active().SUPPORTS_CPU_DEVICES,
    reason=f"the {d2lcompat.backend()} backend has a single CPU device: no cpu(1) to default to",
)
def test_whole_catalogue_with_default_device_cpu1() -> None:
    # Measured on a 2-core machine: ~35 s (tensorflow) to ~70 s (jax) for the whole
    # catalogue, so it runs whole rather than only the MC/PA/DV groups.
    results = _run("", timeout=900, D2LCOMPAT_CPU_DEVICES="2", D2LCOMPAT_DEVICE="cpu:1")
    assert len(results) >= 50, [r["id"] for r in results]
    assert {r["device"] for r in results} == {"cpu(1)"}
    assert not _failures(results), "\n".join(_failures(results))
    dv = {r["id"]: r["status"] for r in results if r["id"].startswith("DV")}
    assert set(dv.values()) == {"pass"}, dv  # DV06 mixes cpu(1) and cpu(0)


def test_default_device_that_does_not_exist_fails_at_import() -> None:
    full = {**os.environ, "D2LCOMPAT_BACKEND": d2lcompat.backend(), "D2LCOMPAT_DEVICE": "gpu:64"}
    proc = subprocess.run(
        [sys.executable, "-c", "import d2lcompat"],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "DeviceError" in proc.stderr and "gpu(64)" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.skipif(
    any(len(b.devices or []) > 1 for b in d2lcompat.backends()),
    reason="this process has two devices: DV06 runs instead of being unsupported",
)
def test_dv06_reason_advises_cpu_devices_only_where_they_help() -> None:
    from d2lcompat_conformance import run_scenario

    result = run_scenario("DV06")
    assert result.status == "unsupported", result.message
    if active().SUPPORTS_CPU_DEVICES:
        assert "set D2LCOMPAT_CPU_DEVICES=2" in result.message
    else:  # torch, paddle: one CPU device whatever the variable says
        assert "set D2LCOMPAT_CPU_DEVICES" not in result.message
        assert "single CPU device" in result.message and "needs a GPU" in result.message
