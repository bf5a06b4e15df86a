"""The ``d2lcompat`` command line: ``info``, ``--version``, errors without tracebacks,
``conformance``'s choice of backends (its reports have their own tests, test_runner.py;
``convert`` is tested with the loader, test_io.py).

The command runs as the installed script does (``python -m d2lcompat_cli``: no backend
is imported before the command), at 80 columns, as in a CI log.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys

import pytest

import d2lcompat
from d2lcompat_cli import main
from d2lcompat_spec import install_hint


def _run(*args: str, backend: str | None = None, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, D2LCOMPAT_BACKEND=backend or d2lcompat.backend(), COLUMNS=str(columns))
    return subprocess.run([sys.executable, "-m", "d2lcompat_cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


# What a framework's C++ runtime prints to stderr at import whatever its log level: on
# CPUs where oneDNN is on, TensorFlow 2.21 prints absl's "WARNING: All log messages
# before absl::InitializeLog() ..." and an "I0000 ... port.cc:153] oneDNN custom
# operations are on" line even with TF_CPP_MIN_LOG_LEVEL=2 (seen on this CI's host).
_RUNTIME_LOG = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWE]\d{4} )")


def _ours(stderr: str) -> list[str]:
    """The lines of ``stderr`` that d2lcompat wrote (a framework's runtime log left out)."""
    return [ln for ln in stderr.splitlines() if not _RUNTIME_LOG.match(ln)]


def _not_installed() -> list[d2lcompat.BackendInfo]:
    return [b for b in d2lcompat.backends() if not b.installed]


def test_info_lists_backends_versions_and_devices() -> None:
    out = _run("info", columns=200)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"backend in use: {d2lcompat.backend()}" in text
    for b in d2lcompat.backends():
        assert b.name in text
        assert install_hint(b.extra) in text
    active = next(b for b in d2lcompat.backends() if b.active)
    assert active.version is not None and active.version in text
    assert "cpu(0)" in text
    assert f"default device: {d2lcompat.default_device()!r}" in text


def test_info_at_80_columns_keeps_the_install_commands_whole() -> None:
    out = _run("info", columns=80)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), out.stdout
    for b in d2lcompat.backends():
        row = next(line for line in lines if line.split()[:1] == [b.name])
        assert install_hint(b.extra) in row  # on the backend's own line, not cut or wrapped
        if not b.installed:
            assert row.split()[1:3] == ["no", "-"], row  # no devices for a missing backend
    assert "(other process)" not in out.stdout


def test_info_table_wraps_the_devices_and_never_the_install_command() -> None:
    from d2lcompat_cli import _table

    rows = [["backend", "installed", "devices", "install with"],
            ["torch *", "2.13.0+cu126", "gpu(0), gpu(1), gpu(2), cpu(0)", install_hint("torch")],
            ["tensorflow", "no", "-", install_hint("tensorflow")]]
    lines = _table(rows, 80, wrap=(1, 2))
    assert all(len(line) <= 80 for line in lines), lines
    torch_lines = lines[2:-1]
    assert torch_lines[0].endswith(install_hint("torch"))
    assert lines[-1].endswith(install_hint("tensorflow"))
    text = " ".join(torch_lines)
    for device in ("gpu(0),", "gpu(1),", "gpu(2),", "cpu(0)"):
        assert device in text.split()  # wrapped, nothing lost


def test_info_with_a_broken_backend_variable_lists_backends_and_says_what_is_wrong() -> None:
    out = _run("info", backend="mxnet")
    assert out.returncode == 1
    assert "Traceback" not in out.stdout + out.stderr
    assert "no backend in use" in out.stdout
    for b in d2lcompat.backends():
        assert install_hint(b.extra) in out.stdout
    assert "D2LCOMPAT_BACKEND='mxnet' is not a known backend" in out.stderr
    assert "fix: set D2LCOMPAT_BACKEND to an installed backend" in out.stderr


