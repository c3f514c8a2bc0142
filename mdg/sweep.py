"""Ablation sweeps: ``python -m mdg.sweep --config configs/sweeps/NAME.py[:variant] --workdir DIR``.

Runs every (variant, seed) of the sweep config as its own ``python -m mdg.main`` process in
``DIR/<variant>/seed_<N>`` and then writes ``DIR/comparison.{md,csv,png}`` (:mod:`mdg.compare`).

- Resumable: a run whose ``results/summary.json`` exists is skipped; an unfinished one is started
  again with the same command and resumes from its checkpoints.
- ``--parallel N`` runs N at once on this machine (the data is prepared once, before).
- ``--print_commands`` writes ``DIR/commands.txt``, one run per line, and stops: hand the lines to
  a SLURM array or TPU launcher (``launch/sweep_array.sbatch``), then run the sweep again with
  ``--collect`` to write the comparison (of the finished runs; the ``seeds`` column counts them).
- TensorBoard: every run writes ``<run>/tensorboard``, so ``tensorboard --logdir DIR`` compares them.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
import shlex
import subprocess
import sys
import threading
import time

from absl import app, flags
from ml_collections import config_flags

from mdg import compare
from mdg.evaluate import write_atomic

_CONFIG = config_flags.DEFINE_config_file("config", None, "Sweep config, e.g. configs/sweeps/dg_losses.py[:tiny].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep folder; one subfolder per run.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Runs at once on this machine.")
_PRINT = flags.DEFINE_bool("print_commands", False, "Write DIR/commands.txt and stop.")
_COLLECT = flags.DEFINE_bool("collect", False, "Only write the comparison of finished runs.")


@dataclasses.dataclass(frozen=True)
class Run:
    variant: str
    seed: int
    arguments: tuple[str, ...]    # config file[:variant] and overrides

    @property
    def directory(self) -> str:
        return f"{self.variant}/seed_{self.seed}"

    def command(self, sweep_dir: pathlib.Path, mode: str = "all") -> list[str]:
        config, *overrides = self.arguments
        return [sys.executable, "-m", "mdg.main", "--config", config, "--workdir",
                str(sweep_dir / self.directory), f"--config.seed={self.seed}", f"--mode={mode}", *overrides]


def sweep_runs(config) -> list[Run]:
    """Every (variant, seed) of the sweep config, seed by seed (so a sweep stopped early has every
    variant at the same number of seeds), variants in config order."""
    return [Run(name, int(seed), tuple(shlex.split(arguments)))
            for seed in config.seeds for name, arguments in config.variants.items()]


def is_finished(sweep_dir: pathlib.Path, run: Run) -> bool:
    results = sweep_dir / run.directory / "results"
    return (results / "summary.json").is_file() and (results / "clips.parquet").is_file()


def execute(run: Run, sweep_dir: pathlib.Path, mode: str = "all") -> tuple[int, float]:
    """Runs one ``mdg.main`` process, its output in ``<run>/sweep_output.txt``; (status, seconds)."""
    out_dir = sweep_dir / run.directory
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(out_dir / "sweep_output.txt", "ab") as log:
        status = subprocess.run(run.command(sweep_dir, mode), stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ)).returncode
    return status, time.perf_counter() - start


def run_all(config, sweep_dir: pathlib.Path, parallel: int) -> list[Run]:
    """Runs the unfinished runs; returns the ones that failed."""
    runs = sweep_runs(config)
    pending = [r for r in runs if not is_finished(sweep_dir, r)]
    print(f"sweep {sweep_dir}: {len(runs)} runs, {len(runs) - len(pending)} finished, {len(pending)} to run",
          flush=True)
    # Prepare each distinct dataset once, so parallel runs never build the same cache together.
    prepared = set()
    for run in pending:
        if run.arguments not in prepared:
            prepared.add(run.arguments)
            status, _ = execute(run, sweep_dir, mode="prepare")
            if status:
                print(f"{run.directory}: preparing the data failed (status {status}); see "
                      f"{sweep_dir / run.directory / 'sweep_output.txt'}", flush=True)
    failed, done, lock = [], [0], threading.Lock()

    def one(run: Run) -> None:
        status, seconds = execute(run, sweep_dir)
        with lock:
            done[0] += 1
            result = "done" if status == 0 else f"FAILED (status {status}, see {run.directory}/sweep_output.txt)"
            print(f"[{done[0]}/{len(pending)}] {run.directory}: {result} in {seconds:.0f} s", flush=True)
            if status:
                failed.append(run)

    with concurrent.futures.ThreadPoolExecutor(max(parallel, 1)) as pool:
        list(pool.map(one, pending))
    return failed


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config, sweep_dir = _CONFIG.value, pathlib.Path(_WORKDIR.value)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if _PRINT.value:
        lines = [shlex.join(r.command(sweep_dir)) for r in sweep_runs(config)]
        write_atomic(sweep_dir / "commands.txt", "\n".join(lines) + "\n")
        print(f"{len(lines)} commands in {sweep_dir / 'commands.txt'}")
        return 0
    start = time.perf_counter()
    if not _COLLECT.value:
        failed = run_all(config, sweep_dir, _PARALLEL.value)
        if failed:
            print(f"{len(failed)} run(s) failed; fix and run the same command again (finished runs are kept)")
            return 1
    unfinished = [r.directory for r in sweep_runs(config) if not is_finished(sweep_dir, r)]
    if unfinished:
        print(f"not finished, left out of the comparison: {', '.join(unfinished)}")
    run_dirs = {}
    for run in sweep_runs(config):
        if is_finished(sweep_dir, run):
            run_dirs.setdefault(run.variant, []).append(run.directory)
    print(compare.write_comparison(sweep_dir, run_dirs, config.baseline, config.bootstrap))
    print(f"comparison: {sweep_dir / 'comparison.md'} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(lambda argv: sys.exit(main(argv)))
