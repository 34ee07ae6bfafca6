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
def atomic_path(target: str | os.PathLike, suffix: str | None = None, commit=None):
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success
    (``commit(tmp, target)`` instead of ``os.replace`` when given).

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
        (commit or os.replace)(tmp, target)
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


RENAME_EXCHANGE = 2    # linux/fs.h: renameat2 flag, swap the two names atomically
_AT_FDCWD = -100


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap the names ``a`` and ``b`` in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``,
    through ctypes): at every instant each name holds one complete tree. False where the platform,
    C library or file system has no such call (nothing changed then); OSError on other failures."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):   # a C library without renameat2 (glibc < 2.28, musl < 1.2.?)
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):   # kernel or file system lacks it
        return False
    raise OSError(err, os.strerror(err), str(b))


OLD_MARK = ".old-"


def aside_name(target: Path) -> Path:
    """``.NAME.old-PID-HEX8``: where the two-rename fallback of ``commit_dir`` keeps the old tree
    until the new one is in place (``recover_replaced`` puts it back after a crash)."""
    return target.parent / f".{target.name}{OLD_MARK}{_pid_tag()}"


def commit_dir(staging: str | os.PathLike, target: str | os.PathLike, force: bool = False,
               replaceable=None) -> None:
    """Rename a complete staging directory onto ``target``.

    Without ``force`` an existing ``target`` is an error (FileExistsError) and is left alone.
    With ``force`` the two trees swap names in one atomic step (``exchange``) and the old one,
    now under the staging name, is removed; at no instant is ``target`` missing or mixed. Where
    the platform has no exchange, the old tree is renamed aside (``aside_name``) first and
    removed only after the new one is in place; a crash between the two renames leaves it there
    and the next kerascnn command on ``target`` puts it back (``recover_replaced``).
    ``replaceable(path)`` (when given) returns None when ``path`` may be replaced, else the
    reason it may not (raised as PermissionError; nothing is touched). It is asked before, and
    again about the old tree after it left ``target``: a file added in between puts it back.
    """
    staging, target = Path(staging), Path(target)
    if not (target.exists() or target.is_symlink()):
        os.rename(staging, target)
        _fsync_dir(target.parent)
        return
    if not force:
        raise FileExistsError(str(target))
    reason = replaceable(target) if replaceable is not None else None
    if reason:
        raise PermissionError(reason)
    if exchange(staging, target):
        old, swapped = staging, True
    else:
        old, swapped = aside_name(target), False
        os.rename(target, old)
        os.rename(staging, target)
    late = replaceable(old) if replaceable is not None else None
    if late:    # changed between the check and the swap: the old tree goes back, the new one is dropped
        if swapped:
            exchange(staging, target)
        else:
            os.rename(target, staging)
            os.rename(old, target)
        raise PermissionError(late.replace(str(old), str(target)))
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover_replaced(target: str | os.PathLike, owned) -> list:
    """Finish what a crashed two-rename replacement of ``target`` left (``commit_dir``'s fallback):
    each ``.NAME.old-PID-HEX8`` beside it whose process is gone and that ``owned(path)`` proves is
    kerascnn's is put back when ``target`` is missing, else deleted (the new tree landed).
    Returns the [(what, path)] done. Anything else is left alone."""
    target = Path(target)
    directory = target.parent
    pattern = re.escape(f".{target.name}{OLD_MARK}") + r"([0-9]{1,10})-[0-9a-f]{8}"
    done = []
    try:
        entries = sorted(directory.iterdir(), key=lambda p: -p.lstat().st_mtime_ns)
    except OSError:
        return done
    for p in entries:
        m = re.fullmatch(pattern, p.name)
        if not m or p.is_symlink() or not p.is_dir() or pid_alive(int(m.group(1))) or not owned(p):
            continue
        if target.exists() or target.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
            done.append(("removed", p))
        else:
            os.rename(p, target)
            done.append(("restored", target))
    return done


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
