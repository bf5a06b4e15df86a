"""Saving and loading: one safe, atomic, portable file format (API.md §7, §18).

Where is the file format decided? Here, and in the small modules beside it:

* **safetensors** (`d2lcompat._io.stformat`: tensors and text metadata, never code,
  never pickle), tensors named by the structural names of `Block.collect_params`
  (``0.weight``), in the canonical layouts of the core (`nn.Dense` weight
  ``(out, in)``), with their dtypes unchanged;
* a metadata block: ``d2lcompat.format`` (the format version), ``d2lcompat.version``,
  ``d2lcompat.backend`` (the backend that wrote it), ``d2lcompat.kind``
  (``parameters`` or ``object``) and ``d2lcompat.structure``;
* atomic writes (`d2lcompat._io.atomic`: a recognizable, locked temporary file in the
  same folder, fsync, ``os.replace``, fsync of the folder; stale temporary files of
  dead writers are removed by the next save);
* sharded checkpoints in the Hugging Face layout (`d2lcompat._io.shards`), atomic as a
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

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _device
from .._errors import CheckpointError, D2LCompatError
from .._registry import active

if TYPE_CHECKING:
    from .._parameter import Parameter
    from ..nn._block import Block

import functools

from . import atomic as _atomic
from . import shards as _shards
from . import stformat as _stformat
from .host import (
    FORMAT_VERSION,
    META_BACKEND,
    META_FORMAT,
    META_KIND,
    META_SOURCE,
    META_STRUCTURE,
    META_VERSION,
    PathLike,
    _Entry,
    _entry_from_native,
    _held,
    _to_native,
    _value_problem,
)
from .native import _not_readable, _read_head
from .source import (
    _apply,
    _needs_check,
    _open,
    _open_portable,
    _read_all,
    _shape_fits,
    _structure,
)
from .stformat import FormatError


# -------------------------------------------------------------------- metadata
def _metadata(kind: str, names: Iterable[str], **extra: str) -> dict[str, str]:
    """The metadata block; the tensor order is kept as a dict structure (safetensors
    sorts its header), so `load` returns a parameters file in structural order."""
    from .. import __version__

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


def load(path: PathLike, device: Any = None, *, trusted: bool = False) -> Any:
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
    trusted : bool
        Read the shards of a sharded checkpoint even where they resolve outside its
        folder (symbolic links elsewhere); by default such a checkpoint is refused.

    Raises
    ------
    CheckpointError
        The file is missing, truncated, corrupt or not safetensors, or a shard lies
        outside its checkpoint's folder.

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
        src = _open_portable(path, trusted)
    except FormatError as exc:
        raise _not_readable(path, _read_head(path), exc) from None
    with src:
        return _load_from(src, path, dev)


def _load_from(src: Any, path: PathLike, dev: Any) -> Any:
    try:
        structure = _structure(src.metadata, src.specs)
    except ValueError as exc:
        raise _not_readable(path, None, FormatError(str(exc))) from None
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
        f"'{name}' ({_shape_of(p)})" for name, p in params.items() if p._var is None
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
        name: _stformat.stored_nbytes(b.dtype(p._var), b.shape(p._var))
        for name, p in params.items()
    }
    getters = {
        name: (lambda p=p, name=name: _entry_from_native(p._var, f"parameter '{name}'"))
        for name, p in params.items()
    }
    _write_sharded(path, getters, sizes, max_bytes, _metadata)




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
    the parameters (host memory: about one tensor). Should anything fail on the way (a
    read error, a file rewritten in place by another process), every parameter is put
    back before the error is raised (the old values of the parameters written in
    place wait in an unlinked temporary file until the load ends). A parameter still
    waiting for deferred initialization takes its shape from the file.

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
        Allow pickle-based native formats (Paddle ``.pdparams``), and the shards of a
        sharded checkpoint that resolve outside its folder (symbolic links elsewhere).
        Never needed for a safetensors file or a checkpoint folder of your own.

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
    with _open(path, trusted, None) as src:
        _load_parameters_from(src, block, path, dev, allow_missing, ignore_extra)


def _load_parameters_from(
    src: Any, block: Block, path: PathLike, dev: Any, allow_missing: bool, ignore_extra: bool
) -> None:
    params = block.collect_params()
    name = os.fspath(path)
    problems: list[str] = []
    if not allow_missing:
        for k, p in params.items():
            if k not in src.specs:
                problems.append(f"missing: the file has no '{k}' ({_shape_of(p)}, {p.dtype})")
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
            dims, _, why = _shape_of(p, bare=True).partition(": ")
            problems.append(
                f"shape: '{k}' is {dims} in the model{', ' + why + ',' if why else ''} "
                f"but {shape} in the file"
            )
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
    with _open(src, trusted, mapping) as source:
        entries = _read_all(source)
    what = os.path.basename(os.fspath(src)) + ("" if source.layout == "portable" else f" ({source.layout})")
    _write(dst, entries, _metadata("parameters", entries, **{META_SOURCE: what}))
    return list(entries)


def _shape_of(p: Parameter, bare: bool = False) -> str:
    """``shape (3, 4)``; for a deferred parameter never run, its known sizes and why the
    others are unknown (``shape (3, ?): not yet initialized (input size unknown)``) rather
    than the 0 that stands for them. ``bare`` leaves out the word ``shape``."""
    shape = tuple(p.shape)
    if p._var is None and 0 in shape:
        dims = ", ".join("?" if d == 0 else str(d) for d in shape)
        text = f"({dims}{',' if len(shape) == 1 else ''}): not yet initialized (input size unknown)"
    else:
        text = str(shape)
    return text if bare else f"shape {text}"


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
        if getattr(args, "debug", False):
            raise  # --debug: the command prints the traceback
        print(f"d2lcompat convert: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("(run with --debug to see the traceback)", file=sys.stderr)
        return 1
    print(f"wrote {len(names)} tensors to {args.dst}: {', '.join(names)}")
    return 0

