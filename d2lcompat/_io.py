"""Saving and loading: one safe, atomic, portable file format (API.md §7, §18).

Where is the file format decided? Here, and in the small modules beside it:

* **safetensors** (`d2lcompat._stformat`: tensors and text metadata, never code,
  never pickle), tensors named by the structural names of `Block.collect_params`
  (``0.weight``), in the canonical layouts of the core (`nn.Dense` weight
  ``(out, in)``), with their dtypes unchanged;
* a metadata block: ``d2lcompat.format`` (the format version), ``d2lcompat.version``,
  ``d2lcompat.backend`` (the backend that wrote it), ``d2lcompat.kind``
  (``parameters`` or ``object``) and ``d2lcompat.structure``;
* atomic writes (`d2lcompat._atomic`: a recognizable, locked temporary file in the
  same folder, fsync, ``os.replace``, fsync of the folder; stale temporary files of
  dead writers are removed by the next save);
* sharded checkpoints in the Hugging Face layout (`d2lcompat._shards`), atomic as a
  whole;
* loads that validate every header, name, shape and dtype before any parameter
  changes, then stream one tensor at a time from a memory map into the parameters;
* native checkpoints (a torch ``state_dict``, a Paddle ``.pdparams``, a Keras
  ``.weights.h5``): the adapter only *reads* its framework's file
  (`Backend.read_native_checkpoint`); names and layouts are mapped here.

Tensors cross into and out of the framework only through the adapter
(``host_view``, ``from_numpy``, ``new_variable``, ``assign_host``); this module
imports no framework.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _atomic, _device, _shards, _stformat
from ._errors import CheckpointError, D2LCompatError
from ._registry import active
from ._stformat import FormatError, Header, TensorInfo

if TYPE_CHECKING:
    from ._parameter import Parameter
    from .nn._block import Block

__all__ = [
    "FORMAT_VERSION",
    "convert",
    "convert_cli",
    "load",
    "load_parameters",
    "native_formats",
    "save",
    "save_parameters",
]

#: The version of the file layout written by this module (``d2lcompat.format``).
FORMAT_VERSION = 1

META_FORMAT = "d2lcompat.format"
META_VERSION = "d2lcompat.version"
META_BACKEND = "d2lcompat.backend"
META_KIND = "d2lcompat.kind"
META_STRUCTURE = "d2lcompat.structure"
META_SOURCE = "d2lcompat.source"

PathLike = str | os.PathLike[str]

_CODES = _stformat.CODES
_storage_dtype = _stformat.storage_dtype


# ------------------------------------------------------------------ host values
@dataclass(frozen=True)
class _Entry:
    """One tensor on the host: a little-endian NumPy array; bfloat16 is held as its
    uint16 bit patterns, so that no NumPy bfloat16 type (ml_dtypes) is needed."""

    dtype: str
    array: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    def describe(self) -> str:
        return f"shape {self.shape}, {self.dtype}"


def _entry_from_numpy(arr: np.ndarray, what: str) -> _Entry:
    from ._dtypes import canonical

    if arr.dtype.name == "bfloat16":  # an ml_dtypes array: keep the bits
        return _Entry("bfloat16", np.asarray(arr, order="C").view(np.uint16).astype("<u2"))
    try:
        dtype = canonical(arr.dtype)
    except D2LCompatError:
        raise CheckpointError(
            f"Cannot save {what}: its dtype {arr.dtype} is not one d2lcompat stores "
            f"({', '.join(_CODES.values())}). Cast it first (ops.cast(x, 'float32'))."
        ) from None
    return _Entry(dtype, np.asarray(arr, dtype=_storage_dtype(dtype), order="C"))


def _entry_from_native(x: Any, what: str) -> _Entry:
    """A native tensor (or a NumPy array) on the host, dtype unchanged; no copy where
    the framework can lend its host memory (`Backend.host_view`)."""
    b = active()
    if isinstance(x, (np.ndarray, np.generic)):
        return _entry_from_numpy(np.asarray(x), what)
    if not b.is_tensor(x):
        raise CheckpointError(
            f"Cannot save {what}: expected a {b.name} tensor or a NumPy array, received "
            f"{type(x).__name__}. Convert it with d2lcompat.ops.tensor(...) first."
        )
    dtype = b.dtype(x)
    if dtype == "bfloat16":
        # float32 holds every bfloat16 exactly; its top 16 bits are the bfloat16 bits.
        f32 = np.asarray(b.to_numpy(b.cast(x, "float32")), dtype="<f4", order="C")
        return _Entry("bfloat16", (f32.view("<u4") >> 16).astype("<u2"))
    return _Entry(dtype, np.asarray(b.host_view(x), dtype=_storage_dtype(dtype), order="C"))


def _held(dtype: str) -> str:
    """The dtype the running backend holds a ``dtype`` value in (int64 -> int32 on a
    backend without 64-bit types: JAX with ``jax_enable_x64`` off)."""
    from ._dtypes import stored_as

    return stored_as(dtype, active().SUPPORTED_DTYPES)


def _host_value(dtype: str, arr: np.ndarray) -> np.ndarray:
    """What the adapter's ``from_numpy``/``new_variable``/``assign_host`` get (with
    ``dtype=_held(dtype)``): bfloat16 goes as float32, which converts to bfloat16
    exactly; a narrowed dtype is cast here (its range was checked, `_value_problem`)."""
    if dtype == "bfloat16":
        return (arr.astype("<u4") << 16).view("<f4")
    held = _held(dtype)
    if held != dtype:
        return arr.astype(np.dtype(held))
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


def _value_problem(name: str, dtype: str, arr: np.ndarray) -> str | None:
    """What is wrong with the values of a stored tensor, or None: a bool that holds
    other bytes than 0 and 1, a value that does not fit the narrower dtype the
    backend holds it in."""
    if dtype == "bool" and arr.size and arr.view(np.uint8).max() > 1:
        return f"'{name}' is bool but holds bytes other than 0 and 1"
    held = _held(dtype)
    if held == dtype or not arr.size:
        return None
    if np.dtype(held).kind == "i":
        info = np.iinfo(np.dtype(held))
        lo, hi = int(arr.min()), int(arr.max())
        bad: float = lo if lo < info.min else hi if hi > info.max else 0
        ok = info.min <= lo and hi <= info.max
    else:
        finite = arr[np.isfinite(arr)]
        big = float(np.abs(finite).max()) if finite.size else 0.0
        ok = big <= float(np.finfo(np.dtype(held)).max)
        bad = big
    if ok:
        return None
    b = active()
    return (
        f"'{name}' is {dtype} and holds {bad!r}, which does not fit the {held} the "
        f"{b.name} backend holds {dtype} values in while its 64-bit types are off; turn "
        'them on first (under jax: jax.config.update("jax_enable_x64", True))'
    )


def _to_native(dtype: str, arr: np.ndarray, device: tuple[str, int] | None) -> Any:
    return active().from_numpy(_host_value(dtype, arr), _held(dtype), device)


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
            raise _not_readable(name, b"", FormatError(f"its metadata {META_FORMAT}={fmt!r} is not a version number"))
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


# ------------------------------------------------------------------ messages
# What a file that is not safetensors looks like, and which native format reads it.
_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "zip": ("a zip archive: a PyTorch .pt/.pth checkpoint, or a NumPy .npz", (".pt", ".pth")),
    "hdf5": ("an HDF5 file: a Keras .weights.h5 checkpoint", (".weights.h5", ".h5")),
    "npy": ("a NumPy .npy file", ()),
    "pickle": (
        "a Python pickle: a legacy PyTorch .pt/.pth file or a Paddle .pdparams checkpoint",
        (".pt", ".pth", ".pdparams"),
    ),
}
# Which backend converts which native file (data for the hints; no branch on the backend).
_CONVERTERS = (
    ((".pt", ".pth"), "torch", ""),
    ((".pdparams",), "paddle", "--trusted "),
    ((".weights.h5", ".h5"), "tensorflow", ""),
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _sniff(data: bytes) -> str | None:
    """The kind of a non-safetensors file from its first bytes (a key of `_KINDS`,
    ``"text"``, ``"empty"``) or None."""
    if not data:
        return "empty"
    if data.startswith(b"PK\x03\x04"):
        return "zip"
    if data.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if data.startswith(b"\x93NUMPY"):
        return "npy"
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return "pickle"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(c.isprintable() or c in "\t\r\n" for c in text):
        return "text"
    return None


def _clean(text: str, limit: int = 300) -> str:
    """Framework text fit for our message: no ANSI codes, one line, cut at a word."""
    text = " ".join(_ANSI.sub("", text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + " …"


def _read_head(path: PathLike) -> bytes:
    """The first bytes of ``path`` (enough to tell what kind of file it is)."""
    try:
        with open(path, "rb") as f:
            return f.read(64)
    except OSError as exc:
        raise CheckpointError(
            f"Cannot read '{os.fspath(path)}': {exc.strerror or exc}. Check the path."
        ) from None


def _readers(kind: str | None) -> str:
    """Which backend (and `convert` flag) reads a file of this kind."""
    suffixes = _KINDS.get(kind or "", ("", ()))[1]
    ways = [
        f"`D2LCOMPAT_BACKEND={backend} d2lcompat convert {flag}FILE out.safetensors`"
        for sfx, backend, flag in _CONVERTERS
        if set(sfx) & set(suffixes)
    ]
    if not ways:
        return ""
    return " Convert it to the portable file with " + " or ".join(ways) + "."


def _not_readable(path: PathLike, data: bytes, reason: FormatError) -> CheckpointError:
    """The message for a file that is not a readable checkpoint: the same under every
    backend (what the file looks like, who reads it)."""
    name = os.fspath(path)
    kind = _sniff(data) if not reason.truncated else None
    if kind == "text":
        snippet = " ".join(data.decode("utf-8", "replace").split())[:40]
        what = f" It looks like a text file (it begins {snippet!r}), not a checkpoint."
    elif kind == "empty":
        what = " It is an empty file."
    elif kind is not None:
        what = f" It looks like {_KINDS[kind][0]}.{_readers(kind)}"
    else:
        what = ""
    crash = (
        " It looks like a safetensors file that was cut short (a copy or a save that did "
        "not finish): save or copy it again." if reason.truncated else ""
    )
    return CheckpointError(
        f"Cannot load '{name}': it is not a valid safetensors file ({reason}).{what}{crash} "
        "d2lcompat reads safetensors files (save_parameters()/save() of any backend, "
        "Hugging Face shards) and, under the backend of their framework, PyTorch .pt/.pth, "
        "Paddle .pdparams and Keras .weights.h5 checkpoints. Nothing was loaded."
    )


def _read_native(
    path: PathLike, data: bytes, trusted: bool
) -> tuple[str, dict[str, _Entry]] | None:
    """The running framework's own checkpoint at ``path``, when the file is of a kind
    that framework writes; None otherwise (the caller says what the file is)."""
    b = active()
    kind = _sniff(data)
    ours = set(b.NATIVE_CHECKPOINT_FORMATS)
    if not ours or not (ours & set(_KINDS.get(kind or "", ("", ()))[1])):
        return None
    name = os.fspath(path)
    if b.NATIVE_CHECKPOINT_NEEDS_TRUST and not trusted:
        raise CheckpointError(
            f"'{name}' is not a safetensors file and may be a {b.name} checkpoint "
            f"({', '.join(b.NATIVE_CHECKPOINT_FORMATS)}), which is a pickle: reading it "
            "can run arbitrary code, so d2lcompat never reads it by default. If you "
            "trust where it came from, pass trusted=True (or `d2lcompat convert "
            "--trusted`); nothing was loaded."
        )
    try:
        result = b.read_native_checkpoint(name, trusted)
    except CheckpointError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the framework's own reader failed
        raise CheckpointError(
            f"Cannot load '{name}': it looks like {_KINDS[kind or 'pickle'][0]}, but the "
            f"{b.name} reader could not read it ({type(exc).__name__}: {_clean(str(exc))}). "
            "A PyTorch file must hold a state_dict (torch.save(model.state_dict(), path)), "
            "not a whole model; a Paddle file must come from paddle.save(layer.state_dict())."
            f"{_readers(kind)} Nothing was loaded."
        ) from None
    if result is None:
        return None
    layout, raw = result
    entries: dict[str, _Entry] = {}
    problems: list[str] = []
    for k, v in raw.items():
        if not (b.is_tensor(v) or isinstance(v, (np.ndarray, np.generic))):
            problems.append(f"'{k}' is a {type(v).__name__}, not a tensor")
            continue
        try:
            entries[str(k)] = _entry_from_native(v, f"'{k}'")
        except CheckpointError as exc:
            problems.append(f"'{k}': {exc}")
    if problems:
        raise CheckpointError(
            f"Cannot load '{name}': it looks like {_KINDS[kind or 'pickle'][0]}, and the "
            f"{b.name} reader read it, but it is not a checkpoint of tensors: "
            + "; ".join(problems[:10]) + f".{_readers(kind)} Nothing was loaded."
        )
    # Own copies: a native tensor's host view must not outlive it.
    return layout, {k: _Entry(e.dtype, np.array(e.array)) for k, e in entries.items()}


# ---------------------------------------------------------------- name mapping
_SUFFIX = re.compile(r"^(.*?)(?:_(\d+))?$")


def _keras_names(paths: Iterable[str]) -> dict[str, str]:
    """Keras 3 ``.weights.h5`` paths -> structural names.

    Keras stores a layer's variables under ``<layer path>/vars/<i>``. A layer in a
    container list is named ``layers/<class>[_<k>]`` (``dense``, ``dense_1``, ...), one
    counter per class; its structural name is its position among the container's
    layers that hold variables. A layer stored under an attribute keeps that name.
    ``vars/0`` is ``weight`` (a Dense kernel), ``vars/1`` is ``bias``.
    """
    layer_paths = {}
    for p in paths:
        parts = p.strip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "vars":
            layer_paths[p] = (parts[:-2], parts[-1])
    members: dict[tuple[str, ...], set[str]] = {}
    for parts, _ in layer_paths.values():
        for i in range(len(parts) - 1):
            if parts[i] == "layers":
                members.setdefault(tuple(parts[: i + 1]), set()).add(parts[i + 1])

    def rank(name: str) -> tuple[int, str]:
        m = _SUFFIX.match(name)
        assert m is not None
        return (int(m.group(2) or 0), m.group(1))

    position = {c: {n: i for i, n in enumerate(sorted(ms, key=rank))} for c, ms in members.items()}
    out: dict[str, str] = {}
    for p, (parts, var) in layer_paths.items():
        names: list[str] = []
        i = 0
        while i < len(parts):
            if parts[i] == "layers" and i + 1 < len(parts):
                names.append(str(position[tuple(parts[: i + 1])][parts[i + 1]]))
                i += 2
            else:
                names.append(parts[i])
                i += 1
        local = {"0": "weight", "1": "bias"}.get(var, f"var{var}")
        out[p] = ".".join([*names, local])
    return out


def _transposed(layout: str, native_name: str, e: _Entry) -> bool:
    """Whether a native tensor is stored ``(in, out)`` where d2lcompat stores ``(out, in)``."""
    if len(e.shape) != 2:
        return False
    if layout == "keras":  # Dense kernels are (in, out)
        return native_name.strip("/").split("/")[-2:] == ["vars", "0"]
    if layout == "paddle":  # nn.Linear weights are (in, out)
        return native_name.endswith("weight")
    return False


def _rename(
    named: Mapping[str, tuple[str, _Entry]], mapping: Mapping[str, str], path: PathLike
) -> dict[str, _Entry]:
    """Apply an explicit mapping: an exact native name, or a prefix ending with ``.`` or
    ``/`` (``module.=`` drops a ``module.`` prefix). Unmapped names keep their default."""
    prefixes = sorted((k for k in mapping if k.endswith((".", "/"))), key=len, reverse=True)
    out: dict[str, _Entry] = {}
    sources: dict[str, str] = {}
    problems = []
    for native, (default, e) in named.items():
        if native in mapping:
            target = mapping[native]
        else:
            target = next(
                (mapping[p] + native[len(p) :] for p in prefixes if native.startswith(p)), default
            )
        if target in out:
            problems.append(f"'{native}' and '{sources[target]}' both map to '{target}'")
            continue
        out[target] = e
        sources[target] = native
    unused = [k for k in mapping if k not in named and not any(n.startswith(k) for n in named)]
    if unused:
        problems.append(
            "the mapping names tensors the file does not have: "
            + ", ".join(repr(u) for u in unused)
            + f" (the file has: {', '.join(repr(n) for n in list(named)[:20])})"
        )
    if problems:
        raise CheckpointError(
            f"Cannot map the names of '{os.fspath(path)}': " + "; ".join(problems)
            + ". Fix the mapping (NATIVE=PORTABLE, one per tensor)."
        )
    return out


def _map_native(
    layout: str, raw: Mapping[str, _Entry], mapping: Mapping[str, str], path: PathLike
) -> dict[str, _Entry]:
    defaults = _keras_names(raw) if layout == "keras" else {k: k for k in raw}
    named: dict[str, tuple[str, _Entry]] = {}
    for native, e in raw.items():
        if _transposed(layout, native, e):
            e = _Entry(e.dtype, np.asarray(e.array.T, order="C"))
        named[native] = (defaults.get(native, native), e)
    return _rename(named, mapping, path)


# -------------------------------------------------------------------- metadata
def _metadata(kind: str, names: Iterable[str], **extra: str) -> dict[str, str]:
    """The metadata block; the tensor order is kept as a dict structure (safetensors
    sorts its header), so `load` returns a parameters file in structural order."""
    from . import __version__

    meta = {
        META_FORMAT: str(FORMAT_VERSION),
        META_VERSION: __version__,
        META_BACKEND: active().name,
        META_KIND: kind,
        META_STRUCTURE: json.dumps({"type": "dict", "keys": list(names)}),
    }
    meta.update(extra)
    return meta


# ------------------------------------------------------------------ writing
def _write(path: PathLike, entries: Mapping[str, _Entry], metadata: dict[str, str]) -> None:
    """Write ``entries`` as one safetensors file, atomically: header, then every tensor
    straight from its host buffer into the locked temporary file (no copy of the whole
    file in memory), fsync, rename."""
    arrays = {k: (e.dtype, e.array) for k, e in entries.items()}
    _atomic.write_file(path, lambda fd: _stformat.write(fd, arrays, metadata))


def _write_sharded(
    folder: PathLike, tensors: Mapping[str, Callable[[], _Entry]],
    sizes: Mapping[str, int], max_bytes: int, metadata: Callable[[str, list[str]], dict[str, str]],
) -> None:
    """Write a sharded checkpoint folder, atomically as a whole; each tensor is brought
    to the host only while its shard is written."""
    groups = _shards.plan(sizes, max_bytes)
    n = len(groups)

    def write(tmp: str) -> None:
        weight_map: dict[str, str] = {}
        for k, names in enumerate(groups, start=1):
            file = _shards.shard_name(k, n)
            arrays = {name: (e.dtype, e.array) for name in names for e in [tensors[name]()]}
            meta = metadata("parameters", names)
            _write_new(os.path.join(tmp, file), functools.partial(_stformat.write, arrays=arrays, metadata=meta))
            del arrays
            weight_map.update(dict.fromkeys(names, file))
        index = _shards.index_bytes(weight_map, sum(sizes.values()), metadata("parameters", list(sizes)))
        _write_new(os.path.join(tmp, _shards.INDEX), lambda fd: _atomic.write_all(fd, memoryview(index)))

    _atomic.write_folder(folder, write, _shards.owned)


def _write_new(path: str, write: Callable[[int], Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        write(fd)
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------- save / load
def save(path: PathLike, obj: Any) -> None:
    """Save a tensor, a list/tuple of tensors or a ``dict[str, tensor]`` to ``path``.

    The file is safetensors (no pickle) with the structure in its metadata, written
    atomically; `load` returns the same structure on any backend.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced atomically if it exists).
    obj : tensor, list or tuple of tensors, or dict of str to tensor
        Native tensors of the running backend (NumPy arrays are accepted too).

    Raises
    ------
    CheckpointError
        ``obj`` is not one of these structures, or the file cannot be written.

    Examples
    --------
    >>> import d2lcompat, tempfile, os
    >>> from d2lcompat import ops
    >>> path = os.path.join(tempfile.mkdtemp(), "x.safetensors")
    >>> d2lcompat.save(path, {"x": ops.arange(4), "y": ops.zeros((2,))})
    >>> sorted(d2lcompat.load(path))
    ['x', 'y']
    """
    entries: dict[str, _Entry] = {}
    if isinstance(obj, Mapping):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise CheckpointError(
                f"save() expects a dict with str keys; received keys {bad[:5]!r}. "
                "Use str(key) for every key."
            )
        structure: dict[str, Any] = {"type": "dict", "keys": list(obj)}
        for k, v in obj.items():
            entries[k] = _entry_from_native(v, f"the value of {k!r}")
    elif isinstance(obj, (list, tuple)):
        structure = {"type": type(obj).__name__, "length": len(obj)}
        for i, v in enumerate(obj):
            entries[str(i)] = _entry_from_native(v, f"item {i}")
    else:
        b = active()
        if not (b.is_tensor(obj) or isinstance(obj, (np.ndarray, np.generic))):
            raise CheckpointError(
                f"save() expects a tensor, a list/tuple of tensors or a dict[str, tensor]; "
                f"received {type(obj).__name__}. To save a model, use "
                "net.save_parameters(path)."
            )
        structure = {"type": "tensor"}
        entries["tensor"] = _entry_from_native(obj, "the tensor")
    meta = _metadata("object", entries, **{META_STRUCTURE: json.dumps(structure)})
    _write(path, entries, meta)


def load(path: PathLike, device: Any = None) -> Any:
    """Load what `save` wrote: a tensor, a list, a tuple or a dict of native tensors.

    A safetensors file written by anything else (``save_parameters``, another
    library), or a sharded checkpoint (an index, or its folder), loads as a
    ``dict[str, tensor]`` in the order it was written.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    device : Device, str or None
        Where to put the tensors (default: the default device).

    Raises
    ------
    CheckpointError
        The file is missing, truncated, corrupt or not safetensors.

    Examples
    --------
    >>> import d2lcompat, tempfile, os
    >>> from d2lcompat import ops
    >>> path = os.path.join(tempfile.mkdtemp(), "x.safetensors")
    >>> d2lcompat.save(path, [ops.ones((2,)), ops.zeros((3,))])
    >>> [ops.shape(t) for t in d2lcompat.load(path)]
    [(2,), (3,)]
    """
    dev = _device.resolve(device)
    try:
        src = _open_portable(path)
        structure = _structure(src.metadata, src.specs)
    except FormatError as exc:
        raise _not_readable(path, _read_head(path), exc) from None
    except ValueError as exc:
        raise _not_readable(path, b"", FormatError(str(exc))) from None
    problems = [
        p for k, v in src.read(k for k, (d, _) in src.specs.items() if _needs_check(d))
        if (p := _value_problem(k, src.specs[k][0], v)) is not None
    ]
    if problems:
        raise CheckpointError(f"Cannot load '{src.name}': " + "; ".join(problems) + ". Nothing was loaded.")
    values = {k: _to_native(src.specs[k][0], v, dev) for k, v in src.read(src.specs)}
    kind = structure["type"]
    if kind == "tensor":
        return values["tensor"]
    if kind in ("list", "tuple"):
        items = [values[str(i)] for i in range(structure["length"])]
        return items if kind == "list" else tuple(items)
    return {k: values[k] for k in structure["keys"]}


def _needs_check(dtype: str) -> bool:
    """Whether a stored tensor's values must be checked before anything changes."""
    return dtype == "bool" or _held(dtype) != dtype


