"""What an adapter tells d2lcompat *before* it is imported — importable without d2lcompat.

An adapter registers one `BackendSpec` under the entry-point group
``d2lcompat.backends``. This module is deliberately a top-level package of its
own, not ``d2lcompat._spec``: importing anything inside the ``d2lcompat``
package runs ``d2lcompat/__init__.py``, which chooses a backend and imports its
framework. The conformance runner must list and check every backend without
importing any framework (two frameworks in one process can segfault), and so
must ``d2lcompat.backends()`` for the backends it does not use. An adapter's
``SPEC`` module therefore imports `BackendSpec` from here, never from
``d2lcompat``.

``d2lcompat.BackendSpec`` and ``d2lcompat._spec`` re-export the same objects.

Examples
--------
>>> from d2lcompat_spec import BackendSpec, discover
>>> spec = BackendSpec("torch", "torch", "torch", "torch", "d2lcompat_torch._adapter:TorchBackend")
>>> spec.extra
'torch'
>>> "torch" in discover()
True
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass

__all__ = [
    "DEFAULT_ORDER",
    "ENTRY_POINT_GROUP",
    "INSTALL_COMMAND",
    "BackendSpec",
    "PluginError",
    "discover",
    "install_hint",
    "installed_version",
    "is_installed",
]

ENTRY_POINT_GROUP = "d2lcompat.backends"

#: Preference order when ``D2LCOMPAT_BACKEND`` is unset; other plugins follow by name.
DEFAULT_ORDER: tuple[str, ...] = ("torch", "jax", "tensorflow", "paddle")


@dataclass(frozen=True)
class BackendSpec:
    """Static description of a backend adapter.

    Parameters
    ----------
    name : str
        The value of ``D2LCOMPAT_BACKEND`` that selects it (``"torch"``).
    module : str
        The framework's top-level import name, checked with ``find_spec``.
    distribution : str
        The distribution whose installed version is reported (``"torch"``).
    extra : str
        The pip extra of d2lcompat that installs the framework.
    adapter : str
        ``"package.module:Class"`` of the `d2lcompat.Backend` subclass.
    alt_distributions : tuple of str, optional
        Other distributions that provide the same module (``"paddlepaddle-gpu"``).
    launcher : tuple of str, optional
        The arguments after ``python`` that start ``{nproc}`` workers with the
        framework's own launcher (``("-m", "torch.distributed.run", ...)``), used by
        ``d2lcompat launch`` (``{log_dir}``: the folder for the launcher's own logs); empty
        when d2lcompat starts the workers itself.

    Examples
    --------
    >>> BackendSpec("torch", "torch", "torch", "torch", "d2lcompat_torch._adapter:TorchBackend").extra
    'torch'
    """

    name: str
    module: str
    distribution: str
    extra: str
    adapter: str
    alt_distributions: tuple[str, ...] = ()
    launcher: tuple[str, ...] = ()


class PluginError(ImportError):
    """An entry point of ``d2lcompat.backends`` cannot be loaded or is not a `BackendSpec`.

    ``d2lcompat`` re-raises it as `d2lcompat.BackendError`; it lives here because
    this module must not import ``d2lcompat``.
    """


def discover() -> dict[str, BackendSpec]:
    """Every registered `BackendSpec`, by name, in preference order (`DEFAULT_ORDER` first).

    Loading an entry point imports only the adapter's top-level package, which
    holds the spec and no framework.

    Returns
    -------
    dict of str to BackendSpec

    Raises
    ------
    PluginError
        When a plugin fails to load or does not point to a `BackendSpec`.

    Examples
    --------
    >>> list(discover())[:1]
    ['torch']
    """
    specs: dict[str, BackendSpec] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = ep.load()
        except Exception as exc:  # report which plugin is broken, not a bare traceback
            raise PluginError(
                f"The d2lcompat backend plugin {ep.name!r} ({ep.value}) failed to load: {exc}. "
                "Reinstall or uninstall the package that provides it."
            ) from exc
        if not isinstance(spec, BackendSpec):
            raise PluginError(
                f"The entry point {ep.name!r} in group {ENTRY_POINT_GROUP!r} must point to a "
                f"d2lcompat_spec.BackendSpec, not {type(spec).__name__}."
            )
        specs.setdefault(spec.name, spec)
    rank = {n: i for i, n in enumerate(DEFAULT_ORDER)}
    return dict(sorted(specs.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


#: How to install a backend's framework, ``{extra}`` filled in: from a d2lcompat checkout,
#: in a virtual environment, with the versions this repository tests (there is no
#: published ``d2lcompat`` package; README.md "Install").
INSTALL_COMMAND = 'pip install ".[{extra}]" -c constraints.txt'


def install_hint(extra: str) -> str:
    """The one command every message of d2lcompat gives to install the extra ``extra``.

    Run it in a d2lcompat checkout, inside a virtual environment (README.md, "Install").

    Examples
    --------
    >>> install_hint("jax")
    'pip install ".[jax]" -c constraints.txt'
    """
    return INSTALL_COMMAND.format(extra=extra)


def is_installed(spec: BackendSpec) -> bool:
    """Whether the framework of ``spec`` can be imported, found without importing it.

    Examples
    --------
    >>> is_installed(BackendSpec("nope", "no_such_module_xyz", "x", "x", "x:X"))
    False
    """
    try:
        return importlib.util.find_spec(spec.module) is not None
    except (ImportError, ValueError):
        return False


def installed_version(spec: BackendSpec) -> str | None:
    """The installed version of the framework of ``spec`` (from package metadata), or None.

    Examples
    --------
    >>> installed_version(BackendSpec("nope", "no_such_module_xyz", "no-such-dist-xyz", "x", "x:X"))
    """
    for dist in (spec.distribution, *spec.alt_distributions):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
