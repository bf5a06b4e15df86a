"""What an adapter tells d2lcompat *before* it is imported.

An adapter registers one `BackendSpec` under the entry-point group
``d2lcompat.backends``. Reading the spec never imports the framework, so
``d2lcompat.backends()`` can list every backend without loading any of them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ENTRY_POINT_GROUP", "BackendSpec"]

ENTRY_POINT_GROUP = "d2lcompat.backends"


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
