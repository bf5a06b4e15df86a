"""Atomic writes of one file or of a whole folder of files (API.md §7, §18).

A save writes into a temporary file (or folder) in the same folder as its target,
fsyncs it, and moves it into place with one rename, then fsyncs the folder: a crash
at any moment leaves the old file (or the old set of shards) or the new one.

Temporary names are recognizable, ``.<target>.d2lc-tmp.<pid>.<host>.<random>``, and
the writer holds an exclusive ``flock`` on each while it works. A writer killed with
SIGKILL cannot remove its own; so every save first removes the temporary files of
*dead* writers in its folder:

* same host and the pid no longer runs: dead;
* otherwise (pid alive, maybe reused; another host sharing the folder): dead only
  when nobody holds the lock *and* the file is older than `STALE_AFTER_S` (the lock
  is taken a few microseconds after the file is created; the age covers that gap).

A live concurrent writer's file is never touched. This module imports no framework.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from .._errors import CheckpointError

__all__ = ["STALE_AFTER_S", "TMP_TAG", "clean_stale", "write_file", "write_folder"]

#: The tag every temporary name carries.
TMP_TAG = ".d2lc-tmp."
#: An unlocked temporary file of a writer whose liveness the pid cannot tell is stale
#: only after this many seconds.
STALE_AFTER_S = 5.0

_TMP_NAME = re.compile(
    r"^\.(?P<base>.+)\.d2lc-tmp\.(?P<pid>\d+)\.(?P<host>[A-Za-z0-9-]*)\.[A-Za-z0-9_]+$"
)
_UMASK_LOCK = threading.Lock()

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; pid and age decide
    fcntl = None  # type: ignore[assignment]


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40]


def _prefix(base: str) -> str:
    return f".{base}{TMP_TAG}{os.getpid()}.{_host()}."


def _lock(fd: int) -> None:
    if fcntl is not None:
        with contextlib.suppress(OSError):  # a file system without locks: pid and age decide
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _locked_by_someone(path: str) -> bool:
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # gone or unreadable: leave it alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases the lock we may have taken
    return False


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _stale(path: str, pid: int, host: str) -> bool:
    if host == _host() and not _pid_alive(pid):
        return True
    if _locked_by_someone(path):
        return False
    try:
        age = time.time() - os.lstat(path).st_mtime
    except OSError:
        return False
    return age > STALE_AFTER_S


def clean_stale(folder: str) -> list[str]:
    """Remove the temporary files and folders that dead writers left in ``folder``;
    return their names. Never raises (a racing cleaner may remove one first).

    Examples
    --------
    >>> import tempfile
    >>> clean_stale(tempfile.mkdtemp())
    []
    """
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TMP_NAME.match(name)
        if m is None:
            continue
        path = os.path.join(folder, name)
        is_dir = os.path.isdir(path) and not os.path.islink(path)
        if is_dir and not os.path.exists(os.path.join(folder, m.group("base"))):
            continue  # maybe the old set that a save moved aside and died before replacing
        if not _stale(path, int(m.group("pid")), m.group("host")):
            continue
        try:
            if is_dir:
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError:
            continue
        removed.append(name)
    return removed


def new_file_mode(path: str) -> int:
    """The mode of the existing ``path``, else what the umask gives a new file."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        pass
    with _UMASK_LOCK:  # the only portable way to read the umask is to set it
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(folder: str) -> None:
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


def _cannot_write(target: str, exc: OSError, folder: str | None = None) -> CheckpointError:
    where = (
        f" Check that the folder '{folder}' exists and is writable." if folder is not None
        else " The previous file, if any, is unchanged. Free some space or choose another path."
    )
    return CheckpointError(f"Cannot write '{target}': {exc.strerror or exc}.{where}")


