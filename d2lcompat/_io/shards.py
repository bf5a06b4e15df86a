"""Sharded checkpoints in the Hugging Face layout (API.md §18).

A folder holds ``model-00001-of-0000N.safetensors`` ... and
``model.safetensors.index.json``::

    {"metadata": {"total_size": <bytes of tensor data>, ...},
     "weight_map": {"<tensor name>": "model-00001-of-0000N.safetensors", ...}}

`plan` splits tensors greedily, in order, into shards of at most ``max_shard_size``
bytes (a larger tensor gets a shard of its own), as ``transformers`` does. `locate`
turns what the user passed (a file, an index, or a folder holding either) into the
list of files to read and checks that the index and its shards agree. This module
imports no framework.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import CheckpointError

__all__ = ["INDEX", "SINGLE", "locate", "outside", "owned", "parse_size", "plan", "read_index", "shard_name"]

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
_SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)\s*$", re.IGNORECASE)
_UNITS = {
    "": 1, "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
    "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
}


def parse_size(size: int | str) -> int:
    """Bytes from ``2000000``, ``"2GB"`` (10**9, as Hugging Face) or ``"2GiB"`` (2**30).

    Examples
    --------
    >>> parse_size("2GB"), parse_size("1MiB"), parse_size(512)
    (2000000000, 1048576, 512)
    """
    if isinstance(size, int) and not isinstance(size, bool):
        value = size
    else:
        m = _SIZE.match(str(size))
        unit = m.group(2).upper() if m else None
        if m is None or unit not in _UNITS:
            raise CheckpointError(
                f"max_shard_size={size!r} is not a size: pass bytes (an int) or a string "
                "such as '2GB' (10**9 bytes) or '500MiB' (2**20 bytes each)."
            )
        value = int(float(m.group(1)) * _UNITS[unit])
    if value <= 0:
        raise CheckpointError(f"max_shard_size={size!r} must be more than 0 bytes.")
    return value


def shard_name(k: int, n: int) -> str:
    """``model-0000k-of-0000n.safetensors`` (1-based)."""
    return f"model-{k:05d}-of-{n:05d}.safetensors"


def owned(name: str) -> bool:
    """Whether a file of a checkpoint folder belongs to the sharded set (the others are
    the user's and survive a save)."""
    return name in (INDEX, SINGLE) or _SHARD.match(name) is not None


def plan(sizes: Mapping[str, int], max_bytes: int) -> list[list[str]]:
    """Names grouped into shards, in order, each shard at most ``max_bytes`` of data
    unless one tensor alone is larger.

    Examples
    --------
    >>> plan({"a": 4, "b": 4, "c": 4}, 8)
    [['a', 'b'], ['c']]
    """
    shards: list[list[str]] = [[]]
    used = 0
    for name, n in sizes.items():
        if shards[-1] and used + n > max_bytes:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += n
    return shards if shards[0] else []


def index_bytes(weight_map: Mapping[str, str], total: int, metadata: Mapping[str, str]) -> bytes:
    doc = {"metadata": {"total_size": total, **metadata}, "weight_map": dict(weight_map)}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _bad_index(path: str, why: str) -> CheckpointError:
    return CheckpointError(
        f"Cannot load '{path}': {why}. A sharded checkpoint is a folder with "
        f"{INDEX} and the model-0000k-of-0000N.safetensors files it names; nothing was loaded."
    )


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives (Windows)
        return False


def outside(folder: str, path: str) -> str | None:
    """Where ``path`` really is (symlinks resolved) when that is outside ``folder``, else
    None. Inside means inside the folder itself, or, for a folder of the Hugging Face hub
    cache (``<repo>/snapshots/<revision>/``), inside the same repository's ``blobs/``
    (``x.safetensors -> ../../blobs/<hash>``), the one layout of links users need."""
    real = os.path.realpath(path)
    root = os.path.realpath(folder)
    if _within(real, root):
        return None
    snapshots = os.path.dirname(root)
    if os.path.basename(snapshots) == "snapshots":
        blobs = os.path.join(os.path.dirname(snapshots), "blobs")
        if os.path.isdir(blobs) and _within(real, blobs):
            return None
    return real


def _refuse_outside(what: str, folder: str, entries: Mapping[str, str], trusted: bool) -> None:
    """Refuse the ``{entry: path}`` that resolve outside ``folder`` unless ``trusted``."""
    if trusted:
        return
    bad = {e: real for e, p in entries.items() if (real := outside(folder, p)) is not None}
    if bad:
        listed = "; ".join(f"'{e}' points to '{real}'" for e, real in sorted(bad.items())[:10])
        raise CheckpointError(
            f"Cannot load '{what}': {len(bad)} file(s) of the checkpoint resolve outside its "
            f"folder '{folder}' (symbolic links?): {listed}. d2lcompat reads a checkpoint's "
            "files only inside its folder (or, for the Hugging Face hub cache, inside the same "
            "repository's blobs/), so that an unpacked archive cannot make a load read other "
            "files. If you trust where this checkpoint came from, pass trusted=True. Nothing "
            "was loaded."
        )


def _isfile(path: str, dir_fd: int | None) -> bool:
    try:
        st = os.stat(os.path.basename(path), dir_fd=dir_fd) if dir_fd is not None else os.stat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st.st_mode)


