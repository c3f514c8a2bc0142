"""Runs one command as N cooperating JAX processes on this machine: multi-host, without the hosts.

    python launch/local_multiprocess.py --num_processes 2 --devices_per_process 2 -- \\
        python -m mdg.main --config configs/ae.py:tiny --workdir /tmp/mdg_2proc

Every process gets ``JAX_COORDINATOR_ADDRESS=127.0.0.1:<free port>``, ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID``; ``mdg.sharding.initialize_distributed`` hands them to
``jax.distributed.initialize``, after which the processes form one global device mesh exactly
as separate hosts would (CPU cross-process collectives use gloo, jax's default).

``--devices_per_process K`` runs on CPU with K fake devices per process (``JAX_PLATFORMS=cpu``,
``JAX_NUM_CPU_DEVICES=K``), so a laptop can check multi-host code paths. ``--one_gpu_per_process``
gives process i only GPU i (``JAX_LOCAL_DEVICE_IDS=i``, read by ``jax.distributed.initialize``).

Output is forwarded line by line with a ``[pI] `` prefix. When any process fails (or the
``--timeout_s`` passes), the others are killed and the launcher exits with the failing
process's code (124 on timeout), so a crash on one "host" never leaves the rest hanging in a
collective.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TextIO

TIMEOUT_EXIT_CODE = 124   # what coreutils' timeout(1) returns
KILL_GRACE_S = 5.0        # SIGTERM first, so the processes can flush; SIGKILL after this


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_env(base: Mapping[str, str], coordinator_address: str, num_processes: int,
                process_id: int, devices_per_process: int | None = None,
                one_gpu_per_process: bool = False) -> dict[str, str]:
    """The environment of process ``process_id``: ``base`` plus the JAX multi-process variables."""
    env = dict(base)
    env.update(JAX_COORDINATOR_ADDRESS=coordinator_address, JAX_NUM_PROCESSES=str(num_processes),
               JAX_PROCESS_ID=str(process_id), PYTHONUNBUFFERED="1")
    if devices_per_process:
        env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices_per_process))
    if one_gpu_per_process:
        env["JAX_LOCAL_DEVICE_IDS"] = str(process_id)
    return env


def _forward(stream: TextIO, prefix: str, output: TextIO, lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            output.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
            output.flush()


def _signal_groups(procs: Sequence[subprocess.Popen], sig: int) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, sig)   # each process leads its own group (start_new_session)
        except ProcessLookupError:
            pass


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    """Ends every still-running process and whatever it started: SIGTERM, then SIGKILL."""
    running = [p for p in procs if p.poll() is None]
    _signal_groups(running, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_S
    for p in running:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            pass
    stubborn = [p for p in running if p.poll() is None]
    _signal_groups(stubborn, signal.SIGKILL)
    for p in stubborn:
        p.wait()


def exit_code(returncode: int) -> int:
    """A process's return code as a shell exit status (killed by signal N -> 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def run(command: Sequence[str], num_processes: int, devices_per_process: int | None = None,
        one_gpu_per_process: bool = False, timeout_s: float | None = None,
        output: TextIO | None = None, env: Mapping[str, str] | None = None) -> int:
    """Runs ``command`` as ``num_processes`` JAX processes; returns 0 if all succeed.

    Otherwise returns the exit status of the first process to fail (``TIMEOUT_EXIT_CODE`` if
    ``timeout_s`` seconds pass first), after killing the others. Output goes to ``output``
    (default ``sys.stdout``); ``env`` defaults to this process's environment.
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if not command:
        raise ValueError("no command to run (put it after --)")
    coordinator_address = f"127.0.0.1:{free_port()}"
    base_env = os.environ if env is None else env
    output = sys.stdout if output is None else output
    procs, threads = [], []
    lock = threading.Lock()
    try:
        for i in range(num_processes):
            proc = subprocess.Popen(
                list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                errors="replace", start_new_session=True,
                env=process_env(base_env, coordinator_address, num_processes, i,
                                devices_per_process, one_gpu_per_process))
            procs.append(proc)
            thread = threading.Thread(target=_forward, args=(proc.stdout, f"[p{i}] ", output, lock),
                                      daemon=True)
            thread.start()
            threads.append(thread)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        status = None
        while status is None:
            codes = [p.poll() for p in procs]
            failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                status = exit_code(codes[failed[0]])
                _report(output, lock, f"process {failed[0]} exited with status {status}; "
                                      "stopping the others")
            elif all(c == 0 for c in codes):
                status = 0
            elif deadline is not None and time.monotonic() > deadline:
                status = TIMEOUT_EXIT_CODE
                _report(output, lock, f"timeout after {timeout_s:g} s; stopping all processes")
            else:
                time.sleep(0.05)
    finally:
        _stop(procs)
        for thread in threads:
            thread.join(timeout=KILL_GRACE_S)
    return status


def _report(output: TextIO, lock: threading.Lock, message: str) -> None:
    with lock:
        output.write(f"[launcher] {message}\n")
        output.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run a command as N JAX processes on this machine (local multi-host).",
        usage="%(prog)s --num_processes N [options] -- COMMAND [ARGS ...]")
    parser.add_argument("--num_processes", "-n", type=int, required=True)
    parser.add_argument("--devices_per_process", type=int, default=None,
                        help="run on CPU with this many fake devices per process")
    parser.add_argument("--one_gpu_per_process", action="store_true",
                        help="process i sees only GPU i (JAX_LOCAL_DEVICE_IDS=i)")
    parser.add_argument("--timeout_s", type=float, default=None,
                        help="kill everything after this many seconds (exit status 124)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given; put it after --")
    if args.devices_per_process is not None and args.devices_per_process < 1:
        parser.error("--devices_per_process must be >= 1")
    # SIGTERM (scheduler, CI, kill) becomes SystemExit, so run() still stops the processes it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        return run(command, args.num_processes, args.devices_per_process, args.one_gpu_per_process,
                   args.timeout_s)
    except KeyboardInterrupt:   # run() has stopped the processes on its way out
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
