"""The safetensors file format, read and written without a second copy of the data.

Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian header
length ``n``, ``n`` bytes of JSON (``{"__metadata__": {str: str}, name: {"dtype",
"shape", "data_offsets": [begin, end]}}``, padded with spaces), then the tensors'
bytes, back to back.

* `read_header` validates everything that can be checked without the data (JSON,
  dtypes, shapes, offsets that tile the data exactly, the file length), the rules the
  ``safetensors`` package itself enforces, and raises `FormatError` with the reason.
* `Mapped` maps the file (copy-on-write, so views are writable for frameworks that
  want it, yet never write the file) and hands out one tensor at a time as a NumPy
  view; the framework copies it into its own memory (one copy, host to device once),
  and `Mapped.release` gives the pages back, so a load holds about one tensor.
* `write` writes the header and then every tensor's bytes straight from the host
  buffers the caller holds (no file-sized buffer). The header is deterministic:
  sorted JSON keys, tensors laid out by (dtype width descending, name), so two saves
  of the same values give the same bytes.

This module imports no framework.
"""

from __future__ import annotations

import functools
import json
import math
import mmap
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .atomic import write_all

__all__ = ["CODES", "FormatError", "Header", "Mapped", "TensorInfo", "read_header", "storage_dtype"]

# safetensors dtype codes <-> canonical names.
CODES: dict[str, str] = {
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
_NAMES = {v: k for k, v in CODES.items()}
# The safetensors package refuses headers above 100 MB; so do we (a flipped length byte
# must not make us allocate gigabytes).
MAX_HEADER = 100_000_000
# More dimensions than any framework (or NumPy, 64) holds is a malformed header.
MAX_DIMS = 64
#: A load gives back the pages it has copied every this many bytes (`Mapped.release`).
RELEASE_EVERY = 64 << 20
# madvise(MADV_POPULATE_READ) (Linux 5.14+; Python has no name for it).
_POPULATE = getattr(mmap, "MADV_POPULATE_READ", 22 if sys.platform.startswith("linux") else 0)


class FormatError(ValueError):
    """The bytes are not a valid safetensors file; ``str()`` says why."""

    def __init__(self, reason: str, truncated: bool = False) -> None:
        super().__init__(reason)
        #: The file looks like a safetensors file that was cut short.
        self.truncated = truncated


@functools.cache
def storage_dtype(dtype: str) -> np.dtype[Any]:
    """The little-endian NumPy dtype a tensor of ``dtype`` is stored as (bfloat16 as
    its uint16 bit patterns)."""
    if dtype == "bfloat16":
        return np.dtype("<u2")
    if dtype in ("bool", "int8", "uint8"):
        return np.dtype(dtype)
    return np.dtype(dtype).newbyteorder("<")


def stored_nbytes(dtype: str, shape: Sequence[int]) -> int:
    """The bytes a tensor of ``dtype`` and ``shape`` takes (`storage_dtype`): what the
    save planner shards by, a load's undo keeps, and a compiled step's gradients hold."""
    return storage_dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64))


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a file: canonical dtype, shape, absolute byte range."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    def describe(self) -> str:
        return f"shape {self.shape}, {self.dtype}"


@dataclass(frozen=True)
class Header:
    """A validated header: the tensors in header order, the metadata, the file's size."""

    path: str
    size: int
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    identity: tuple[int, int, int, int]
    #: The descriptor the header was read from, kept open (`open_header`), or -1. A load
    #: reads the data through it: a save that replaces the file (a rename) meanwhile
    #: cannot change what this load reads.
    fd: int = field(default=-1, compare=False)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            object.__setattr__(self, "fd", -1)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise FormatError(f"its header names '{k[:100]}' twice")
        out[k] = v
    return out


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    got = 0
    while got < n:
        b = os.read(fd, min(n - got, 1 << 24))
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def read_header(path: str) -> Header:
    """Read and validate the header of the safetensors file ``path``.

    Raises
    ------
    OSError
        The file cannot be opened or read.
    FormatError
        Anything that is not a valid safetensors file (the reason in the message).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        return _parse(path, fd, st)
    finally:
        os.close(fd)


def open_header(path: str, dir_fd: int | None = None) -> Header:
    """Like `read_header`, but the file stays open: the header's ``fd`` (close it with
    `Header.close`). With ``dir_fd``, ``path``'s base name is opened in that folder."""
    if dir_fd is not None:
        fd = os.open(os.path.basename(path), os.O_RDONLY, dir_fd=dir_fd)
    else:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        header = _parse(path, fd, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    object.__setattr__(header, "fd", fd)
    return header


def _reopen(header: Header) -> int:
    """A descriptor of the file ``header`` was read from: a duplicate of the one kept
    open, else the path opened again."""
    if header.fd >= 0:
        return os.dup(header.fd)
    return os.open(header.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))


