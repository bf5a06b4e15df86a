"""GL06–GL07 — Gluon fidelity of hybridized blocks and traced forwards (API.md §3, §13)."""

from __future__ import annotations
