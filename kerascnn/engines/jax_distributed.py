"""Joining a multi-process JAX run (``jax.distributed``, the JAX counterpart of ``TF_CONFIG``).

``distributed_settings`` reads ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID`` (or, with ``KERASCNN_JAX_DISTRIBUTED=1``, lets JAX detect a Slurm/Open MPI/
Kubernetes cluster); ``init_distributed`` calls ``jax.distributed.initialize`` with them before any
device is touched (on CPUs with gloo collectives). Pure Python until JAX is imported inside
``init_distributed``; ``kerascnn.engines.jax`` re-exports both names.
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


def init_distributed(env=None, initialize=None, configure=None) -> bool:
    """Join the multi-process run the environment describes (``distributed_settings``); must run
    before any JAX device use. Once per process; True when this is a multi-process run.
    ``initialize``/``configure`` stand in for ``jax.distributed.initialize``/``jax.config.update``
    in tests."""
    settings = distributed_settings(env)
    if settings is None:
        return False
    if _DISTRIBUTED:
        return True
    if initialize is None or configure is None:
        import jax

        initialize = initialize or jax.distributed.initialize
        configure = configure or jax.config.update
    configure("jax_cpu_collectives_implementation", "gloo")   # CPU processes talk through gloo
    initialize(**settings)
    _DISTRIBUTED.append(settings)
    return True