def _structure(metadata: Mapping[str, str], entries: Mapping[str, Any]) -> dict[str, Any]:
    raw = metadata.get(META_STRUCTURE)
    if raw is None:
        return {"type": "dict", "keys": list(entries)}
    try:
        s = json.loads(raw)
    except ValueError:
        raise ValueError(f"its metadata {META_STRUCTURE} is not valid JSON") from None
    kind = s.get("type") if isinstance(s, dict) else None
    if kind == "tensor":
        names = ["tensor"]
    elif kind in ("list", "tuple") and isinstance(s.get("length"), int) and s["length"] >= 0:
        names = [str(i) for i in range(s["length"])]
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


def save_parameters(block: Block, path: PathLike, max_shard_size: int | str | None = None) -> None:
    """Save every parameter of ``block`` (constants included) under its structural name.

    Parameters
    ----------
    block : Block
        The network; every parameter must be initialized.
    path : str or os.PathLike
        The file to write (replaced atomically if it exists); with ``max_shard_size``,
        the folder to write the shards and their index into (created, or replaced
        atomically as a whole; other files in it are kept).
    max_shard_size : int or str, optional
        Write the Hugging Face sharded layout (``model-00001-of-0000N.safetensors``
        and ``model.safetensors.index.json``), at most this many bytes of tensor data
        per shard: an int, or ``"2GB"`` (10**9 bytes each) / ``"2GiB"`` (2**30).

    Raises
    ------
    CheckpointError
        A parameter has no values yet, or the file cannot be written.

    Examples
    --------
    >>> import d2lcompat, tempfile, os
    >>> from d2lcompat import nn
    >>> net = nn.Dense(2, in_units=3); net.initialize()
    >>> d2lcompat._io.save_parameters(net, os.path.join(tempfile.mkdtemp(), "net.safetensors"))
    """
    params = block.collect_params()
    missing = [
        f"'{name}' (shape {p.shape})" for name, p in params.items() if p._var is None
    ]
    if missing:
        raise CheckpointError(
            f"Cannot save the parameters of {block._describe()} to '{os.fspath(path)}': "
            f"{len(missing)} parameter(s) have no values yet: {', '.join(missing)}. Call "
            "net.initialize() and run one forward pass (net(X)) first."
        )
    if max_shard_size is None:
        entries = {name: _entry_from_native(p._var, f"parameter '{name}'") for name, p in params.items()}
        _write(path, entries, _metadata("parameters", entries))
        return
    max_bytes = _shards.parse_size(max_shard_size)
    b = active()
    sizes = {
        name: _storage_dtype(b.dtype(p._var)).itemsize * int(np.prod(b.shape(p._var), dtype=np.int64))
        for name, p in params.items()
    }
    getters = {
        name: (lambda p=p, name=name: _entry_from_native(p._var, f"parameter '{name}'"))
        for name, p in params.items()
    }
    _write_sharded(path, getters, sizes, max_bytes, _metadata)


