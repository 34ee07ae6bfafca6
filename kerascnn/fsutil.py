"""Crash-safe file-system helpers (pure Python).

Nothing kerascnn writes is ever half-there: files are written to a temporary
name in the same directory and renamed into place (``os.replace`` is atomic on
POSIX); directories (SavedModel exports) are assembled in a hidden
``.NAME.partial-*`` sibling and renamed when complete. Run directories are
claimed with ``os.mkdir`` without ``exist_ok``: the ``FileExistsError`` is the
lock, so two processes started in the same second never share one.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from kerascnn.errors import WriteError

PARTIAL_MARK = ".partial-"
FULL_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EFBIG: "file too large",
               errno.EDQUOT: "disk quota exceeded"}


def write_error(target, exc: BaseException) -> WriteError | None:
    """A one-line ``WriteError`` when writing ``target`` failed because the disk is full (an
    OSError, or a TensorFlow/h5py error that only carries the C library's text), else None."""
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        reason = FULL_ERRNOS[exc.errno]
    else:
        text = str(exc).lower()
        reason = next((r for r in FULL_ERRNOS.values() if r in text), None)
    if reason is None:
        return None
    return WriteError(f"cannot write {target}: {reason}; the previous version, if any, is kept "
                      f"(free some space or choose another directory)")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary file keeps ``target``'s suffix (Keras checks ``.keras`` / ``.weights.h5``).
    On any exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes[-2:]) if target.name.endswith(".weights.h5") else target.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}{PARTIAL_MARK}", suffix=suffix, dir=target.parent)
    os.close(fd)
    os.unlink(tmp)  # writers such as Keras want to create the file themselves
    try:
        yield Path(tmp)
        with contextlib.suppress(OSError):
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except Exception as e:
        err = write_error(target, e)
        if err is None:
            raise
        raise err from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        Path(tmp).write_text(text)


def atomic_write_json(target: str | os.PathLike, obj) -> None:
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def partial_dir(target: str | os.PathLike) -> Path:
    """Make and return a hidden staging directory beside ``target`` (same file system)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}{PARTIAL_MARK}", dir=target.parent))


def commit_dir(staging: str | os.PathLike, target: str | os.PathLike, force: bool = False) -> None:
    """Rename a complete staging directory onto ``target``.

    Without ``force`` an existing ``target`` is an error (FileExistsError) and is left alone.
    With ``force`` the old directory is first renamed aside, then removed only after the new
    one is in place, so at every instant ``target`` is either the old or the new complete tree.
    """
    staging, target = Path(staging), Path(target)
    if target.exists():
        if not force:
            raise FileExistsError(str(target))
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rmdir(old)
        os.rename(target, old)
        os.rename(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, target)
    _fsync_dir(target.parent)


def sweep_partials(directory: str | os.PathLike) -> list[Path]:
    """Remove leftovers of interrupted writes (``.*.partial-*``) in ``directory``."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        if p.name.startswith(".") and PARTIAL_MARK in p.name:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            removed.append(p)
    return removed


def make_run_dir(root: str | os.PathLike, prefix: str, now: _dt.datetime | None = None) -> Path:
    """Claim a fresh ``root/PREFIX-YYYYmmdd-HHMMSS[-N]`` directory, atomically.

    ``os.mkdir`` (no ``exist_ok``) either creates the directory or fails; on failure the
    next suffix is tried. Two processes started in the same second get different directories.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = f"{prefix}-{stamp}"
    for i in range(10_000):
        candidate = root / (base if i == 0 else f"{base}-{i}")
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"could not claim a run directory under {root}")
