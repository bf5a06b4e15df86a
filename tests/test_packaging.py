"""The pinned matrix stays installable: one version per distribution in constraints.txt."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> list[tuple[str, str]]:
    pins = []
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins.append((re.sub(r"[-_.]+", "-", name).lower(), version))
    return pins


def test_each_distribution_is_pinned_once() -> None:
    counts = Counter(name for name, _ in _pins())
    assert [n for n, c in counts.items() if c > 1] == []


def test_every_framework_of_the_matrix_is_pinned_exactly() -> None:
    names = {n for n, v in _pins() if v}
    assert {"torch", "tensorflow-cpu", "paddlepaddle", "jax", "jaxlib", "flax", "numpy",
            "safetensors", "ml-dtypes", "pytest"} <= names


def test_every_package_of_the_tree_is_in_the_wheel() -> None:
    # pyproject lists its packages explicitly (the backends live under backends/): a new
    # subpackage missing from that list would be absent from the installed wheel.
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    dirs = {"d2lcompat": "d2lcompat", "d2lcompat_cli": "d2lcompat_cli",
            "d2lcompat_conformance": "conformance"}
    found = set()
    for name, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    assert found <= listed, f"add to pyproject's packages: {sorted(found - listed)}"