def write_file(path: str | os.PathLike[str], write: Callable[[int], object]) -> None:
    """Write ``path`` atomically: ``write(fd)`` fills a fresh temporary file (an open,
    locked, binary file descriptor) in the same folder; it is then fsynced, given the
    mode ``path`` has (or the umask's), renamed over ``path``, and the folder fsynced.
    On any failure the temporary file is removed and ``path`` is unchanged.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "f")
    >>> write_file(p, lambda fd: os.write(fd, b"hi"))
    >>> open(p, "rb").read()
    b'hi'
    """
    target = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(target)
    clean_stale(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_prefix(os.path.basename(target)), dir=folder)
    except OSError as exc:
        raise _cannot_write(target, exc, folder) from None
    try:
        _lock(fd)
        write(fd)
        os.fsync(fd)
        if hasattr(os, "fchmod"):
            os.fchmod(fd, new_file_mode(target))
        else:  # pragma: no cover - Windows
            os.chmod(tmp, new_file_mode(target))
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _cannot_write(target, exc) from None
        raise
    finally:
        os.close(fd)  # after the rename: the lock is held until the file is in place
    fsync_dir(folder)


def write_all(fd: int, data: memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` (os.write may write less than asked)."""
    data = data.cast("B") if data.format != "B" or data.ndim != 1 else data
    n = len(data)
    done = 0
    while done < n:
        done += os.write(fd, data[done : done + (1 << 30)])


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False when the
    system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported here
        return False
    raise OSError(err, os.strerror(err), b)


def write_folder(
    path: str | os.PathLike[str], write: Callable[[str], None], owned: Callable[[str], bool]
) -> None:
    """Replace the folder ``path`` atomically with the files ``write(tmp_folder)``
    creates (it fsyncs each): the readers of ``path`` see the old set of files or the
    new one, never a mix. Files in the old folder that ``owned(name)`` does not claim
    (a ``config.json`` beside the shards) are carried over (hard links, else copies).

    The new folder is swapped with the old one in one step where the system can
    (Linux ``RENAME_EXCHANGE``); elsewhere the old folder is renamed aside first, a
    moment in which ``path`` does not exist.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "ckpt")
    >>> write_folder(p, lambda d: open(os.path.join(d, "a"), "w").close(), lambda n: True)
    >>> os.listdir(p)
    ['a']
    """
    target = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(target)
    if os.path.lexists(target) and not os.path.isdir(target):
        raise CheckpointError(
            f"Cannot write a sharded checkpoint to '{target}': it exists and is not a "
            "folder. Pass a folder path (it is created), or remove the file."
        )
    clean_stale(parent)
    try:
        tmp = tempfile.mkdtemp(prefix=_prefix(os.path.basename(target)), dir=parent)
    except OSError as exc:
        raise _cannot_write(target, exc, parent) from None
    lock_fd = os.open(tmp, os.O_RDONLY)
    try:
        _lock(lock_fd)
        write(tmp)
        if os.path.isdir(target):
            for name in os.listdir(target):
                src, dst = os.path.join(target, name), os.path.join(tmp, name)
                if owned(name) or os.path.lexists(dst):
                    continue
                try:
                    os.link(src, dst, follow_symlinks=False)
                except OSError:
                    if os.path.isdir(src) and not os.path.islink(src):
                        shutil.copytree(src, dst, symlinks=True)
                    else:
                        shutil.copy2(src, dst, follow_symlinks=False)
            os.chmod(tmp, os.stat(target).st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o777 & ~_umask())
        fsync_dir(tmp)
        if not os.path.isdir(target):
            os.rename(tmp, target)
        elif _exchange(tmp, target):
            shutil.rmtree(tmp, ignore_errors=True)  # the old set, now under the tmp name
        else:
            aside = tempfile.mkdtemp(prefix=_prefix(os.path.basename(target)), dir=parent)
            os.rmdir(aside)
            os.rename(target, aside)
            os.rename(tmp, target)
            shutil.rmtree(aside, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _cannot_write(target, exc) from None
        raise
    finally:
        os.close(lock_fd)
    fsync_dir(parent)


def _umask() -> int:
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask
