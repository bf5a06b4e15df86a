"""The ``d2lcompat`` command line: ``info`` (``conformance`` and ``convert`` have their own tests)."""

from __future__ import annotations

import os
import subprocess
import sys

import d2lcompat


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, D2LCOMPAT_BACKEND=d2lcompat.backend(), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "d2lcompat", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_info_lists_backends_versions_and_devices() -> None:
    out = _run("info")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"backend in use: {d2lcompat.backend()}" in text
    for name in ("torch", "tensorflow", "paddle", "jax"):
        assert name in text
        assert f'pip install "d2lcompat[{name}]"' in text
    active = next(b for b in d2lcompat.backends() if b.active)
    assert active.version is not None and active.version in text
    assert "cpu(0)" in text
    assert f"default device: {d2lcompat.default_device()!r}" in text


def test_help_names_the_three_commands() -> None:
    out = _run("--help")
    assert out.returncode == 0
    for cmd in ("info", "conformance", "convert"):
        assert cmd in out.stdout
