"""TX — text data (chapter 9; API.md §19)."""

from __future__ import annotations
