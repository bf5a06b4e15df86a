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


def _extras_tree() -> dict[str, set[str]]:
    """For each extra of pyproject.toml whose packages are installed here: every
    distribution it installs (its requirements, theirs, ...), read from the installed
    packages' metadata. An extra with a requirement not installed here (another
    backend's framework) is left out: its tree cannot be read in this environment."""
    import importlib.metadata
    import tomllib

    from packaging.requirements import Requirement

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras: dict[str, list[str]] = config["project"]["optional-dependencies"]
    core = config["project"]["dependencies"]

    def canon(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    def expand(reqs: list[str], wanted: set[str], seen: set[str]) -> bool:
        """Adds the tree of ``reqs`` to ``seen``; False when a needed one is not installed."""
        ok = True
        for text in reqs:
            req = Requirement(text)
            if req.marker is not None and not any(
                req.marker.evaluate({"extra": e}) for e in (wanted or {""})
            ):
                continue
            name = canon(req.name)
            if name == "d2lcompat":  # "all" = d2lcompat[torch,tensorflow,...]
                for e in req.extras:
                    ok = expand(extras[e], set(), seen) and ok
                continue
            try:
                dist = importlib.metadata.distribution(req.name)
            except importlib.metadata.PackageNotFoundError:
                ok = False
                continue
            key = f"{name}[{','.join(sorted(req.extras))}]"
            if key in seen:
                continue
            seen.add(key)
            ok = expand(dist.requires or [], set(req.extras), seen) and ok
        return ok

    trees: dict[str, set[str]] = {}
    for extra in [None, *extras]:
        seen: set[str] = set()
        if expand(core if extra is None else extras[extra], set(), seen):
            trees[extra or "(core)"] = {k.split("[")[0] for k in seen}
    return trees


def test_every_package_an_extra_installs_is_pinned() -> None:
    pinned = {n for n, v in _pins() if v}
    trees = _extras_tree()
    # this environment has the core, the test/plot/data extras and at least one backend
    assert {"(core)", "test", "plot", "data"} <= set(trees), sorted(trees)
    assert set(trees) & {"torch", "tensorflow", "paddle", "jax"}, sorted(trees)
    assert {"narwhals", "cloudpickle", "tzdata"} <= trees["data"] | trees["plot"]
    unpinned = {extra: sorted(tree - pinned) for extra, tree in trees.items() if tree - pinned}
    assert unpinned == {}, f"add to constraints.txt (pip freeze --all): {unpinned}"
