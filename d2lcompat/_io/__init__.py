"""Saving and loading (API.md §7, §18), one small module per job:

* `d2lcompat._io.stformat` — the safetensors format: header validation, memory-mapped
  reads, deterministic writes;
* `d2lcompat._io.atomic` — atomic writes of a file or a folder, recognizable temporary
  files, removal of dead writers' leftovers;
* `d2lcompat._io.shards` — the Hugging Face sharded layout and its index;
* `d2lcompat._io.host` — tensors on the host, dtype narrowing (JAX without x64);
* `d2lcompat._io.native` — foreign files: what they look like, the framework's own
  checkpoints, name and layout mapping;
* `d2lcompat._io.source` — what a load reads, validated, streamed into parameters;
* `d2lcompat._io.api` — `save`, `load`, `save_parameters`, `load_parameters`,
  `convert`.

This package imports no framework.
"""

from __future__ import annotations

from .api import (
    convert,
    convert_cli,
    load,
    load_parameters,
    native_formats,
    save,
    save_parameters,
)
from .host import FORMAT_VERSION
from .native import _clean, _keras_names

__all__ = [
    "FORMAT_VERSION",
    "_clean",
    "_keras_names",
    "convert",
    "convert_cli",
    "load",
    "load_parameters",
    "native_formats",
    "save",
    "save_parameters",
]
