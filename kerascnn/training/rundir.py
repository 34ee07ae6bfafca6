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
    """An exclusive ``flock`` on ``RUN/.kerascnn.lock`` for the life of this object (or the process)."""

    def __init__(self, run_dir: Path, create_exclusive: bool = False):
        import fcntl

        self.path = Path(run_dir) / LOCK_FILE
        flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if create_exclusive else 0)
        try:
            self.fd = os.open(self.path, flags, 0o644)
        except FileExistsError:
            raise ConfigError(f"--run-dir {run_dir} was claimed by another kerascnn process a moment ago; "
                              f"choose another directory") from None
        except OSError as e:
            raise ConfigError(f"{run_dir}: cannot create the run lock ({e.strerror})") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = f" (pid {int(os.pread(self.fd, 32, 0).decode().split()[0])})"
            os.close(self.fd)
            self.fd = None
            raise ConfigError(f"{run_dir} is being trained by another kerascnn process{holder}; wait for it to "
                              f"finish or stop it first") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)   # closing the descriptor drops the flock
            self.fd = None

    def __del__(self):
        self.release()


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
    return True


def claim_new(run_dir: Path) -> RunLock:
    """Claim ``run_dir`` for a new run: create it, or take it when it exists and is empty (or holds
    only the lock file of a kerascnn run that stopped before writing anything)."""
    run_dir = Path(run_dir)
    if check_claimable(run_dir):
        if (run_dir / LOCK_FILE).exists():
            return RunLock(run_dir)    # refused while another process holds it
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
