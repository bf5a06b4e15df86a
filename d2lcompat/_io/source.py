"""What a load reads (one file, the shards of an index, a native checkpoint), validated
before anything changes, then streamed one tensor at a time into the parameters."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _device
from .._errors import CheckpointError
from .._registry import active

if TYPE_CHECKING:
    from .._parameter import Parameter

from . import shards as _shards
from . import stformat as _stformat
from .host import (
    FORMAT_VERSION,
    META_FORMAT,
    META_STRUCTURE,
    META_VERSION,
    PathLike,
    _Entry,
    _held,
    _host_value,
    _storage_dtype,
)
from .native import _map_native, _not_readable, _read_head, _read_native, _rename
from .stformat import FormatError, Header, TensorInfo


# ------------------------------------------------------------------ what a load reads
@dataclass
class _Source:
    """The tensors a load reads: portable files (one, or the shards of an index), or
    a native checkpoint already read into memory. ``specs`` lists every tensor, in the
    order the writer meant, with its dtype and shape; `read` streams their values."""

    name: str
    layout: str  # "portable" or the native convention ("torch", "keras", "paddle")
    specs: dict[str, tuple[str, tuple[int, ...]]]
    metadata: dict[str, str]
    where: dict[str, tuple[Header, TensorInfo]] = field(default_factory=dict)
    entries: dict[str, _Entry] = field(default_factory=dict)

    def read(self, names: Iterable[str]) -> Iterator[tuple[str, np.ndarray]]:
        """``(name, stored values)`` for ``names``, one tensor at a time, file by file
        in file order. A value is a view into a memory map: use it (copy it into the
        framework) before asking for the next one."""
        wanted = list(names)
        if self.layout != "portable":
            for k in wanted:
                yield k, self.entries[k].array
            return
        by_file: dict[str, list[tuple[Header, TensorInfo]]] = {}
        for k in wanted:
            h, info = self.where[k]
            by_file.setdefault(h.path, []).append((h, info))
        for items in by_file.values():
            items.sort(key=lambda hi: hi[1].begin)
            try:
                mapped = _stformat.Mapped(items[0][0])
            except OSError as exc:
                raise CheckpointError(
                    f"Cannot read '{items[0][0].path}': {exc.strerror or exc}."
                ) from None
            except FormatError as exc:
                raise CheckpointError(f"Cannot load '{items[0][0].path}': {exc}. Load it again.") from None
            with mapped:
                for _, info in items:
                    arr = mapped.view(info)
                    yield info.name, arr
                    del arr
                    mapped.release(info)


def _open_portable(path: PathLike) -> _Source:
    """The portable source at ``path`` (a file, an index, a folder with an index).

    Raises FormatError when ``path`` is one file that is not safetensors (the caller
    may try the framework's own reader), CheckpointError for everything else."""
    name = os.fspath(path)
    target, sharded = _shards.locate(name)
    if sharded is None:
        try:
            header = _stformat.read_header(target)
        except OSError as exc:
            raise CheckpointError(
                f"Cannot read '{target}': {exc.strerror or exc}. Check the path."
            ) from None
        headers = {target: header}
        metadata = header.metadata
        order = list(header.tensors)
    else:
        files, metadata = sharded
        headers = {}
        problems: list[str] = []
        order = []
        for shard, names in files.items():
            try:
                headers[shard] = _stformat.read_header(shard)
            except OSError as exc:
                raise CheckpointError(
                    f"Cannot read '{shard}' (a shard of '{name}'): {exc.strerror or exc}."
                ) from None
            except FormatError as exc:
                raise _not_readable(shard, _read_head(shard), exc) from None
            problems += _shards.check_shard(target, shard, names, list(headers[shard].tensors))
            order += names
        if problems:
            raise CheckpointError(
                f"Cannot load '{name}': its index and its shards disagree; nothing was "
                "loaded.\n  - " + "\n  - ".join(problems)
            )
    where = {k: (h, info) for h in headers.values() for k, info in h.tensors.items()}
    try:
        keys = _structure(metadata, where).get("keys")
    except ValueError:
        keys = None
    if keys is not None:
        order = list(keys)
    fmt = metadata.get(META_FORMAT)
    if fmt is not None:
        if not fmt.isdigit():
            raise _not_readable(name, None, FormatError(f"its metadata {META_FORMAT}={fmt!r} is not a version number"))
        if int(fmt) > FORMAT_VERSION:
            raise CheckpointError(
                f"Cannot load '{name}': it was written in d2lcompat format {fmt} (by d2lcompat "
                f"{metadata.get(META_VERSION, '?')}); this d2lcompat reads format "
                f"{FORMAT_VERSION} and older. Upgrade d2lcompat. Nothing was loaded."
            )
    specs = {k: (where[k][1].dtype, where[k][1].shape) for k in order}
    return _Source(name, "portable", specs, dict(metadata), where=where)


def _open(path: PathLike, trusted: bool, mapping: Mapping[str, str] | None) -> _Source:
    """A portable source, else the running framework's own checkpoint, under portable
    names and layouts."""
    try:
        src = _open_portable(path)
    except FormatError as exc:
        portable_error = exc
    else:
        if mapping:
            named = {k: (k, e) for k, e in _read_all(src).items()}
            src = _source_of(src.name, "portable", _rename(named, mapping, path), src.metadata)
        return src
    head = _read_head(path)
    native = _read_native(path, head, trusted)
    if native is None:
        raise _not_readable(path, head, portable_error)
    layout, raw = native
    return _source_of(os.fspath(path), layout, _map_native(layout, raw, mapping or {}, path), {})


def _read_all(src: _Source) -> dict[str, _Entry]:
    """Every tensor of ``src`` in memory (own copies), in ``src.specs`` order."""
    if src.entries:
        return dict(src.entries)
    got = {k: _Entry(src.specs[k][0], np.array(v)) for k, v in src.read(src.specs)}
    return {k: got[k] for k in src.specs}


def _source_of(name: str, layout: str, entries: dict[str, _Entry], metadata: dict[str, str]) -> _Source:
    specs = {k: (e.dtype, e.shape) for k, e in entries.items()}
    return _Source(name, layout, specs, metadata, entries=entries)




def _structure(metadata: Mapping[str, str], entries: Mapping[str, Any]) -> dict[str, Any]:
    raw = metadata.get(META_STRUCTURE)
    if raw is None:
        return {"type": "dict", "keys": list(entries)}
    try:
        s = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError(f"its metadata {META_STRUCTURE} is not valid JSON") from None
    kind = s.get("type") if isinstance(s, dict) else None
    length = s.get("length") if isinstance(s, dict) else None
    if kind in ("list", "tuple") and isinstance(length, int) and length > len(entries):
        # Checked before any list is built: a 1 KB header must not make us allocate
        # 10**10 names (the length can never exceed the tensors the file holds).
        raise ValueError(
            f"its structure is a {kind} of {length} tensors but the file holds {len(entries)}"
        )
    if kind == "tensor":
        names = ["tensor"]
    elif kind in ("list", "tuple") and isinstance(length, int) and not isinstance(length, bool) and length >= 0:
        names = [str(i) for i in range(length)]
    elif kind == "dict" and isinstance(s.get("keys"), list) and all(
        isinstance(k, str) for k in s["keys"]
    ):
        names = s["keys"]
    else:
        raise ValueError(f"its metadata {META_STRUCTURE}={raw[:200]!r} is not a known structure")
    missing = [n for n in names if n not in entries]
    if missing or len(set(names)) != len(entries):
        raise ValueError(
            f"its structure names tensors {names[:10]} but the file holds {list(entries)[:10]}"
        )
    return dict(s)


def _needs_check(dtype: str) -> bool:
    """Whether a stored tensor's values must be checked before anything changes."""
    return dtype == "bool" or _held(dtype) != dtype


def _shape_fits(p: Parameter, shape: tuple[int, ...]) -> bool:
    if p._known:
        return p.shape == shape
    return len(shape) == len(p.shape) and all(s in (0, f) for s, f in zip(p.shape, shape))


def _apply(src: _Source, plan: Mapping[str, Parameter], dev: tuple[str, int] | None) -> None:
    """Stream every planned tensor into its parameter: one copy from the memory map
    into the framework's own memory (host to device once), one tensor at a time."""
    from .._parameter import Constant

    b = active()
    direct = src.layout == "portable" and hasattr(os, "preadv")
    done = _fill_direct(src, plan, dev) if direct else set()
    for k, stored in src.read(k for k in plan if k not in done):
        p = plan[k]
        dtype = src.specs[k][0]
        host = _host_value(dtype, stored)
        held = _held(dtype)
        if p._var is None or (dev is not None and b.device_of(p._var) != dev):
            target = dev
            if target is None:
                target = p._deferred[1] if p._deferred else None
            if target is None:
                target = _device.resolve(None)
            var = b.new_variable(host, held, target, p._grad_req != "null")
            if not p._known:
                p._shape = tuple(int(s) for s in stored.shape)
            p._var = var
            p._deferred = None
            p._grad = None
        else:
            p._var = b.assign_host(p._var, host, held)
        if isinstance(p, Constant) and dtype != "bfloat16":
            p._value = np.array(host)  # force_reinit restores the loaded value
        del host, stored


class _Skip(Exception):
    """The framework's buffer does not fit a direct read: copy the usual way."""


def _fill_direct(src: _Source, plan: Mapping[str, Parameter], dev: tuple[str, int] | None) -> set[str]:
    """Read tensors straight from the file into parameters whose host memory the
    framework lends (`Backend.fill_variable`: CPU tensors under torch): no memory map,
    no copy in between. Returns the names done; the others go through `_apply`."""
    from .._parameter import Constant

    b = active()
    done: set[str] = set()
    fds: dict[str, int] = {}
    try:
        for k, p in plan.items():
            dtype = src.specs[k][0]
            if p._var is None or dtype == "bfloat16" or _held(dtype) != dtype:
                continue
            if dev is not None and b.device_of(p._var) != dev:
                continue
            header, info = src.where[k]

            def fill(buf: np.ndarray, header: Header = header, info: TensorInfo = info) -> None:
                want = _storage_dtype(info.dtype)
                if (buf.dtype != want or tuple(buf.shape) != info.shape
                        or not buf.flags.c_contiguous or not buf.flags.writeable):
                    raise _Skip
                if header.path not in fds:
                    fds[header.path] = _stformat.open_checked(header)
                _stformat.read_into(fds[header.path], info, buf)

            try:
                obj = b.fill_variable(p._var, fill)
            except _Skip:
                continue
            except (OSError, FormatError) as exc:
                raise CheckpointError(
                    f"Cannot load '{src.name}': {getattr(exc, 'strerror', None) or exc} while "
                    "reading it; parameters read so far hold the file's values, the others "
                    "their old ones. Check the file and load it again."
                ) from None
            if obj is None:
                continue
            p._var = obj
            if isinstance(p, Constant):
                p._value = np.array(b.to_numpy(obj))
            done.add(k)
    finally:
        for fd in fds.values():
            os.close(fd)
    return done


