"""The run directory's lifecycle (pure Python): who may write into it, and when.

Ownership rules (issue 13):

* A new run claims its directory exclusively: a directory kerascnn creates, or an existing
  EMPTY one named with ``--run-dir``. Anything else is refused in one line that names what is
  there; nothing in it is touched.
* While a process trains a run it holds an ``fcntl.flock`` on ``RUN/.kerascnn.lock`` (also
  across ``--resume``); a second process on the same run is refused in one line. The lock is
  released when the process ends, however it ends (SIGKILL included).
* Leftovers of interrupted writes are removed only when their names are kerascnn's own
  (``.<one of kerascnn's file stems>.partial-PID-XXXXXXXXyyyyyyyy<suffix>``, see
  ``fsutil.partial_prefix``; one sweep, ``fsutil.sweep_partials``, for run directories and
  exports); a user's file that merely looks like a partial is left alone.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from kerascnn import fsutil
from kerascnn.errors import ConfigError
from kerascnn.training.record import CONFIG_FILE

LOCK_FILE = ".kerascnn.lock"
STATE_FILE = "backup/state.npz"
# the files a run directory may hold, and the stems of their atomic-write temporaries
OWN_STEMS = ("config", "best", "last", "history", "metrics", "curves", "state")
PROGRESS_FILES = ("history.csv", "best.keras", "last.keras", "metrics.json")


def _listing(path: Path, limit: int = 4) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} entries)" if len(names) > limit else "")


class RunLock:
    """An exclusive ``flock`` on ``RUN/.kerascnn.lock`` for the life of this object (or the process).

    The lock file is kerascnn's own: created with ``O_CREAT | O_EXCL`` or, when it exists, opened
    with ``O_NOFOLLOW`` and accepted only as a regular file with one link that holds nothing but
    a pid (what kerascnn writes there). A symbolic link (dangling or not), a directory, a FIFO, a
    hard link to another file or a file with other contents is refused in one line and never
    truncated or written (issue 21)."""

    def __init__(self, run_dir: Path, create_exclusive: bool = False):
        import fcntl

        self.fd = None          # first: __del__ runs even when __init__ raises
        self.path = Path(run_dir) / LOCK_FILE
        self.fd = self._open(Path(run_dir), create_exclusive)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = f" (pid {int(os.pread(self.fd, 32, 0).decode().split()[0])})"
            self.release()
            raise ConfigError(f"{run_dir} is being trained by another kerascnn process{holder}; wait for it to "
                              f"finish or stop it first") from None
        os.ftruncate(self.fd, 0)   # ours (checked in _open) and held: now the holder's pid
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def _open(self, run_dir: Path, create_exclusive: bool) -> int:
        base = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        if create_exclusive or not os.path.lexists(self.path):
            try:
                return os.open(self.path, base | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if create_exclusive:
                    os.close(_open_lock(self.path, os.O_RDONLY))   # raises when it is not kerascnn's lock
                    raise ConfigError(f"--run-dir {run_dir} was claimed by another kerascnn process a moment "
                                      f"ago; choose another directory") from None
            except OSError as e:
                raise ConfigError(f"{run_dir}: cannot create the run lock ({e.strerror})") from None
        return _open_lock(self.path, base)

    def release(self) -> None:
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)   # closing the descriptor drops the flock
            self.fd = None

    def __del__(self):
        self.release()


def _not_ours(path: Path, what: str) -> ConfigError:
    return ConfigError(f"{path} {what}, not kerascnn's run lock; it was left as it is (move it away and try again)")


def _open_lock(path: Path, flags: int) -> int:
    """Open an existing lock file only when it is kerascnn's (see ``RunLock``); else one-line ConfigError."""
    import stat

    try:
        st = os.lstat(path)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the run lock ({e.strerror})") from None
    kind = ("is a symbolic link" if stat.S_ISLNK(st.st_mode) else "is a directory" if stat.S_ISDIR(st.st_mode)
            else None if stat.S_ISREG(st.st_mode) else "is not a regular file")
    if kind:        # checked before opening: no open() on a FIFO, device or link
        raise _not_ours(path, kind)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise _not_ours(path, f"cannot be opened ({e.strerror})") from None
    try:
        now = os.fstat(fd)
        problem = None
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(now.st_mode):
            problem = "was replaced while kerascnn opened it"
        elif now.st_nlink != 1:
            problem = f"has {now.st_nlink} hard links (another file's name)"
        elif now.st_size > 24 or not re.fullmatch(rb"(\d{1,12}\n?)?", os.pread(fd, 32, 0)):
            problem = f"holds {now.st_size:,} bytes that kerascnn did not write (its lock holds a pid)"
        if problem:
            raise _not_ours(path, problem)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_lock_file(run_dir: Path) -> None:
    """Refuse (one line) a ``RUN/.kerascnn.lock`` that kerascnn did not make; cheap (no TensorFlow),
    nothing is written. Absent is fine."""
    path = Path(run_dir) / LOCK_FILE
    if os.path.lexists(path):
        os.close(_open_lock(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))


