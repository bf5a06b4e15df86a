"""Backend discovery and selection: chosen once, at the first ``import d2lcompat``.

Adapters are plugins found through the entry-point group ``d2lcompat.backends``;
the four shipped ones register exactly as a third-party adapter would. Only the
chosen adapter is imported, and with it exactly one framework.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from d2lcompat_spec import BackendSpec, PluginError, discover, install_hint
from d2lcompat_spec import installed_version as _version
from d2lcompat_spec import is_installed as _is_installed

from ._errors import BackendError

if TYPE_CHECKING:
    from ._backend import Backend

__all__ = ["BackendInfo", "active", "available_specs", "backend", "backends"]

ENV_BACKEND = "D2LCOMPAT_BACKEND"
ENV_CPU_DEVICES = "D2LCOMPAT_CPU_DEVICES"


@dataclass(frozen=True)
class BackendInfo:
    """One registered backend, as listed by `d2lcompat.backends()`.

    ``devices`` is filled only for the active backend: listing another backend's
    devices would import a second framework into this process.
    """

    name: str
    installed: bool
    version: str | None
    extra: str
    active: bool
    devices: list[str] | None = field(default=None)


def available_specs() -> dict[str, BackendSpec]:
    """Every registered `BackendSpec`, by name, in preference order (see `d2lcompat_spec`)."""
    try:
        return discover()
    except PluginError as exc:  # a d2lcompat error, as API §10 promises
        raise BackendError(str(exc)) from exc


def _choose(specs: dict[str, BackendSpec]) -> BackendSpec:
    installed = [n for n, s in specs.items() if _is_installed(s)]
    wanted = os.environ.get(ENV_BACKEND, "").strip().lower()
    hint = ", ".join(installed) or "none"
    if not wanted:
        if not installed:
            raise BackendError(
                "d2lcompat found no installed backend. Install one from the d2lcompat "
                f"checkout, e.g. {install_hint('torch')} (extras: "
                + ", ".join(f"[{s.extra}]" for s in specs.values())
                + ")."
            )
        return specs[installed[0]]
    if wanted not in specs:
        what = (
            f"set it to an installed one ({hint}) or unset it to use the first installed"
            if installed
            else f"unset it and install a backend, e.g. {install_hint('torch')}"
        )
        raise BackendError(
            f"{ENV_BACKEND}={wanted!r} is not a known backend. Known: {', '.join(specs)}; "
            f"installed: {hint}. To fix: {what}."
        )
    spec = specs[wanted]
    if wanted not in installed:
        raise BackendError(
            f"{ENV_BACKEND}={wanted!r} but {spec.module!r} is not installed. "
            f"Install it (from the d2lcompat checkout) with: {install_hint(spec.extra)}. "
            f"Installed backends: {hint}."
        )
    return spec


def _load(spec: BackendSpec, cpu_devices: int) -> Backend:
    from ._backend import Backend

    module_name, _, class_name = spec.adapter.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except Exception as exc:
        raise BackendError(
            f"The {spec.name!r} backend failed to import ({type(exc).__name__}: {exc}). "
            "Reinstall it (from the d2lcompat checkout) with: "
            f"{install_hint(spec.extra).replace('pip install', 'pip install --force-reinstall')}."
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendError(f"{spec.adapter} is not a d2lcompat.Backend subclass.")
    instance = cls()
    instance.configure(cpu_devices)
    from ._device import guard_ops  # imports this module: only once it is loaded

    guard_ops(instance)  # mixing devices raises DeviceError (a no-op with one device)
    return instance


def _cpu_devices_from_env() -> int:
    raw = os.environ.get(ENV_CPU_DEVICES, "").strip()
    if not raw:
        return 1
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise BackendError(f"{ENV_CPU_DEVICES}={raw!r} must be a positive integer.")
    return n


_ACTIVE: Backend | None = None
_SPECS: dict[str, BackendSpec] = {}


def _activate() -> Backend:
    global _ACTIVE, _SPECS
    if _ACTIVE is None:
        _SPECS = available_specs()
        spec = _choose(_SPECS)
        n = _cpu_devices_from_env()
        if n > 1:
            # Read by JAX and XLA at import time, so it must be set before the adapter loads.
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_force_host_platform_device_count" not in flags:
                os.environ["XLA_FLAGS"] = (
                    f"{flags} --xla_force_host_platform_device_count={n}".strip()
                )
        _ACTIVE = _load(spec, n)
    return _ACTIVE


def active() -> Backend:
    """The adapter instance in use (private API for the core)."""
    return _ACTIVE if _ACTIVE is not None else _activate()


def backend() -> str:
    """The name of the backend in use.

    Examples
    --------
    >>> import d2lcompat
    >>> d2lcompat.backend() in {"torch", "tensorflow", "paddle", "jax"}
    True
    """
    return active().name


def backends() -> list[BackendInfo]:
    """Every registered backend, whether it is installed, its version, and (for the active
    one) its devices.

    Examples
    --------
    >>> import d2lcompat
    >>> [b.name for b in d2lcompat.backends() if b.active] == [d2lcompat.backend()]
    True
    """
    from ._device import all_devices

    b = active()
    out = []
    for name, spec in _SPECS.items():
        is_active = name == b.name
        out.append(
            BackendInfo(
                name=name,
                installed=_is_installed(spec),
                version=b.version if is_active else _version(spec),
                extra=spec.extra,
                active=is_active,
                devices=[repr(d) for d in all_devices()] if is_active else None,
            )
        )
    return out

