"""Files that are not d2lcompat's: what they look like (the messages), the running
framework's own checkpoints, and mapping their names and layouts to portable ones."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from .._errors import CheckpointError
from .._registry import active

if TYPE_CHECKING:
    pass

from .host import PathLike, _Entry, _entry_from_native
from .stformat import FormatError

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


def _not_readable(path: PathLike, data: bytes | None, reason: FormatError) -> CheckpointError:
    """The message for a file that is not a readable checkpoint: the same under every
    backend (what the file looks like, who reads it). ``data`` is the file's first
    bytes, or None when the file is safetensors (nothing to sniff) or must not be
    quoted (a file outside the checkpoint's folder)."""
    name = os.fspath(path)
    kind = _sniff(data) if data is not None and not reason.truncated else None
    if kind == "text" and data is not None:
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