def _shape_fits(p: Parameter, shape: tuple[int, ...]) -> bool:
    if p._known:
        return p.shape == shape
    return len(shape) == len(p.shape) and all(s in (0, f) for s, f in zip(p.shape, shape))


def load_parameters(
    block: Block,
    path: PathLike,
    device: Any = None,
    allow_missing: bool = False,
    ignore_extra: bool = False,
    trusted: bool = False,
) -> None:
    """Load parameters saved by `save_parameters` (on any backend), or a native
    checkpoint of the running framework, into ``block`` — all or nothing.

    Every header, name, shape and dtype is checked before any parameter changes; on
    any problem a `CheckpointError` lists all of them and every parameter is left as
    it was. Then the tensors stream one at a time from a memory map of the file into
    the parameters (peak extra memory: about one tensor). A parameter still waiting
    for deferred initialization takes its shape from the file.

    Parameters
    ----------
    block : Block
        The network to fill.
    path : str or os.PathLike
        A safetensors file; a sharded checkpoint (its ``.index.json``, or the folder
        holding it); or a native checkpoint (torch ``.pt``/``.pth``, Paddle
        ``.pdparams`` with ``trusted=True``, Keras ``.weights.h5``) under its backend.
    device : Device, str or None
        Put every loaded parameter there (default: where each already lives, else the
        default device).
    allow_missing : bool
        Parameters absent from the file keep their values instead of being an error.
    ignore_extra : bool
        Tensors of the file that the network does not have are skipped instead of
        being an error.
    trusted : bool
        Allow pickle-based native formats (Paddle ``.pdparams``). Never needed for
        safetensors files.

    Raises
    ------
    CheckpointError
        A missing, unexpected, mis-shaped or mis-typed parameter, or an unreadable file.

    Examples
    --------
    >>> import d2lcompat, tempfile, os
    >>> from d2lcompat import nn
    >>> path = os.path.join(tempfile.mkdtemp(), "net.safetensors")
    >>> net = nn.Dense(2, in_units=3); net.initialize(); net.save_parameters(path)
    >>> clone = nn.Dense(2); d2lcompat._io.load_parameters(clone, path)
    >>> clone.weight.shape
    (2, 3)
    """
    dev = _device.resolve(device) if device is not None else None
    src = _open(path, trusted, None)
    params = block.collect_params()
    name = os.fspath(path)
    problems: list[str] = []
    if not allow_missing:
        for k, p in params.items():
            if k not in src.specs:
                problems.append(f"missing: the file has no '{k}' (shape {p.shape}, {p.dtype})")
    if not ignore_extra:
        for k, (dtype, shape) in src.specs.items():
            if k not in params:
                problems.append(
                    f"unexpected: the file has '{k}' (shape {shape}, {dtype}), which "
                    f"{block._describe()} does not have"
                )
    plan: dict[str, Parameter] = {}
    for k, p in params.items():
        if k not in src.specs:
            continue
        dtype, shape = src.specs[k]
        ok = True
        if not _shape_fits(p, shape):
            problems.append(f"shape: '{k}' is {p.shape} in the model but {shape} in the file")
            ok = False
        if dtype != p.dtype and _held(dtype) != _held(p.dtype):
            problems.append(f"dtype: '{k}' is {p.dtype} in the model but {dtype} in the file")
            ok = False
        if ok:
            plan[k] = p
    # The few checks that need the values (bools, narrowed dtypes) are made now too.
    for k, v in src.read(k for k in plan if _needs_check(src.specs[k][0])):
        problem = _value_problem(k, src.specs[k][0], v)
        if problem is not None:
            problems.append(f"value: {problem}")
    if problems:
        source = "" if src.layout == "portable" else f" (read as a native {src.layout} checkpoint)"
        raise CheckpointError(
            f"Cannot load '{name}'{source} into {block._describe()}: {len(problems)} "
            "problem(s); no parameter was changed.\n  - "
            + "\n  - ".join(problems)
            + "\nWhat to do: pass allow_missing=True to keep parameters the file lacks, "
            "ignore_extra=True to skip tensors the model lacks; for a shape or dtype "
            "mismatch build the model the file was saved from; for a file with other names "
            "rename them with d2lcompat.convert(src, dst, mapping={'native': 'portable'})."
        )
    _apply(src, plan, dev)


