"""Joining a multi-process JAX run (``jax.distributed``, the JAX counterpart of ``TF_CONFIG``).

``distributed_settings`` reads ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID`` (or, with ``KERASCNN_JAX_DISTRIBUTED=1``, lets JAX detect a Slurm/Open MPI/
Kubernetes cluster); ``init_distributed`` calls ``jax.distributed.initialize`` with them before any
device is touched (on CPUs with gloo collectives). Pure Python until JAX is imported inside
``init_distributed``; ``kerascnn.engines.jax`` re-exports both names.

The join is bounded: every process must have joined within ``KERASCNN_JAX_JOIN_TIMEOUT`` seconds
(``JOIN_TIMEOUT`` = 120 by default). JAX's own limit (``initialization_timeout``) ends the process
with a native abort and a C++ stack trace, so kerascnn's deadline comes first: a watchdog thread
prints one ``Error:`` line naming the coordinator address and exits 1 (nothing is written
before the join: it happens before the run directory is claimed).
"""
from __future__ import annotations

import os


def distributed_settings(env=None):
    """The keyword arguments of ``jax.distributed.initialize`` this process's environment asks
    for, or None for a single-process run. ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0),
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``, as given (JAX detects what is left out on a
    known cluster); ``JAX_NUM_PROCESSES=1`` is one process; ``KERASCNN_JAX_DISTRIBUTED=1``
    alone: ``{}``, JAX's own cluster auto-detection (Slurm, Open MPI, Kubernetes, TPU pods)."""
    from kerascnn.errors import ConfigError

    env = os.environ if env is None else env
    out = {}
    if env.get("JAX_COORDINATOR_ADDRESS"):
        addr = env["JAX_COORDINATOR_ADDRESS"]
        if ":" not in addr:
            raise ConfigError(f"JAX_COORDINATOR_ADDRESS must be host:port (process 0's); received {addr!r}")
        out["coordinator_address"] = addr
    for var, key in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        if env.get(var, "") != "":
            try:
                out[key] = int(env[var])
            except ValueError:
                raise ConfigError(f"{var} must be an integer; received {env[var]!r}") from None
    n, pid = out.get("num_processes"), out.get("process_id")
    if n is not None and n < 1:
        raise ConfigError(f"JAX_NUM_PROCESSES must be at least 1; received {n}")
    if pid is not None and (pid < 0 or (n is not None and pid >= n)):
        raise ConfigError(f"JAX_PROCESS_ID must be in 0..{(n or 1) - 1}; received {pid}")
    if out:
        return None if n == 1 else out
    return {} if env.get("KERASCNN_JAX_DISTRIBUTED", "") not in ("", "0") else None


_DISTRIBUTED = []
JOIN_TIMEOUT = 120.0        # seconds; KERASCNN_JAX_JOIN_TIMEOUT overrides
JAX_MARGIN = 30             # JAX's own initialization_timeout is this much later than kerascnn's


def join_timeout(env=None) -> float:
    """Seconds every process has to join (``KERASCNN_JAX_JOIN_TIMEOUT``, default ``JOIN_TIMEOUT``)."""
    from kerascnn.errors import ConfigError

    env = os.environ if env is None else env
    text = env.get("KERASCNN_JAX_JOIN_TIMEOUT", "")
    if text == "":
        return JOIN_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:
        raise ConfigError(f"KERASCNN_JAX_JOIN_TIMEOUT must be seconds in (0, 86400]; received {text[:40]!r}")
    return value


def _join_failed(settings: dict, seconds: float, cause: str) -> str:
    where = settings.get("coordinator_address") or "the address JAX detected for this cluster"
    who = (f"process {settings['process_id']} of {settings['num_processes']}"
           if "process_id" in settings and "num_processes" in settings else "this process")
    return (f"jax.distributed: {who} could not join the run at the coordinator {where} within {seconds:g} s "
            f"({cause}); start every process with the same JAX_COORDINATOR_ADDRESS (process 0 serves it), "
            f"or wait longer with KERASCNN_JAX_JOIN_TIMEOUT=SECONDS")


def _watchdog(settings: dict, seconds: float):
    """A daemon thread that ends the process with one ``Error:`` line when the join is not done
    within ``seconds`` (JAX blocks in C++ there, where no Python exception can reach); returns
    the Event that tells it the join is done."""
    import sys
    import threading

    done = threading.Event()

    def watch():
        if not done.wait(seconds):
            sys.stderr.write(f"Error: {_join_failed(settings, seconds, 'no answer from every process')}\n")
            sys.stderr.flush()
            os._exit(1)

    threading.Thread(target=watch, name="kerascnn-jax-join-watchdog", daemon=True).start()
    return done


def init_distributed(env=None, initialize=None, configure=None) -> bool:
    """Join the multi-process run the environment describes (``distributed_settings``); must run
    before any JAX device use. Once per process; True when this is a multi-process run.
    ``initialize``/``configure`` stand in for ``jax.distributed.initialize``/``jax.config.update``
    in tests."""
    from kerascnn.errors import TrainingError, first_line

    settings = distributed_settings(env)
    if settings is None:
        return False
    if _DISTRIBUTED:
        return True
    seconds = join_timeout(env)
    if initialize is None or configure is None:
        import jax

        initialize = initialize or jax.distributed.initialize
        configure = configure or jax.config.update
    configure("jax_cpu_collectives_implementation", "gloo")   # CPU processes talk through gloo
    done = _watchdog(settings, seconds)
    try:
        initialize(**settings, initialization_timeout=int(seconds) + JAX_MARGIN)
    except (RuntimeError, ValueError) as e:     # JAX's own errors that reach Python (bad address ...)
        raise TrainingError(_join_failed(settings, seconds, first_line(e, 160))) from None
    finally:
        done.set()
    _DISTRIBUTED.append(settings)
    return True
