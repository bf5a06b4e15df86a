"""RN — recurrent layers (chapters 9–10; API.md §19)."""

from __future__ import annotations
