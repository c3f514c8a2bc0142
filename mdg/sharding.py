"""Device mesh, shardings and multi-host start-up: the one place that knows about devices.

Data parallelism the way current JAX spells it: a 1-D mesh over every device with one axis,
``data``; the batch is sharded over that axis and parameters are replicated. ``jax.jit`` then
compiles one SPMD program for all devices (what ``pmap`` used to do), on CPU, GPU or TPU alike.
With several processes (multi-host), each process feeds its own slice of the global batch.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed() -> None:
    """Starts jax.distributed when launched as one of several processes, else does nothing.

    - ``JAX_NUM_PROCESSES`` > 1 (set by ``launch/local_multiprocess.py``, or by hand): the
      process count, ``JAX_PROCESS_ID`` and ``JAX_COORDINATOR_ADDRESS`` ("host:port") come from
      the environment. jax 0.10 reads only the address by itself, so all three are passed.
    - SLURM with more than one task, or ``MDG_DISTRIBUTED=auto`` (Cloud TPU VM pods, Open MPI):
      ``jax.distributed.initialize()`` detects everything itself.

    Raises ValueError when ``JAX_NUM_PROCESSES`` > 1 but the id or address is missing or bad.
    """
    num_processes = int(os.environ.get("JAX_NUM_PROCESSES", "1"))
    if num_processes > 1:
        address, process_id = os.environ.get("JAX_COORDINATOR_ADDRESS"), os.environ.get("JAX_PROCESS_ID")
        if not address or process_id is None or not process_id.isdigit():
            raise ValueError(
                f"JAX_NUM_PROCESSES={num_processes} needs JAX_COORDINATOR_ADDRESS (host:port, got "
                f"{address!r}) and JAX_PROCESS_ID (0..{num_processes - 1}, got {process_id!r})")
        jax.distributed.initialize(address, num_processes, int(process_id))
    # A one-task SLURM job stays single-process: auto-detection would also hide all but one GPU.
    elif (int(os.environ.get("SLURM_NTASKS", "1")) > 1
          or os.environ.get("MDG_DISTRIBUTED") == "auto"):
        jax.distributed.initialize()
    logging.info(
        "process %d of %d; %d local / %d global devices: %s",
        jax.process_index(), jax.process_count(), jax.local_device_count(),
        jax.device_count(), jax.devices())


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh with axis ``data`` over all devices, or ``num_devices`` of them.

    With several processes, every process must take part (each feeds its own share of every
    batch), so ``num_devices`` is split evenly: the first ``num_devices / process_count`` local
    devices of each process. A count that cannot be split so is a clear error.
    """
    devices = jax.devices()
    if not num_devices:
        return Mesh(np.asarray(devices), (DATA_AXIS,))
    if num_devices > len(devices):
        raise ValueError(f"train.num_devices={num_devices}, but only {len(devices)} devices exist")
    processes = jax.process_count()
    if processes > 1:
        per_process = num_devices // processes
        if num_devices % processes or per_process > jax.local_device_count():
            raise ValueError(
                f"train.num_devices={num_devices} cannot be split evenly over the {processes} processes "
                f"({jax.local_device_count()} devices each): every process must own the same number of "
                f"mesh devices; use a multiple of {processes} up to {len(devices)}, or 0 for all devices")
        devices = [d for p in range(processes) for d in [d for d in devices if d.process_index == p][:per_process]]
    else:
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device (parameters, optimizer state)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading (batch) dimension over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """Returns the per-process batch size; the global batch must split evenly over devices."""
    if global_batch_size % mesh.size:
        raise ValueError(
            f"batch size {global_batch_size} does not divide evenly over {mesh.size} devices")
    return global_batch_size // jax.process_count()


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Process-local numpy batch (pytree) -> global jax arrays sharded over ``data``.

    Each process passes its own slice; the global batch is their concatenation.
    """
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Puts a pytree on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))