def test_version() -> None:
    out = _run("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"d2lcompat {importlib.metadata.version('d2lcompat')}"


def test_a_user_error_is_one_message_and_debug_shows_the_traceback() -> None:
    out = _run("convert", "in.pt", "out.safetensors", backend="mxnet")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    installed = ", ".join(b.name for b in d2lcompat.backends() if b.installed)
    assert out.stderr.splitlines() == [
        "d2lcompat convert: BackendError: D2LCOMPAT_BACKEND='mxnet' is not a known backend. "
        f"Known: {', '.join(b.name for b in d2lcompat.backends())}; "
        f"installed: {installed}. To fix: set it to an installed one ({installed}) or unset "
        "it to use the first installed.",
        "(run with --debug to see the traceback)",
    ]
    for argv in (("--debug", "convert", "in.pt", "o.safetensors"),
                 ("convert", "in.pt", "o.safetensors", "--debug")):
        out = _run(*argv, backend="mxnet")
        assert out.returncode == 1
        assert "Traceback (most recent call last)" in out.stderr
        assert out.stderr.rstrip().endswith("is not a known backend. Known: "
                                             + ", ".join(b.name for b in d2lcompat.backends())
                                             + f"; installed: {installed}. To fix: set it to an"
                                             f" installed one ({installed}) or unset it to use"
                                             " the first installed.")
        assert "d2lcompat.BackendError: D2LCOMPAT_BACKEND='mxnet'" in out.stderr


def test_main_catches_every_d2lcompat_error_and_os_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import d2lcompat_cli

    def fail(args: object) -> int:
        raise d2lcompat.ShapeError("Dense '0' expects 20 features; received (2, 30).")

    monkeypatch.setattr(d2lcompat_cli, "_info", fail)
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "d2lcompat info: ShapeError: Dense '0' expects 20 features; received (2, 30)."
    with pytest.raises(d2lcompat.ShapeError):
        main(["info", "--debug"])

    def missing(args: object) -> int:
        raise FileNotFoundError(2, "No such file or directory", "x.pt")

    monkeypatch.setattr(d2lcompat_cli, "_info", missing)
    assert main(["info"]) == 1
    assert "FileNotFoundError" in capsys.readouterr().err

    def bug(args: object) -> int:
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(d2lcompat_cli, "_info", bug)
    with pytest.raises(KeyError):  # a bug keeps its traceback
        main(["info"])


def test_conformance_honours_the_backend_variable() -> None:
    out = _run("conformance", "--no-xb", "--only", "MC01", backend="mxnet")
    assert out.returncode == 1
    text = out.stdout + out.stderr
    assert "Traceback" not in text
    assert "D2LCOMPAT_BACKEND=mxnet: running that backend only" in text
    assert "'mxnet' is not a registered d2lcompat backend" in text


def test_a_missing_backend_is_reported_once() -> None:
    missing = _not_installed()
    if not missing:  # an environment with every framework: nothing is missing to report
        pytest.skip("every registered backend is installed here")
    b = missing[0]
    out = _run("conformance", "--backends", b.name, "--no-xb", "--only", "MC01")
    assert out.returncode == 1
    text = out.stdout + out.stderr
    assert text.count(f"not installed: {install_hint(b.extra)}") == 1, text


def test_help_names_the_three_commands() -> None:
    out = _run("--help")
    assert out.returncode == 0
    for cmd in ("info", "conformance", "convert", "--version", "--debug"):
        assert cmd in out.stdout


def test_convert_debug_shows_the_traceback(tmp_path: os.PathLike[str]) -> None:
    bad = os.path.join(tmp_path, "bad.pt")
    with open(bad, "w", encoding="utf-8") as f:
        f.write("not a checkpoint")
    out = _run("convert", bad, os.path.join(tmp_path, "o.safetensors"))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    lines = _ours(out.stderr)
    assert lines[0].startswith(f"d2lcompat convert: CheckpointError: Cannot load '{bad}'"), lines
    assert lines[-1] == "(run with --debug to see the traceback)"
    for argv in (("--debug", "convert"), ("convert", "--debug")):
        out = _run(*argv, bad, os.path.join(tmp_path, "o.safetensors"))
        assert out.returncode == 1
        assert "Traceback (most recent call last)" in out.stderr
        assert f"d2lcompat.CheckpointError: Cannot load '{bad}'" in out.stderr
    assert not os.path.exists(os.path.join(tmp_path, "o.safetensors"))


def test_public_errors_print_under_the_package_name() -> None:
    import traceback

    from d2lcompat import _errors

    for name in _errors.__all__:
        cls = getattr(d2lcompat, name)
        assert cls is getattr(_errors, name)
        assert (cls.__module__, cls.__qualname__) == ("d2lcompat", name)
    assert d2lcompat.optim.OptimizerError.__module__ == "d2lcompat.optim"
    import d2lcompat_conformance
    import d2lcompat_spec

    for module, name in ((d2lcompat_conformance, "ConformanceError"),
                         (d2lcompat_spec, "PluginError")):
        assert getattr(module, name).__module__ == module.__name__
    try:
        raise d2lcompat.BackendError("no such backend")
    except d2lcompat.BackendError as exc:
        shown = traceback.format_exception_only(exc)
    assert shown == ["d2lcompat.BackendError: no such backend\n"]
    assert repr(d2lcompat.ShapeError).endswith("'d2lcompat.ShapeError'>")


@pytest.mark.parametrize("case", ["unknown", "not installed"])
def test_a_bad_backend_at_import_is_one_paragraph(case: str) -> None:
    if case == "unknown":
        name, expected = "mxnet", "D2LCOMPAT_BACKEND='mxnet' is not a known backend."
    else:
        missing = _not_installed()
        # With every framework installed there is no missing one to import; the unknown
        # case above still runs.
        name = missing[0].name if missing else "mxnet"
        expected = (f"D2LCOMPAT_BACKEND={name!r} but" if missing
                    else "D2LCOMPAT_BACKEND='mxnet' is not a known backend.")
    env = dict(os.environ, D2LCOMPAT_BACKEND=name)
    out = subprocess.run([sys.executable, "-c", "import d2lcompat"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    last = out.stderr.rstrip().splitlines()[-1]
    assert last.startswith("d2lcompat.BackendError: " + expected), out.stderr
    assert "To fix" in last or "Install it" in last  # says what to do, in the same paragraph
    # one exception, not a chain of them
    assert out.stderr.count("Traceback (most recent call last)") == 1, out.stderr
    assert "During handling" not in out.stderr and "direct cause" not in out.stderr