def _apply(src: _Source, plan: Mapping[str, Parameter], dev: tuple[str, int] | None) -> None:
    """Stream every planned tensor into its parameter: one copy from the memory map
    into the framework's own memory (host to device once), one tensor at a time."""
    from ._parameter import Constant

    b = active()
    for k, stored in src.read(plan):
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


# --------------------------------------------------------------------- native
def native_formats() -> tuple[str, ...]:
    """The native checkpoint suffixes the running backend's `load_parameters` and
    `convert` read besides safetensors (``('.pt', '.pth')`` under torch; empty when the
    framework has none, as under JAX).

    Examples
    --------
    >>> import d2lcompat
    >>> isinstance(d2lcompat.native_formats(), tuple)
    True
    """
    return tuple(active().NATIVE_CHECKPOINT_FORMATS)


def convert(
    src: PathLike,
    dst: PathLike,
    mapping: Mapping[str, str] | None = None,
    trusted: bool = False,
) -> list[str]:
    """Turn a native checkpoint (or a safetensors file) into the portable file.

    Names are mapped and layouts transposed where the framework stores ``(in, out)``
    (Keras kernels, Paddle ``Linear`` weights); ``mapping`` renames what cannot be
    inferred: ``{'NATIVE': 'PORTABLE'}``, or a prefix ending in ``.`` or ``/``
    (``{'module.': ''}`` drops a ``module.`` prefix).

    Parameters
    ----------
    src : str or os.PathLike
        The native checkpoint; it is read under the running backend (a ``.pt`` under
        torch, a ``.pdparams`` under paddle, a ``.weights.h5`` under tensorflow).
    dst : str or os.PathLike
        The safetensors file to write (atomically).
    mapping : dict of str to str, optional
        Explicit renames, applied to the native names.
    trusted : bool
        Allow pickle-based formats (Paddle ``.pdparams``).

    Returns
    -------
    list of str
        The names written, in order.

    Examples
    --------
    >>> import d2lcompat, tempfile, os
    >>> from d2lcompat import nn
    >>> folder = tempfile.mkdtemp()
    >>> net = nn.Dense(2, in_units=3); net.initialize()
    >>> net.save_parameters(os.path.join(folder, "a.safetensors"))
    >>> d2lcompat.convert(os.path.join(folder, "a.safetensors"), os.path.join(folder, "b.safetensors"),
    ...                   mapping={"weight": "0.weight", "bias": "0.bias"})
    ['0.weight', '0.bias']
    """
    source = _open(src, trusted, mapping)
    entries = _read_all(source)
    what = os.path.basename(os.fspath(src)) + ("" if source.layout == "portable" else f" ({source.layout})")
    _write(dst, entries, _metadata("parameters", entries, **{META_SOURCE: what}))
    return list(entries)


def convert_cli(args: Any) -> int:
    """``d2lcompat convert SRC DST [--map NATIVE=PORTABLE ...] [--trusted]``."""
    import sys

    mapping: dict[str, str] = {}
    for item in args.map or []:
        native, sep, portable = str(item).partition("=")
        if not sep:
            print(
                f"d2lcompat convert: --map expects NATIVE=PORTABLE (e.g. --map "
                f"layers/dense/vars/0=0.weight); received {item!r}.",
                file=sys.stderr,
            )
            return 2
        mapping[native] = portable
    try:
        names = convert(args.src, args.dst, mapping or None, bool(args.trusted))
    except D2LCompatError as exc:
        print(f"d2lcompat convert: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(names)} tensors to {args.dst}: {', '.join(names)}")
    return 0
