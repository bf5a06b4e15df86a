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
    headers: list[Header] = field(default_factory=list)

    def close(self) -> None:
        """Close the files the headers were read from."""
        for h in self.headers:
            h.close()

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def unchanged(self) -> list[str]:
        """The files rewritten in place since their headers were read (their size or
        modification time changed); empty when none was."""
        return [h.path for h in self.headers if not _stformat.unchanged(h)]

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
                raise CheckpointError(
                    f"Cannot load '{items[0][0].path}': {exc}; nothing was loaded. Load it again."
                ) from None
            with mapped:
                for _, info in items:
                    try:
                        arr = mapped.view(info)
                    except (OSError, FormatError) as exc:
                        raise CheckpointError(
                            f"Cannot load '{info.name}' from '{items[0][0].path}': "
                            f"{getattr(exc, 'strerror', None) or exc}; nothing was loaded. "
                            "Check the file and load it again."
                        ) from None
                    yield info.name, arr
                    del arr
                    mapped.release(info)


class _Replaced(Exception):
    """The folder was swapped by a concurrent save while it was being opened."""


#: How many times a load opens a checkpoint folder that concurrent saves keep replacing.
OPEN_TRIES = 5
#: At most this many shards stay open from validation to reading (a process may open
#: about 1024 files); the others are opened again when read, checked to be the same
#: file (a failure then rolls back).
MAX_PINNED = 256


def _open_portable(path: PathLike, trusted: bool = False) -> _Source:
    """The portable source at ``path`` (a file, an index, a folder with an index).

    Every file is opened once, here, and its header read and checked; the data is
    read later through the same descriptors, so a concurrent save (which replaces
    files or the whole folder by a rename) cannot change what this load reads. The
    shards are opened through a descriptor of their folder: all of them come from the
    same save (a folder swapped meanwhile is opened again, up to `OPEN_TRIES` times).

    Raises FormatError when ``path`` is one file that is not safetensors (the caller
    may try the framework's own reader), CheckpointError for everything else."""
    name = os.fspath(path)
    for _ in range(OPEN_TRIES):
        try:
            return _open_portable_once(name, trusted)
        except _Replaced:
            continue
    raise CheckpointError(
        f"Cannot load '{name}': another process replaced it {OPEN_TRIES} times while it "
        "was being opened (a save in progress?). Nothing was loaded; load it again when "
        "the saves are done."
    )


def _folder_fd(folder: str) -> int | None:
    if os.open not in os.supports_dir_fd or not hasattr(os, "O_DIRECTORY"):
        return None  # pragma: no cover - Windows: shards are opened by path
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise CheckpointError(f"Cannot read '{folder}': {exc.strerror or exc}. Check the path.") from None


