"""The core never imports a framework; `import d2lcompat` imports exactly the chosen one."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import d2lcompat
from d2lcompat import _registry

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = {"torch", "tensorflow", "paddle", "jax", "flax", "keras", "jaxlib"}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("folder", ["d2lcompat", "d2lcompat_cli", "conformance", "backends/d2lcompat_spec"])
def test_core_and_catalogue_import_no_framework(folder: str) -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imported_modules(p) & FRAMEWORKS)
        for p in (ROOT / folder).rglob("*.py")
        if _imported_modules(p) & FRAMEWORKS
    }
    assert offenders == {}


@pytest.mark.parametrize("name", ["torch", "tensorflow", "paddle", "jax"])
def test_each_adapter_imports_only_its_framework(name: str) -> None:
    adapter_dir = ROOT / "backends" / f"d2lcompat_{name}"
    own = {"jax": {"jax", "flax", "jaxlib"}, "tensorflow": {"tensorflow", "keras"}}.get(name, {name})
    for p in adapter_dir.rglob("*.py"):
        others = (_imported_modules(p) & FRAMEWORKS) - own
        assert not others, f"{p.relative_to(ROOT)} imports {sorted(others)}"


def test_import_d2lcompat_loads_exactly_the_chosen_framework() -> None:
    name = d2lcompat.backend()
    code = (
        "import json, sys, d2lcompat; "
        "print(json.dumps([d2lcompat.backend(), sorted(m for m in "
        f"{sorted(FRAMEWORKS - {'jaxlib', 'keras'})!r} if m in sys.modules)]))"
    )
    env = dict(os.environ, D2LCOMPAT_BACKEND=name)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    backend, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert backend == name
    expected = {"jax": ["jax"], "tensorflow": ["tensorflow"]}.get(name, [name])
    assert [m for m in loaded if m != "flax"] == expected, loaded


def test_adapter_spec_modules_do_not_import_a_framework() -> None:
    # Listing backends must not load them: the spec packages are framework-free.
    for name in ("torch", "tensorflow", "paddle", "jax"):
        init = ROOT / "backends" / f"d2lcompat_{name}" / "__init__.py"
        assert not (_imported_modules(init) & FRAMEWORKS), init


def test_unknown_backend_is_a_clear_error() -> None:
    env = dict(os.environ, D2LCOMPAT_BACKEND="mxnet")
    out = subprocess.run([sys.executable, "-c", "import d2lcompat"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "BackendError" in out.stderr and "'mxnet' is not a known backend" in out.stderr
    assert "torch" in out.stderr and "installed:" in out.stderr


def test_missing_backend_names_the_pip_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = _registry.available_specs()
    monkeypatch.setattr(_registry, "_is_installed", lambda spec: spec.name == "torch")
    monkeypatch.setenv("D2LCOMPAT_BACKEND", "paddle")
    with pytest.raises(d2lcompat.BackendError) as info:
        _registry._choose(specs)
    msg = str(info.value)
    assert 'pip install ".[paddle]" -c constraints.txt' in msg and "Installed backends: torch" in msg


def test_no_backend_installed_lists_every_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = _registry.available_specs()
    monkeypatch.setattr(_registry, "_is_installed", lambda spec: False)
    monkeypatch.delenv("D2LCOMPAT_BACKEND", raising=False)
    with pytest.raises(d2lcompat.BackendError, match=r"\[torch\].*\[paddle\]"):
        _registry._choose(specs)


def test_default_order_is_torch_jax_tensorflow_paddle(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = _registry.available_specs()
    assert list(specs)[:4] == ["torch", "jax", "tensorflow", "paddle"]
    monkeypatch.delenv("D2LCOMPAT_BACKEND", raising=False)
    monkeypatch.setattr(_registry, "_is_installed", lambda spec: spec.name in {"tensorflow", "jax"})
    assert _registry._choose(specs).name == "jax"


def test_backends_lists_all_four_with_the_active_one() -> None:
    infos = {b.name: b for b in d2lcompat.backends()}
    assert {"torch", "tensorflow", "paddle", "jax"} <= set(infos)
    active = infos[d2lcompat.backend()]
    assert active.active and active.installed and active.version and active.devices
    assert all(b.devices is None for b in infos.values() if not b.active)