def check_claimable(run_dir: Path) -> bool:
    """Refuse (one line) a ``--run-dir`` that is neither absent nor empty; True when it exists.
    Cheap: the CLI calls it before TensorFlow loads, ``claim_new`` again when it claims."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return False
    if not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir} is a file, not a directory")
    entries = [p.name for p in run_dir.iterdir()]
    if (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"--run-dir {run_dir} already holds a run; resume it with --resume {run_dir} "
                          f"or choose another directory")
    if entries and entries != [LOCK_FILE]:
        raise ConfigError(f"--run-dir {run_dir} is not empty (it holds {_listing(run_dir)}); kerascnn "
                          f"writes only into a new or empty directory")
    check_lock_file(run_dir)
    return True


def claim_new(run_dir: Path) -> RunLock:
    """Claim ``run_dir`` for a new run: create it, or take it when it exists and is empty (or holds
    only the lock file of a kerascnn run that stopped before writing anything)."""
    run_dir = Path(run_dir)
    if check_claimable(run_dir):
        if os.path.lexists(run_dir / LOCK_FILE):
            return RunLock(run_dir)    # refused while another process holds it, or when it is not ours
        return RunLock(run_dir, create_exclusive=True)
    try:
        run_dir.mkdir(parents=True)
    except FileExistsError:
        return claim_new(run_dir)      # created by someone else a moment ago: check it again
    except OSError as e:
        raise ConfigError(f"--run-dir {run_dir}: cannot create it ({e.strerror})") from None
    return RunLock(run_dir, create_exclusive=True)


def lock_existing(run_dir: Path) -> RunLock:
    """Lock an existing run for ``--resume`` (old runs without a lock file get one)."""
    return RunLock(Path(run_dir))


def read_state_meta(run_dir: Path) -> dict:
    """The ``meta`` record of the run's training state (epoch, best, history, optimizer), NumPy only."""
    import json

    import numpy as np

    from kerascnn.errors import TrainingError

    path = Path(run_dir) / STATE_FILE
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
        int(meta["epoch"])
        return meta
    except Exception as e:
        raise TrainingError(f"{path}: cannot read the training state ({e.__class__.__name__}); it does not match "
                            f"this model or is damaged") from None


def check_resumable(run_dir: Path) -> bool:
    """True when the run has a training state to resume from; False when it has nothing yet (it
    stopped before its first epoch completed). A run with progress but no state is refused: it
    cannot be continued exactly, and starting again would overwrite it."""
    run_dir = Path(run_dir)
    check_lock_file(run_dir)
    for name, what in (("tb", "the TensorBoard logs"), ("backup", "the training state")):
        p = run_dir / name
        if (p.exists() or p.is_symlink()) and (p.is_symlink() or not p.is_dir()):
            raise ConfigError(f"--resume {run_dir}: {p} is not a folder, but kerascnn keeps {what} there; "
                              f"move it away and resume again (nothing was changed)")
    if (run_dir / STATE_FILE).is_file():
        return True
    present = [f for f in PROGRESS_FILES if (run_dir / f).exists()]
    if present:
        raise ConfigError(f"--resume {run_dir}: the run has {', '.join(present)} but no {STATE_FILE} (the training "
                          f"state), so it cannot continue exactly and is left as it is; evaluate or export it as "
                          f"it is, or train again into a new directory with --config {run_dir / CONFIG_FILE}")
    return False


def sweep_own_partials(directory: Path) -> list:
    """Remove leftovers of kerascnn's interrupted atomic writes in a run directory (held under its
    lock, so this process's own leftovers go too); only names that match kerascnn's own
    temporaries of the run's files exactly, never anything else."""
    return fsutil.sweep_partials(directory, stems=OWN_STEMS, mine=True)
