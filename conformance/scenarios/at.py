"""AT — attention and the Transformer (chapter 11; API.md §19)."""

from __future__ import annotations
