"""Ablation sweeps: ``python -m mdg.sweep --config configs/sweeps/NAME.py[:variant] --workdir DIR``.

Runs every (variant, seed) of the sweep config as its own ``python -m mdg.main`` process in
``DIR/<variant>/seed_<N>`` and then writes ``DIR/comparison.{md,csv,png}`` (:mod:`mdg.compare`).

- Resumable: a run whose ``results/summary.json`` exists is skipped; an unfinished one is started
  again with the same command and resumes from its checkpoints.
- A finished run whose recorded config (``<run>/config.json``) differs from its command's only in
  the scoring settings (:data:`mdg.workdir_guard.SCORING_KEYS`, e.g. an added
  ``--config.eval.scores=...``) is re-scored with ``--mode evaluate``: its trained models are kept
  and the old results moved to ``<run>/replaced/``. One that differs in other keys is not run and
  counts as failed, with the differing keys.
- ``--parallel N`` runs N at once on this machine (the data is prepared once, before).
- ``--print_commands`` writes ``DIR/commands.txt``, one run per line, and stops: hand the lines to
  a SLURM array or TPU launcher (``launch/sweep_array.sbatch``), then run the sweep again with
  ``--collect`` to write the comparison (of the runs finished with their command's config; the
  ``seeds`` column counts them).
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

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from mdg import compare, workdir_guard
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

    @property
    def config_arguments(self) -> list[str]:
        """The run's config flags of ``mdg.main``: config file[:variant], seed and overrides."""
        config, *overrides = self.arguments
        return ["--config", config, f"--config.seed={self.seed}", *overrides]

    def command(self, sweep_dir: pathlib.Path, mode: str = "all") -> list[str]:
        return [sys.executable, "-m", "mdg.main", *self.config_arguments, "--workdir",
                str(sweep_dir / self.directory), f"--mode={mode}"]


def run_config(run: Run) -> ml_collections.ConfigDict:
    """The config that ``mdg.main`` builds from the run's command (its ``--config`` flag, locked)."""
    argv = ["mdg.main", *run.config_arguments]
    parsed = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=parsed, lock_config=True, sys_argv=argv)
    parsed(argv)
    return parsed.config


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


def plan(runs: list[Run], sweep_dir: pathlib.Path) -> tuple[list[tuple[Run, str]], list[Run]]:
    """What to do with each run: ([(run, mdg.main mode)] to run, finished runs not to run).

    An unfinished run is run ("all"); a finished one is skipped, re-scored ("evaluate") when its
    config differs from its command's in scoring keys only (:func:`mdg.workdir_guard.scoring_changes`),
    or refused when it differs in others (printed with the differing keys) or its command gives no
    config (printed with the error).
    """
    to_run, conflicting = [], []
    for run in runs:
        if not is_finished(sweep_dir, run):
            to_run.append((run, "all"))
            continue
        try:
            changes = workdir_guard.scoring_changes(run_config(run), sweep_dir / run.directory)
        except workdir_guard.WorkdirConfigError as error:
            conflicting.append(run)
            print(f"{run.directory}: not run: {error.problem}; move the run folder away to run it anew",
                  flush=True)
            continue
        except (flags.Error, ValueError, KeyError, AttributeError, TypeError) as error:
            conflicting.append(run)    # the sweep config's command for it is broken
            print(f"{run.directory}: not run: its command {shlex.join(run.config_arguments)!r} gives no "
                  f"config: {type(error).__name__}: {error}", flush=True)
            continue
        if changes:
            to_run.append((run, "evaluate"))
            print(f"{run.directory}: to re-score, its scoring settings changed: {changes}", flush=True)
    return to_run, conflicting


def run_all(config, sweep_dir: pathlib.Path, parallel: int) -> list[Run]:
    """Runs the unfinished runs and re-scores the finished ones whose scoring settings changed;
    returns the ones that failed (and the finished runs it could not run)."""
    runs = sweep_runs(config)
    to_run, conflicting = plan(runs, sweep_dir)
    rescored = sum(mode == "evaluate" for _, mode in to_run)
    finished = len(runs) - len(to_run) - len(conflicting)
    print(f"sweep {sweep_dir}: {len(runs)} runs, {finished} finished, {len(to_run) - rescored} to run, "
          f"{rescored} to re-score" + (f", {len(conflicting)} not run (see above)" if conflicting else ""),
          flush=True)
    # Prepare each distinct dataset once, so parallel runs never build the same cache together.
    prepared = set()
    for run, _ in to_run:
        if run.arguments not in prepared:
            prepared.add(run.arguments)
            status, _ = execute(run, sweep_dir, mode="prepare")
            if status:
                print(f"{run.directory}: preparing the data failed (status {status}); see "
                      f"{sweep_dir / run.directory / 'sweep_output.txt'}", flush=True)
    failed, done, lock = list(conflicting), [0], threading.Lock()

    def one(job: tuple[Run, str]) -> None:
        run, mode = job
        status, seconds = execute(run, sweep_dir, mode)
        with lock:
            done[0] += 1
            if status:
                result = f"FAILED (status {status}, see {run.directory}/sweep_output.txt)"
                failed.append(run)
            else:
                result = "re-scored" if mode == "evaluate" else "done"
            print(f"[{done[0]}/{len(to_run)}] {run.directory}: {result} in {seconds:.0f} s", flush=True)

    with concurrent.futures.ThreadPoolExecutor(max(parallel, 1)) as pool:
        list(pool.map(one, to_run))
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
    if _COLLECT.value:
        # Only runs finished with their command's config enter the comparison; others may be
        # unfinished, of another config, or scored with other settings.
        pending, conflicting = plan(sweep_runs(config), sweep_dir)
        left_out = {run.directory for run, _ in pending} | {run.directory for run in conflicting}
        if left_out:
            print(f"not finished with this sweep's config, left out of the comparison: {', '.join(sorted(left_out))}")
    else:
        failed = run_all(config, sweep_dir, _PARALLEL.value)
        if failed:
            print(f"{len(failed)} run(s) failed; fix and run the same command again (finished runs are kept)")
            return 1
        left_out = set()     # every run ran (or was re-scored) with its command's config
    run_dirs = {}
    for run in sweep_runs(config):
        if run.directory not in left_out:
            run_dirs.setdefault(run.variant, []).append(run.directory)
    if not run_dirs:
        print("no run is finished with this sweep's config; nothing to compare")
        return 1
    print(compare.write_comparison(sweep_dir, run_dirs, config.baseline, config.bootstrap))
    print(f"comparison: {sweep_dir / 'comparison.md'} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(lambda argv: sys.exit(main(argv)))
