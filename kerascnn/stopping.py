"""Stop requests (SIGTERM, SIGHUP): always the one-line message and exit 128 + signal number.

Python runs a signal handler in the main thread, between two bytecodes. The handler raises
``errors.Stopped`` (a KeyboardInterrupt), so a command unwinds like Ctrl-C: ``finally`` blocks and
partial-file cleanup run, and the CLI prints ``Error: stopped (SIGTERM)`` and exits 143. Two ways
that can fail, both handled here:

* The handler runs inside a garbage-collection callback (JAX registers one; ``import torch``
  and XLA start-up collect a lot), a ``__del__`` or a weakref callback. Python cannot propagate an
  exception from there: it prints "Exception ignored in ..." and carries on. ``sys.unraisablehook``
  is wrapped: a ``Stopped`` (or KeyboardInterrupt) that lands there is not printed, and the same
  signal is raised again in the main thread a moment later (``_thread.interrupt_main``), once
  the callback has returned.
* A second stop request while the first one unwinds is not raised again (its cleanup runs on).
* The main thread is blocked in C or C++ (a TensorFlow iterator waiting on its threads, a JAX
  collective) and never gets back to Python to run the handler. ``signal.set_wakeup_fd`` makes
  the C-level handler write the signal number into a pipe that a watchdog thread reads: when the
  process has not ended ``STOP_TIMEOUT`` seconds (``KERASCNN_STOP_TIMEOUT``) after the first stop
  request, the watchdog prints the one line (unless the CLI already did) and ends the process
  with ``os._exit(128 + signal)``. Safe because every write kerascnn makes survives SIGKILL
  (temporary names renamed into place); leftovers are swept by the next command.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

from kerascnn.errors import Stopped

SIGNALS = {"SIGTERM": 15, "SIGHUP": 1}
STOP_TIMEOUT = 10.0       # seconds from the stop request to the forced exit

_reported = threading.Event()     # the one line has been printed
_report_lock = threading.Lock()
_installed = []


def stop_timeout(env=None) -> float:
    env = os.environ if env is None else env
    try:
        value = float(env.get("KERASCNN_STOP_TIMEOUT", "") or STOP_TIMEOUT)
    except ValueError:
        return STOP_TIMEOUT
    return value if 0 < value <= 3600 else STOP_TIMEOUT


def report(line: str) -> None:
    """Print ``Error: <line>`` on stderr; once per process when ``install`` ran (the CLI or the
    watchdog, whoever is first)."""
    with _report_lock:
        if _reported.is_set() and _installed:
            return
        _reported.set()
        try:
            sys.stderr.write(f"Error: {line}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


_stopping = []     # the stop request being unwound (a second one does not interrupt its cleanup)


def _raise_stopped(signum, frame):
    if _stopping:        # cleanup of the first request runs on; the watchdog keeps the deadline
        return
    _stopping.append(signum)
    raise Stopped(signal.Signals(signum).name)


def _unraisable(previous):
    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, KeyboardInterrupt):     # Stopped, or Ctrl-C, swallowed by a callback or __del__
            signum = SIGNALS.get(getattr(exc, "signal_name", ""), signal.SIGINT)
            _stopping.clear()                      # it did not unwind anything: raise it again
            threading.Thread(target=_interrupt_later, args=(int(signum),), daemon=True).start()
            return
        previous(unraisable)

    return hook


def _interrupt_later(signum: int) -> None:
    import _thread
    import time

    time.sleep(0.02)             # let the callback that swallowed it return first
    _thread.interrupt_main(signum)


def _watch(read_fd: int) -> None:
    """Wait for the first SIGTERM/SIGHUP on the wakeup pipe; then give the main thread
    ``stop_timeout()`` seconds to end the process, else end it here."""
    import time

    wanted = set(SIGNALS.values())
    while True:
        try:
            data = os.read(read_fd, 64)
        except InterruptedError:
            continue
        except OSError:
            return
        hit = [b for b in data if b in wanted]
        if hit:
            break
    signum = hit[0]
    time.sleep(stop_timeout())
    report(f"stopped ({signal.Signals(signum).name})")
    os._exit(128 + signum)


def install() -> None:
    """SIGTERM (and SIGHUP) raise ``Stopped`` in the main thread; swallowed ones are raised again;
    a watchdog ends the process when the main thread cannot. Main thread only; once."""
    if threading.current_thread() is not threading.main_thread() or _installed:
        return
    for name in SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_stopped)
    sys.unraisablehook = _unraisable(sys.unraisablehook)
    try:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except (OSError, ValueError):
        return
    threading.Thread(target=_watch, args=(read_fd,), name="kerascnn-stop-watchdog", daemon=True).start()
    _installed.append((read_fd, write_fd))
