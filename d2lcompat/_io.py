"""Saving and loading: one safe, atomic, portable file format (API.md §7).

Where is the file format decided? Here, and only here:

* **safetensors** (through the ``safetensors`` package: tensors and text metadata,
  never code, never pickle), tensors named by the structural names of
  `Block.collect_params` (``0.weight``), in the canonical layouts of the core
  (`nn.Dense` weight ``(out, in)``), with their dtypes unchanged;
* a metadata block: ``d2lcompat.format`` (the format version), ``d2lcompat.version``,
  ``d2lcompat.backend`` (the backend that wrote it), ``d2lcompat.kind``
  (``parameters`` or ``object``) and, for `save`, ``d2lcompat.structure``;
* atomic writes (temporary file in the same folder, flush, fsync, ``os.replace``,
  fsync of the folder);
* all-or-nothing loads: everything is read and validated before any parameter changes;
* native checkpoints (a torch ``state_dict``, a Paddle ``.pdparams``, a Keras
  ``.weights.h5``): the adapter only *reads* its framework's file
  (`Backend.read_native_checkpoint`); names and layouts are mapped here.

Tensors cross into and out of the framework only through the adapter
(``to_numpy``, ``from_numpy``, ``new_variable``, ``assign``); this module imports
no framework.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _device
from ._errors import CheckpointError, D2LCompatError
from ._registry import active

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

# safetensors dtype codes <-> canonical names (the canonical names are also NumPy's and
# what `safetensors.TensorSpec` accepts).
_CODES: dict[str, str] = {
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "U8": "uint8",
    "BOOL": "bool",
}

_MAGIC = (
    (b"PK\x03\x04", "a zip archive (a PyTorch .pt/.pth file or a NumPy .npz?)"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras .h5 / .weights.h5 file?)"),
    (b"\x93NUMPY", "a NumPy .npy file"),
)
# Which backend reads which native file, for the hint in an error message.
_NATIVE_HINTS = (
    ((".pt", ".pth", ".bin"), "torch"),
    ((".pdparams",), "paddle"),
    ((".h5", ".keras"), "tensorflow"),
)


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


def _storage_dtype(dtype: str) -> np.dtype[Any]:
    if dtype == "bfloat16":
        return np.dtype("<u2")
    if dtype in ("bool", "int8", "uint8"):
        return np.dtype(dtype)
    return np.dtype(dtype).newbyteorder("<")


def _entry_from_numpy(arr: np.ndarray, what: str) -> _Entry:
    from ._dtypes import canonical

    if arr.dtype.name == "bfloat16":  # an ml_dtypes array: keep the bits
        return _Entry("bfloat16", np.asarray(arr, order="C").view(np.uint16).astype("<u2"))
    try:
        dtype = canonical(arr.dtype)
    except D2LCompatError as exc:
        raise CheckpointError(
            f"Cannot save {what}: its dtype {arr.dtype} is not one d2lcompat stores "
            f"({', '.join(_CODES.values())}). Cast it first (ops.cast(x, 'float32'))."
        ) from exc
    return _Entry(dtype, np.asarray(arr, dtype=_storage_dtype(dtype), order="C"))


def _entry_from_native(x: Any, what: str) -> _Entry:
    """A native tensor (or a NumPy array) on the host, dtype unchanged."""
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
    return _Entry(dtype, np.asarray(b.to_numpy(x), dtype=_storage_dtype(dtype), order="C"))


def _host_value(e: _Entry) -> np.ndarray:
    """What the adapter's ``from_numpy``/``new_variable`` get (with ``dtype=e.dtype``):
    bfloat16 goes as float32, which converts to bfloat16 exactly."""
    if e.dtype == "bfloat16":
        return (e.array.astype("<u4") << 16).view("<f4")
    return e.array.astype(e.array.dtype.newbyteorder("="), copy=False)


def _to_native(e: _Entry, device: tuple[str, int] | None) -> Any:
    return active().from_numpy(_host_value(e), e.dtype, device)


# ------------------------------------------------------------------ safetensors
def _specs(entries: Mapping[str, _Entry]) -> tuple[dict[str, Any], list[np.ndarray]]:
    """What ``safetensors.serialize_file`` takes, and the arrays its raw pointers point
    into (the caller keeps them alive until the file is written)."""
    import safetensors

    arrays = [np.asarray(e.array, order="C") for e in entries.values()]
    spec_cls = getattr(safetensors, "TensorSpec", None)
    specs: dict[str, Any]
    if spec_cls is not None:  # safetensors >= 0.8: raw pointers, no copy of the data
        specs = {
            k: spec_cls(
                dtype=e.dtype, shape=list(a.shape), data_ptr=a.ctypes.data, data_len=a.nbytes
            )
            for (k, e), a in zip(entries.items(), arrays)
        }
    else:  # safetensors < 0.8 takes the bytes themselves
        specs = {
            k: {"dtype": e.dtype, "shape": list(a.shape), "data": a.tobytes()}
            for (k, e), a in zip(entries.items(), arrays)
        }
    return specs, arrays


def _write_safetensors(
    path: PathLike, entries: Mapping[str, _Entry], metadata: dict[str, str]
) -> None:
    """Write ``entries`` as a safetensors file, atomically.

    ``safetensors.serialize_file`` writes the tensors straight from their buffers into
    the temporary file (no file-sized bytes object in between); `_atomic_write` then
    fsyncs it and moves it into place."""
    import safetensors

    specs, arrays = _specs(entries)

    def write(tmp: str) -> None:
        try:
            safetensors.serialize_file(specs, tmp, metadata=metadata)
        except (OSError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - SafetensorError wraps I/O errors
            raise OSError(f"safetensors could not write it ({exc})") from exc

    _atomic_write(path, write)
    del arrays  # alive until here: ``specs`` points into them


def _sniff(data: bytes) -> str | None:
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return what
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return "a Python pickle (a PyTorch legacy file or a Paddle .pdparams?)"
    return None


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_into(f: Any, size: int) -> np.ndarray:
    """The ``size`` bytes of the open file ``f``, read straight into one NumPy buffer;
    ValueError when the file does not hold exactly ``size`` bytes."""
    buf = np.empty(size, dtype=np.uint8)
    view = memoryview(buf.data)
    got = 0
    while got < size:
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    if got != size or f.read(1):
        raise ValueError("it changed size while it was being read")
    return buf


def _load_safetensors(path: PathLike) -> tuple[dict[str, _Entry], dict[str, str]]:
    """Read, parse and check every tensor of a safetensors file.

    ``safetensors.safe_open`` validates the file (header, dtypes, shapes, offsets, exact
    length) without copying any tensor; the file is then read once into one buffer, and
    every tensor is a view into it (checked against what safe_open reported, and the file
    must be the same, unchanged, one). Raises ValueError with the reason when the file is
    not a valid safetensors file, CheckpointError when it cannot be opened."""
    import safetensors

    name = os.fspath(path)
    try:
        f = open(name, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CheckpointError(f"Cannot read '{name}': {exc.strerror or exc}. Check the path.") from exc
    with f:
        before = os.fstat(f.fileno())
        try:
            with safetensors.safe_open(name, framework="numpy") as sf:
                raw_meta = sf.metadata()
                spec = {}
                for k in sf.keys():
                    s = sf.get_slice(k)
                    spec[k] = (str(s.get_dtype()), tuple(int(d) for d in s.get_shape()))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - a Rust panic is a BaseException
            raise ValueError(f"not a valid safetensors file ({exc})") from None
        # safe_open opened the file by name: it must be the one ``f`` reads, unchanged.
        if _identity(os.stat(name)) != _identity(before):
            raise ValueError("it changed while it was being read")
        buf = _read_into(f, before.st_size)
        if _identity(os.fstat(f.fileno())) != _identity(before):
            raise ValueError("it changed while it was being read")
    # safe_open validated these very bytes: the header is sound JSON, every tensor's
    # offsets lie inside the data, back to back, and match its dtype and shape.
    n = int.from_bytes(buf[:8].tobytes(), "little")
    header = json.loads(buf[8 : 8 + n].tobytes())
    data = buf[8 + n :]
    if not isinstance(raw_meta, dict) and raw_meta is not None:
        raise ValueError("its __metadata__ is not a mapping of strings")
    metadata = {str(k): str(v) for k, v in (raw_meta or {}).items()}
    names = [k for k in header if k != "__metadata__"]
    if sorted(names) != sorted(spec):
        raise ValueError("it changed while it was being read")
    entries: dict[str, _Entry] = {}
    problems: list[str] = []
    for key in names:
        info = header[key]
        code = info["dtype"]
        shape = tuple(int(d) for d in info["shape"])
        if spec[key] != (code, shape):
            raise ValueError("it changed while it was being read")
        dtype = _CODES.get(code)
        if dtype is None:
            problems.append(
                f"'{key}' has dtype {code}, which d2lcompat does not support "
                f"(it supports {', '.join(_CODES)})"
            )
            continue
        begin, end = (int(o) for o in info["data_offsets"])
        storage = _storage_dtype(dtype)
        if not 0 <= begin <= end <= data.size or end - begin != storage.itemsize * int(
            np.prod(shape, dtype=np.int64)
        ):
            raise ValueError(f"the offsets of '{key}' do not match its shape")
        arr = data[begin:end].view(storage).reshape(shape)
        if dtype == "bool" and arr.size and arr.view(np.uint8).max() > 1:
            problems.append(f"'{key}' is bool but holds bytes other than 0 and 1")
            continue
        entries[key] = _Entry(dtype, arr)
    if problems:
        raise ValueError("; ".join(problems))
    with contextlib.suppress(ValueError):  # the order the writer meant (header is sorted)
        keys = _structure(metadata, entries).get("keys")
        if keys is not None:
            entries = {k: entries[k] for k in keys}
    fmt = metadata.get(META_FORMAT)
    if fmt is not None:
        if not fmt.isdigit():
            raise ValueError(f"its metadata {META_FORMAT}={fmt!r} is not a version number")
        if int(fmt) > FORMAT_VERSION:
            raise ValueError(
                f"it was written in d2lcompat format {fmt} (by d2lcompat "
                f"{metadata.get(META_VERSION, '?')}); this d2lcompat reads format "
                f"{FORMAT_VERSION} and older. Upgrade d2lcompat"
            )
    return entries, metadata


# ------------------------------------------------------------------ file access
_UMASK_LOCK = threading.Lock()


def _new_file_mode(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        pass
    with _UMASK_LOCK:  # the only portable way to read the umask is to set it
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder; os.replace is enough there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: PathLike, write: Callable[[str], None]) -> None:
    """Write ``path`` so that a crash at any moment leaves either the old file or the new
    one, never a mix: ``write(tmp)`` fills a temporary file in the same folder (created
    here, private), which is then fsynced, ``os.replace``d over ``path``, and the folder
    is fsynced. The temporary file is removed on failure."""
    target = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise CheckpointError(
            f"Cannot write '{target}': {exc.strerror or exc}. Check that the folder "
            f"'{folder}' exists and is writable."
        ) from exc
    os.close(fd)
    try:
        write(tmp)
        # ``write`` works by name (safetensors itself may write a file of its own and
        # rename it to ``tmp``): fsync whatever file ``tmp`` is now.
        fd = os.open(tmp, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, _new_file_mode(target))
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise CheckpointError(
                f"Cannot write '{target}': {exc.strerror or exc}. The previous file, if any, "
                "is unchanged. Free some space or choose another path."
            ) from exc
        raise
    _fsync_dir(folder)


def _read_head(path: PathLike) -> bytes:
    """The first bytes of ``path`` (enough to tell what kind of file it is)."""
    try:
        with open(path, "rb") as f:
            return f.read(16)
    except OSError as exc:
        raise CheckpointError(
            f"Cannot read '{os.fspath(path)}': {exc.strerror or exc}. Check the path."
        ) from exc


def _not_readable(path: PathLike, data: bytes, reason: str) -> CheckpointError:
    b = active()
    what = _sniff(data) or ("an empty file" if not data else None)
    found = f" It looks like {what}." if what else ""
    formats = ", ".join(b.NATIVE_CHECKPOINT_FORMATS) or "none"
    name = os.fspath(path)
    hint = ""
    for suffixes, backend in _NATIVE_HINTS:
        if name.endswith(suffixes) and backend != b.name:
            hint = (
                f" A {'/'.join(suffixes)} file is read under the {backend} backend: convert it "
                f"there with `D2LCOMPAT_BACKEND={backend} d2lcompat convert {name} "
                "out.safetensors`."
            )
    return CheckpointError(
        f"Cannot load '{name}': {reason}.{found} d2lcompat reads safetensors files written "
        f"by save_parameters()/save() on any backend; the {b.name} backend also reads its "
        f"framework's own checkpoints ({formats}).{hint} Nothing was loaded; if the file was "
        "cut short by a crash, save it again."
    )


def _read_any(
    path: PathLike, trusted: bool, mapping: Mapping[str, str] | None
) -> tuple[dict[str, _Entry], dict[str, str], str]:
    """Every tensor of a portable or native file, under portable names and layouts.

    Returns ``(entries, metadata, layout)`` where ``layout`` is ``"portable"`` or the
    native convention that was mapped."""
    try:
        entries, metadata = _load_safetensors(path)
    except ValueError as exc:
        portable_error = str(exc)
    else:
        if mapping:
            entries = _rename({k: (k, e) for k, e in entries.items()}, mapping, path)
        return entries, metadata, "portable"
    data = _read_head(path)
    native = _read_native(path, data, trusted)
    if native is None:
        raise _not_readable(path, data, portable_error)
    layout, raw = native
    return _map_native(layout, raw, mapping or {}, path), {}, layout


def _read_native(
    path: PathLike, data: bytes, trusted: bool
) -> tuple[str, dict[str, _Entry]] | None:
    b = active()
    if not b.NATIVE_CHECKPOINT_FORMATS:
        return None
    name = os.fspath(path)
    if b.NATIVE_CHECKPOINT_NEEDS_TRUST and not trusted:
        if _sniff(data) is not None or name.endswith(b.NATIVE_CHECKPOINT_FORMATS):
            raise CheckpointError(
                f"'{name}' is not a safetensors file and may be a {b.name} checkpoint "
                f"({', '.join(b.NATIVE_CHECKPOINT_FORMATS)}), which is a pickle: reading it "
                "can run arbitrary code, so d2lcompat never reads it by default. If you "
                "trust where it came from, pass trusted=True (or `d2lcompat convert "
                "--trusted`); nothing was loaded."
            )
        return None
    try:
        result = b.read_native_checkpoint(name, trusted)
    except CheckpointError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the framework's own reader failed
        raise CheckpointError(
            f"Cannot load '{name}': it is neither a safetensors file nor a {b.name} checkpoint "
            f"that can be read safely ({type(exc).__name__}: {str(exc)[:300]}). A PyTorch file "
            "must hold a state_dict (torch.save(model.state_dict(), path)), not a whole model. "
            "Nothing was loaded."
        ) from None
    if result is None:
        return None
    layout, raw = result
    entries: dict[str, _Entry] = {}
    problems: list[str] = []
    for k, v in raw.items():
        try:
            entries[str(k)] = _entry_from_native(v, f"'{k}'")
        except CheckpointError as exc:
            problems.append(f"'{k}': {exc}")
    if problems:
        raise CheckpointError(
            f"Cannot load '{name}': " + "; ".join(problems) + ". Nothing was loaded."
        )
    return layout, entries


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
    _write_safetensors(path, entries, meta)


def load(path: PathLike, device: Any = None) -> Any:
    """Load what `save` wrote: a tensor, a list, a tuple or a dict of native tensors.

    A safetensors file written by anything else (``save_parameters``, another
    library) loads as a ``dict[str, tensor]`` in file order.

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
        entries, metadata = _load_safetensors(path)
        structure = _structure(metadata, entries)
    except ValueError as exc:
        raise _not_readable(path, _read_head(path), str(exc)) from None
    kind = structure["type"]
    if kind == "tensor":
        return _to_native(entries["tensor"], dev)
    if kind in ("list", "tuple"):
        items = [_to_native(entries[str(i)], dev) for i in range(structure["length"])]
        return items if kind == "list" else tuple(items)
    return {k: _to_native(entries[k], dev) for k in structure["keys"]}