def _same_folder(folder: str, dir_fd: int | None) -> bool:
    if dir_fd is None:
        return True
    try:
        st = os.stat(folder)
    except OSError:
        return False
    held = os.fstat(dir_fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _open_portable_once(name: str, trusted: bool) -> _Source:
    target, is_index = _shards.locate(name, trusted)
    headers: dict[str, Header] = {}
    try:
        if not is_index:
            try:
                headers[target] = _stformat.open_header(target)
            except OSError as exc:
                raise CheckpointError(
                    f"Cannot read '{target}': {exc.strerror or exc}. Check the path."
                ) from None
            metadata = headers[target].metadata
            order = list(headers[target].tensors)
        else:
            folder = os.path.dirname(os.path.abspath(target))
            dir_fd = _folder_fd(folder)
            try:
                try:
                    files, metadata = _shards.read_index(target, trusted, dir_fd)
                except CheckpointError:
                    if not _same_folder(folder, dir_fd):
                        raise _Replaced from None  # a save swapped the folder: open it again
                    raise
                problems: list[str] = []
                order = []
                for shard, names in files.items():
                    try:
                        if len(headers) < MAX_PINNED:
                            headers[shard] = _stformat.open_header(shard, dir_fd)
                        else:  # opened again by path when read (rollback still holds)
                            headers[shard] = _stformat.read_header(shard)
                    except OSError as exc:
                        if not _same_folder(folder, dir_fd):
                            raise _Replaced from None
                        raise CheckpointError(
                            f"Cannot read '{shard}' (a shard of '{name}'): {exc.strerror or exc}."
                        ) from None
                    except FormatError as exc:
                        # Quote a file's first bytes only if it is the checkpoint's own.
                        inside = _shards.outside(folder, shard) is None
                        raise _not_readable(shard, _read_head(shard) if inside else None, exc) from None
                    problems += _shards.check_shard(target, shard, names, list(headers[shard].tensors))
                    order += names
            finally:
                if dir_fd is not None:
                    os.close(dir_fd)
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
    except BaseException:
        for h in headers.values():
            h.close()
        raise
    return _Source(name, "portable", specs, dict(metadata), where=where, headers=list(headers.values()))


def _open(path: PathLike, trusted: bool, mapping: Mapping[str, str] | None) -> _Source:
    """A portable source, else the running framework's own checkpoint, under portable
    names and layouts. Close it (``with``) when done."""
    try:
        src = _open_portable(path, trusted)
    except FormatError as exc:
        portable_error = exc
    else:
        if mapping:
            with src:
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


#: A load keeps the old values of the parameters it overwrites in the framework's own
#: buffers, with no copy (`Backend.replace_host`), while they total at most this many
#: bytes and a quarter of the memory available; above that (checkpoints that may not
#: fit twice, API §18) it copies them to an undo file one tensor at a time, so its
#: peak extra memory stays about one tensor.
KEEP_OLD_BYTES = 512 << 20


def _available_bytes() -> int | None:
    """The memory the kernel says is available (Linux's ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _keeps_old(plan: Mapping[str, Parameter]) -> bool:
    """Whether this load may keep the old values it overwrites in memory (see
    `KEEP_OLD_BYTES`): the parameters it writes in place are small enough."""
    b = active()
    if not b.SUPPORTS_MUTABLE_VARIABLES:  # immutable arrays: the journal keeps them anyway
        return False
    total, seen = 0, set()
    for p in plan.values():
        if p._var is not None and id(p) not in seen:
            seen.add(id(p))
            total += _stformat.stored_nbytes(p.dtype, p.shape)
    limit = KEEP_OLD_BYTES
    available = _available_bytes()
    if available is not None:
        limit = min(limit, available // 4)
    return total <= limit


class _Journal:
    """What a load changed, so that a failure puts every parameter back as it was (an
    undo log, as a database keeps).

    Before a parameter changes, its state is recorded: the variable object, shape,
    deferred initializer, gradient (and a Constant's value). The old values of a
    variable written in place (mutable frameworks: torch, TF, Paddle) are kept one of
    two ways. While the load is small (`_keeps_old`: ``keep``), in the framework's own
    old buffer, which a fresh one replaces (`Backend.replace_host`): no copy at all.
    Otherwise (or where the adapter cannot), they are written to an unlinked temporary
    file (`tempfile.TemporaryFile`, in ``TMPDIR``), straight from the framework's host
    view of the variable: host memory stays at about one tensor, as the streaming load
    promises. Frameworks whose arrays are immutable (JAX) keep the old array itself: no
    copy either."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self._undo: list[tuple[Parameter, tuple[Any, ...], Any]] = []
        self._seen: set[int] = set()
        self._file: Any = None

    def record(self, p: Parameter, in_place: bool, kept: Any = None) -> None:
        """Record ``p`` before it changes; ``kept``: its old buffer, already replaced
        (`Backend.replace_host`'s undo), so nothing is copied."""
        if id(p) in self._seen:
            return
        self._seen.add(id(p))
        state = (p._var, p._shape, p._deferred, p._grad, getattr(p, "_value", None))
        saved: Any = None
        if kept is not None:
            saved = ("kept", kept)
        elif in_place and p._var is not None:
            import tempfile

            b = active()
            try:
                if self._file is None:
                    self._file = tempfile.TemporaryFile(prefix="d2lc-undo-")
                arr = np.ascontiguousarray(b.host_view(p._var))
                offset = self._file.tell()
                if arr.nbytes:
                    self._file.write(memoryview(arr.reshape(-1).view(np.uint8).data))
                    self._file.flush()
            except OSError as exc:
                raise CheckpointError(
                    f"Cannot keep the old values of '{p.name}' in a temporary file while "
                    f"loading ({exc.strerror or exc}; the folder is tempfile.gettempdir(), "
                    "set TMPDIR to another one); no parameter was changed."
                ) from None
            saved = ("file", (offset, arr.dtype, tuple(arr.shape)))
            del arr
        self._undo.append((p, state, saved))

    def roll_back(self) -> None:
        b = active()
        for p, (var, shape, deferred, grad, value), saved in reversed(self._undo):
            if saved is not None and saved[0] == "kept":
                var = b.restore_buffer(var, saved[1])
            elif saved is not None:
                offset, dtype, dims = saved[1]
                old = np.empty(dims, dtype)
                if old.nbytes:
                    self._file.seek(offset)
                    self._file.readinto(memoryview(old.reshape(-1).view(np.uint8).data))
                var = b.assign(var, b.from_numpy(old, b.dtype(var), b.device_of(var)))
                del old
            p._var, p._shape, p._deferred, p._grad = var, shape, deferred, grad
            if value is not None:
                p._value = value  # type: ignore[attr-defined]
        self._undo.clear()

    def close(self) -> None:
        self._undo.clear()  # the old buffers kept go with it
        if self._file is not None:
            self._file.close()
            self._file = None


def _apply(src: _Source, plan: Mapping[str, Parameter], dev: tuple[str, int] | None) -> None:
    """Stream every planned tensor into its parameter: one copy from the memory map
    into the framework's own memory (host to device once), one tensor at a time.

    All or nothing: if anything fails on the way (a read error, a file rewritten in
    place by another process, the framework out of memory), every parameter changed so
    far is put back (`_Journal`) before the error is raised."""
    journal = _Journal(keep=_keeps_old(plan))
    try:
        _apply_all(src, plan, dev, journal)
        changed = src.unchanged()
        if changed:
            raise CheckpointError(
                f"Cannot load '{src.name}': {', '.join(repr(c) for c in changed)} changed "
                "while it was being read (another process rewrote it in place); no "
                "parameter was changed. Load it again when the writer is done."
            )
    except BaseException:
        journal.roll_back()
        raise
    finally:
        journal.close()


def _apply_all(
    src: _Source, plan: Mapping[str, Parameter], dev: tuple[str, int] | None, journal: _Journal
) -> None:
    from .._parameter import Constant

    b = active()
    # Straight from the file into the parameters' own memory (`_fill_direct`) when their
    # old values go to the undo file; a load that keeps the old buffers instead copies
    # from the memory map into fresh ones (`Backend.replace_host`): a copy out of a
    # mapping runs at memcpy's speed, `preadv` into fresh pages was slower here (17
    # against 21 ms per 100 MB under torch).
    direct = src.layout == "portable" and hasattr(os, "preadv") and not journal.keep
    done = _fill_direct(src, plan, dev, journal) if direct else set()
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
            journal.record(p, in_place=False)
            if not p._known:
                p._shape = tuple(int(s) for s in stored.shape)
            p._var = var
            p._deferred = None
            p._grad = None
        else:
            replaced = b.replace_host(p._var, host, held) if journal.keep else None
            if replaced is not None:  # the old buffer kept as it is: nothing copied
                journal.record(p, in_place=False, kept=replaced[1])
                p._var = replaced[0]
            else:
                journal.record(p, in_place=b.SUPPORTS_MUTABLE_VARIABLES)
                p._var = b.assign_host(p._var, host, held)
        if isinstance(p, Constant) and dtype != "bfloat16":
            p._value = np.array(host)  # force_reinit restores the loaded value
        del host, stored


class _Skip(Exception):
    """The framework's buffer does not fit a direct read: copy the usual way."""


def _fill_direct(
    src: _Source, plan: Mapping[str, Parameter], dev: tuple[str, int] | None, journal: _Journal
) -> set[str]:
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

            def fill(buf: np.ndarray, header: Header = header, info: TensorInfo = info, p: Any = p) -> None:
                want = _storage_dtype(info.dtype)
                if (buf.dtype != want or tuple(buf.shape) != info.shape
                        or not buf.flags.c_contiguous or not buf.flags.writeable):
                    raise _Skip
                if header.path not in fds:
                    fds[header.path] = _stformat.open_checked(header)
                journal.record(p, in_place=True)
                _stformat.read_into(fds[header.path], info, buf)

            try:
                obj = b.fill_variable(p._var, fill)
            except _Skip:
                continue
            except (OSError, FormatError) as exc:
                raise CheckpointError(
                    f"Cannot load '{src.name}': {getattr(exc, 'strerror', None) or exc} while "
                    "reading it; no parameter was changed. Check the file and load it again."
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
