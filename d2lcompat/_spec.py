"""What an adapter tells d2lcompat *before* it is imported (re-exported from `d2lcompat_spec`).

The definitions live in the top-level package ``d2lcompat_spec`` so that an
adapter's spec module, the conformance runner and ``d2lcompat.backends()`` can
read every spec without running ``d2lcompat/__init__.py`` (which chooses a backend
and imports its framework). ``d2lcompat.BackendSpec is d2lcompat_spec.BackendSpec``.
"""

from __future__ import annotations

from d2lcompat_spec import ENTRY_POINT_GROUP, BackendSpec

__all__ = ["ENTRY_POINT_GROUP", "BackendSpec"]