def _structure(metadata: Mapping[str, str], entries: Mapping[str, _Entry]) -> dict[str, Any]:
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


def save_parameters(block: Block, path: PathLike) -> None:
    """Save every parameter of ``block`` (constants included) under its structural name.

    Parameters
    ----------
    block : Block
        The network; every parameter must be initialized.
    path : str or os.PathLike
        The file to write (replaced atomically if it exists).

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
    entries = {name: _entry_from_native(p._var, f"parameter '{name}'") for name, p in params.items()}
    _write_safetensors(path, entries, _metadata("parameters", entries))


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

    Every name, shape and dtype is checked before any parameter changes; on any
    problem a `CheckpointError` lists all of them and every parameter is left as it
    was. A parameter still waiting for deferred initialization takes its shape from
    the file.

    Parameters
    ----------
    block : Block
        The network to fill.
    path : str or os.PathLike
        A safetensors file, or a native checkpoint (torch ``.pt``/``.pth``, Paddle
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
    entries, _, layout = _read_any(path, trusted, None)
    params = block.collect_params()
    name = os.fspath(path)
    problems: list[str] = []
    if not allow_missing:
        for k, p in params.items():
            if k not in entries:
                problems.append(f"missing: the file has no '{k}' (shape {p.shape}, {p.dtype})")
    if not ignore_extra:
        for k, e in entries.items():
            if k not in params:
                problems.append(
                    f"unexpected: the file has '{k}' ({e.describe()}), which "
                    f"{block._describe()} does not have"
                )
    plan: list[tuple[Parameter, _Entry]] = []
    for k, p in params.items():
        if k not in entries:
            continue
        e = entries[k]
        ok = True
        if not _shape_fits(p, e.shape):
            problems.append(f"shape: '{k}' is {p.shape} in the model but {e.shape} in the file")
            ok = False
        if e.dtype != p.dtype:
            problems.append(f"dtype: '{k}' is {p.dtype} in the model but {e.dtype} in the file")
            ok = False
        if ok:
            plan.append((p, e))
    if problems:
        source = "" if layout == "portable" else f" (read as a native {layout} checkpoint)"
        raise CheckpointError(
            f"Cannot load '{name}'{source} into {block._describe()}: {len(problems)} "
            "problem(s); no parameter was changed.\n  - "
            + "\n  - ".join(problems)
            + "\nWhat to do: pass allow_missing=True to keep parameters the file lacks, "
            "ignore_extra=True to skip tensors the model lacks; for a shape or dtype "
            "mismatch build the model the file was saved from; for a file with other names "
            "rename them with d2lcompat.convert(src, dst, mapping={'native': 'portable'})."
        )
    _apply(plan, dev)


def _apply(plan: Sequence[tuple[Parameter, _Entry]], dev: tuple[str, int] | None) -> None:
    """Stage every native object first, then attach them: once staging succeeded, the
    writes below cannot fail half-way for inputs that passed validation."""
    from ._parameter import Constant

    b = active()
    staged: list[tuple[Parameter, _Entry, Any, bool]] = []
    for p, e in plan:
        trainable = p._grad_req != "null"
        if p._var is None:
            target = dev if dev is not None else (p._deferred[1] if p._deferred else None)
            if target is None:
                target = _device.resolve(None)
            staged.append((p, e, b.new_variable(_host_value(e), e.dtype, target, trainable), True))
        elif dev is not None and b.device_of(p._var) != dev:
            staged.append((p, e, b.new_variable(_host_value(e), e.dtype, dev, trainable), True))
        else:
            staged.append((p, e, _to_native(e, b.device_of(p._var)), False))
    for p, e, obj, fresh in staged:
        if fresh:
            if not p._known:
                p._shape = e.shape
            p._var = obj
            p._deferred = None
            p._grad = None
        else:
            p._var = b.assign(p._var, obj)
        if isinstance(p, Constant) and e.dtype != "bfloat16":
            p._value = _host_value(e).copy()  # force_reinit restores the loaded value


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
    entries, metadata, layout = _read_any(src, trusted, mapping)
    source = os.path.basename(os.fspath(src)) + ("" if layout == "portable" else f" ({layout})")
    _write_safetensors(dst, entries, _metadata("parameters", entries, **{META_SOURCE: source}))
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
