"""Crash-safe file-system helpers (pure Python).

Nothing kerascnn writes is ever half-there: files are written to a temporary
name in the same directory and renamed into place (``os.replace`` is atomic on
POSIX); directories (SavedModel exports) are assembled in a hidden
``.NAME.partial-PID-*`` sibling and renamed when complete. Both are named by ``partial_prefix``
and removed by one sweep (``sweep_partials``) that takes only names of that grammar whose
process is gone, so concurrent writers never delete each other's work. Run directories are
claimed with ``os.mkdir`` without ``exist_ok``: the ``FileExistsError`` is the
lock, so two processes started in the same second never share one.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import re
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
    fd, tmp = tempfile.mkstemp(prefix=partial_prefix(target.stem), suffix=suffix, dir=target.parent)
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


def _pid_tag() -> str:
    """``PID-RANDOM``: the part of a partial name that says which process owns it."""
    return f"{os.getpid()}-{os.urandom(4).hex()}"


def partial_prefix(name: str) -> str:
    """``.NAME.partial-PID-HEX8``: the name of a staging folder (``partial_dir``), and the prefix of
    an atomic write's temporary file (``atomic_path`` adds mkstemp's 8 random characters and the
    suffix). The one naming ``sweep_partials`` recognises."""
    return f".{name}{PARTIAL_MARK}{_pid_tag()}"


def partial_dir(target: str | os.PathLike) -> Path:
    """Make and return a hidden staging directory ``.NAME.partial-PID-RANDOM`` beside ``target``
    (same file system), with normal permissions (0777 minus the umask, as ``mkdir`` gives; not
    ``mkdtemp``'s 0700, so an export is readable by the other users a server may run as)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        path = target.parent / partial_prefix(target.name)
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a staging directory beside {target}")


def current_umask() -> int:
    """The process umask, read without changing it where Linux tells (``/proc/self/status``)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normal_permissions(root: str | os.PathLike) -> None:
    """Give ``root`` and everything in it the modes a plain ``mkdir``/``open`` would: 0777 / 0666
    minus the umask (plus the owner's execute bits kept on files that had them)."""
    mask = current_umask()
    root = Path(root)
    entries = [root] + list(root.rglob("*"))
    for p in entries:
        if p.is_symlink():
            continue
        if p.is_dir():
            os.chmod(p, 0o777 & ~mask)
        else:
            execute = 0o111 if os.stat(p).st_mode & 0o100 else 0
            os.chmod(p, (0o666 | execute) & ~mask)


def commit_dir(staging: str | os.PathLike, target: str | os.PathLike, force: bool = False,
               replaceable=None) -> None:
    """Rename a complete staging directory onto ``target``.

    Without ``force`` an existing ``target`` is an error (FileExistsError) and is left alone.
    With ``force`` the old directory is first renamed aside, then removed only after the new
    one is in place. ``replaceable(target)`` (when given) is asked first and returns None when
    ``target`` may be replaced, else the reason it may not (raised as PermissionError; nothing
    is touched).
    """
    staging, target = Path(staging), Path(target)
    if target.exists() or target.is_symlink():
        if not force:
            raise FileExistsError(str(target))
        reason = replaceable(target) if replaceable is not None else None
        if reason:
            raise PermissionError(reason)
        old = target.parent / f".{target.name}.old-{_pid_tag()}"
        os.rename(target, old)
        os.rename(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, target)
    _fsync_dir(target.parent)


# after the PID-HEX8 tag: nothing (a staging folder) or mkstemp's 8 characters and a suffix (a file)
_TAIL = r"(?:[a-z0-9_]{8}(?:\.[A-Za-z0-9_]+){0,2})?"
# kerascnn before the PID tag: mkstemp's 8 characters and one suffix (swept only for known stems)
_LEGACY_TAIL = r"[a-z0-9_]{8}(?:\.[a-z]+)?"


def _partial_owner(name: str, stems=None) -> tuple[bool, int | None]:
    """(whether ``name`` is one of kerascnn's partial names, the pid that wrote it or None): the
    grammar of ``partial_prefix`` with any stem, or with ``stems`` only, which also accepts the
    older names without a PID."""
    stem = "|".join(map(re.escape, stems)) if stems else ".+?"
    m = re.fullmatch(rf"\.(?:{stem})" + re.escape(PARTIAL_MARK) + rf"([0-9]{{1,10}})-[0-9a-f]{{8}}{_TAIL}", name)
    if m:
        return True, int(m.group(1))
    return bool(stems and re.fullmatch(rf"\.(?:{stem})" + re.escape(PARTIAL_MARK) + _LEGACY_TAIL, name)), None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` may be alive on this machine (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's), or cannot tell: keep it
    return True


def sweep_partials(directory: str | os.PathLike, stems=None, mine: bool = False) -> list[Path]:
    """Remove leftovers of interrupted writes in ``directory``: only files and folders (never a
    symbolic link) named as kerascnn names its partials (``partial_prefix``) whose process is no
    longer alive on this machine. ``stems`` limits the sweep to those names (a run directory,
    whose files kerascnn names itself; then also the older partial names without a PID). With
    ``mine`` this process's own partials go too (the caller holds the directory and has no write
    in progress there); without it they stay, like those of any live process (a concurrent
    export into the same parent). Any other hidden file is left alone."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        ours, pid = _partial_owner(p.name, stems)
        if not ours or p.is_symlink() or not (p.is_file() or p.is_dir()):
            continue
        if pid is not None and not (mine and pid == os.getpid()) and pid_alive(pid):
            continue
        remove_entry(p)
        removed.append(p)
    return removed


def remove_entry(p: Path) -> None:
    """Delete one file or folder kerascnn has proven it wrote (a symbolic link itself, never its target)."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            p.unlink()


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