def read_index(
    path: str, trusted: bool = False, dir_fd: int | None = None
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """``({shard file path: [tensor names]}, string metadata)`` from an index file.

    Every shard must resolve inside the index's folder (see `outside`) unless
    ``trusted``. With ``dir_fd`` (the folder, opened), the index is read through it, so
    that a folder swapped by a concurrent save cannot mix two saves."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        if dir_fd is not None:
            fd = os.open(os.path.basename(path), os.O_RDONLY, dir_fd=dir_fd)
        else:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        with open(fd, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_INDEX:
                raise _bad_index(path, "the index is larger than 100 MB")
            raw = f.read()
    except OSError as exc:
        raise CheckpointError(f"Cannot read '{path}': {exc.strerror or exc}. Check the path.") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad_index(path, "the index is not valid JSON") from None
    wm = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(wm, dict) or not all(isinstance(v, str) for v in wm.values()):
        raise _bad_index(path, 'the index has no "weight_map" of tensor names to file names')
    files: dict[str, list[str]] = {}
    for name, file in wm.items():
        if not file or os.path.basename(file) != file or file in (".", "..") or os.path.isabs(file):
            raise _bad_index(path, f"'{name}' maps to '{file}', which is not a file name in the same folder")
        files.setdefault(os.path.join(folder, file), []).append(name)
    missing = [os.path.basename(f) for f in files if not _isfile(f, dir_fd)]
    if missing:
        raise _bad_index(path, f"{len(missing)} shard(s) are missing: {', '.join(sorted(missing))}")
    _refuse_outside(path, folder, {os.path.basename(f): f for f in files}, trusted)
    meta = doc.get("metadata")
    metadata = {str(k): v for k, v in meta.items() if isinstance(v, str)} if isinstance(meta, dict) else {}
    return dict(sorted(files.items())), metadata


MAX_INDEX = 100_000_000


def locate(path: str, trusted: bool = False) -> tuple[str, bool]:
    """What to read for ``path``: ``(file, False)`` for one file, ``(index, True)`` for
    an index or a folder holding one. A folder without an index but with
    ``model.safetensors`` is that file. A file found in a folder must resolve inside it
    (see `outside`) unless ``trusted``."""
    if os.path.isdir(path):
        for file, sharded in ((INDEX, True), (SINGLE, False)):
            found = os.path.join(path, file)
            if os.path.isfile(found):
                _refuse_outside(path, os.path.abspath(path), {file: found}, trusted)
                return found, sharded
        raise CheckpointError(
            f"Cannot load '{path}': it is a folder without {INDEX} or {SINGLE}. Pass the "
            "checkpoint file itself, or the folder save_parameters(..., max_shard_size=...) wrote."
        )
    return path, path.endswith(".index.json")


def check_shard(index: str, shard: str, expected: Sequence[str], found: Sequence[str]) -> list[str]:
    """The disagreements between what the index says a shard holds and what it holds."""
    problems: list[str] = []
    exp, got = set(expected), set(found)
    name = os.path.basename(shard)
    for k in sorted(exp - got):
        problems.append(f"the index puts '{k}' in {name}, which does not hold it")
    for k in sorted(got - exp):
        problems.append(f"{name} holds '{k}', which the index does not map to it")
    return problems


def describe(index: str, files: Mapping[str, Any]) -> str:
    return f"{os.path.basename(index)} ({len(files)} shards)"