def unchanged(header: Header) -> bool:
    """Whether the file ``header`` was read from still has the same size and mtime (a
    process that rewrites it in place changes them)."""
    if header.fd < 0:
        return True
    return _identity(os.fstat(header.fd)) == header.identity


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse(path: str, fd: int, st: os.stat_result) -> Header:
    size = st.st_size
    if size < 8:
        raise FormatError(f"it is {size} bytes long, shorter than a safetensors header", size > 0)
    n = int.from_bytes(_read_exact(fd, 8), "little")
    if n > MAX_HEADER:
        raise FormatError(f"its first 8 bytes give a header length of {n}, more than 100 MB")
    raw = _read_exact(fd, min(n, size - 8))
    if len(raw) < n:
        looks = raw[:1] == b"{"
        raise FormatError(
            f"its header says {n} bytes but the file ends after {len(raw)}", truncated=looks
        )
    if raw[:1] != b"{":
        raise FormatError("its header is not a JSON object")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except FormatError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FormatError("its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise FormatError("its header is not a JSON object")
    raw_meta = header.pop("__metadata__", None)
    if raw_meta is not None and not (
        isinstance(raw_meta, dict) and all(isinstance(v, str) for v in raw_meta.values())
    ):
        raise FormatError("its __metadata__ is not a mapping of strings")
    metadata = dict(raw_meta or {})
    data_start = 8 + n
    data_size = size - data_start
    tensors: dict[str, TensorInfo] = {}
    problems: list[str] = []
    spans: list[tuple[int, int, str]] = []
    for key, info in header.items():
        if not isinstance(info, dict):
            raise FormatError(f"the header entry of '{key[:100]}' is not an object")
        code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not (
            isinstance(code, str)
            and isinstance(shape, list) and len(shape) <= MAX_DIMS
            and all(_int(d) and 0 <= d < 2**63 for d in shape)
            and isinstance(offsets, list) and len(offsets) == 2
            and all(_int(o) and o >= 0 for o in offsets)
        ):
            raise FormatError(f"the header entry of '{key[:100]}' is malformed")
        begin, end = offsets
        if begin > end:
            raise FormatError(f"the offsets of '{key[:100]}' are reversed")
        spans.append((begin, end, key))
        dtype = CODES.get(code)
        if dtype is None:
            problems.append(
                f"'{key}' has dtype {code[:20]}, which d2lcompat does not support "
                f"(it supports {', '.join(CODES)})"
            )
            continue
        count = math.prod(shape)  # exact: Python ints (np.prod overflows, and costs 6 µs)
        if end - begin != storage_dtype(dtype).itemsize * count:
            raise FormatError(f"the offsets of '{key[:100]}' do not match its shape and dtype")
        tensors[key] = TensorInfo(key, dtype, tuple(shape), data_start + begin, data_start + end)
    spans.sort()
    at = 0
    for begin, end, key in spans:
        if begin != at:
            raise FormatError(
                f"the data of '{key[:100]}' does not follow the previous tensor's (a gap or "
                "an overlap)"
            )
        at = end
    if at != data_size:
        short = at > data_size
        raise FormatError(
            f"its tensors need {at} bytes of data but the file holds {max(data_size, 0)}",
            truncated=short,
        )
    if problems:
        raise FormatError("; ".join(problems))
    return Header(path, size, tensors, metadata, _identity(st))


def open_checked(header: Header) -> int:
    """A read-only descriptor of the very file ``header`` was read from (FormatError if
    it was replaced or changed since)."""
    fd = _reopen(header)
    if _identity(os.fstat(fd)) != header.identity:
        os.close(fd)
        raise FormatError("it changed between reading its header and its data")
    return fd


def read_into(fd: int, info: TensorInfo, out: np.ndarray) -> None:
    """Read the tensor's bytes straight into ``out`` (a writable, C-contiguous array of
    exactly that many bytes): one copy, from the page cache into ``out``."""
    view = memoryview(out.reshape(-1).view(np.uint8).data) if out.size else memoryview(b"")
    at, n = 0, info.end - info.begin
    if len(view) != n:
        raise ValueError(f"the buffer holds {len(view)} bytes, the tensor {n}")
    while at < n:
        got = os.preadv(fd, [view[at : at + (1 << 30)]], info.begin + at)
        if got <= 0:
            raise FormatError("it became shorter while it was being read")
        at += got


class Mapped:
    """The data of one validated file, mapped; `view` gives one tensor at a time.

    Use as a context manager. The mapping is private (copy-on-write): views are
    writable, which some frameworks require of the arrays they copy from, and nothing
    is ever written back to the file.
    """

    def __init__(self, header: Header) -> None:
        self.header = header
        self._fd = _reopen(header)
        self._mm: mmap.mmap | None = None
        self._released = 0  # the pages before this offset were given back
        try:
            if _identity(os.fstat(self._fd)) != header.identity:
                raise FormatError("it changed between reading its header and its data")
            if header.size:
                self._mm = mmap.mmap(self._fd, 0, access=mmap.ACCESS_COPY)
        except BaseException:
            os.close(self._fd)
            raise

    def __enter__(self) -> Mapped:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def view(self, info: TensorInfo) -> np.ndarray:
        """The tensor's stored values (storage dtype, see `storage_dtype`), a view."""
        dt = storage_dtype(info.dtype)
        if info.end == info.begin or self._mm is None:
            return np.empty(info.shape, dtype=dt)
        self._populate(info)
        count = (info.end - info.begin) // dt.itemsize
        return np.frombuffer(self._mm, dtype=dt, count=count, offset=info.begin).reshape(info.shape)

    def _populate(self, info: TensorInfo) -> None:
        """Map the tensor's pages in one system call (Linux MADV_POPULATE_READ) instead of
        one page fault per few pages while the framework copies; a no-op elsewhere."""
        if self._mm is None or not _POPULATE or info.end - info.begin < 1 << 20:
            return
        page = mmap.PAGESIZE
        start = info.begin // page * page
        try:
            self._mm.madvise(_POPULATE, start, info.end - start)
        except (OSError, ValueError, OverflowError):
            pass

    def release(self, info: TensorInfo) -> None:
        """Give back the pages of tensors that were copied (tensors are read in file
        order): every `RELEASE_EVERY` bytes, one madvise(MADV_DONTNEED) for all of them.
        This keeps the resident memory of a load at about one tensor (plus that much);
        the file stays in the page cache."""
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if self._mm is None or advice is None or info.end - self._released < RELEASE_EVERY:
            return
        page = mmap.PAGESIZE
        start = -(-self._released // page) * page
        stop = info.end // page * page
        if stop > start:
            try:
                self._mm.madvise(advice, start, stop - start)
            except (OSError, ValueError):
                pass
        self._released = stop

    def close(self) -> None:
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # a framework still holds a view: the GC closes it later
                pass
            self._mm = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def layout(arrays: Mapping[str, tuple[str, np.ndarray]]) -> list[str]:
    """The order tensors are written in: widest dtype first (keeps every tensor aligned
    to its element size), then by name; deterministic."""
    return sorted(arrays, key=lambda k: (-storage_dtype(arrays[k][0]).itemsize, k))


def header_bytes(
    arrays: Mapping[str, tuple[str, np.ndarray]], metadata: Mapping[str, str], order: Iterable[str]
) -> bytes:
    """The header (length prefix included) for ``arrays`` written in ``order``."""
    head: dict[str, Any] = {}
    if metadata:
        head["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    at = 0
    for k in order:
        dtype, arr = arrays[k]
        n = arr.nbytes
        head[k] = {"dtype": _NAMES[dtype], "shape": [int(d) for d in arr.shape], "data_offsets": [at, at + n]}
        at += n
    raw = json.dumps(head, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-(8 + len(raw)) % 8)
    return len(raw).to_bytes(8, "little") + raw


def write(fd: int, arrays: Mapping[str, tuple[str, np.ndarray]], metadata: Mapping[str, str]) -> int:
    """Write a safetensors file to ``fd``: ``arrays`` maps names to ``(dtype, host
    array)``, each array C-contiguous in its storage dtype. Returns the bytes written."""
    order = layout(arrays)
    head = header_bytes(arrays, metadata, order)
    write_all(fd, memoryview(head))
    total = len(head)
    for k in order:
        arr = arrays[k][1]
        if arr.nbytes:
            write_all(fd, memoryview(np.ascontiguousarray(arr).data).cast("B"))
        total += arr.nbytes
    return total
