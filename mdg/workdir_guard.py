"""One workdir, one config: a run refuses to resume another config's checkpoints or results.

``workdir/config.json`` records the config of the run that owns the folder. A new run with a
config that differs (in any key but :data:`FREE_KEYS`) while the folder holds checkpoints or
results stops with a :class:`WorkdirConfigError` naming the differing keys, unless asked to start
over (``--restart``): then the old run's files are moved to ``workdir/replaced/<time>/`` first.

A config that differs only in :data:`SCORING_KEYS` (how the trained models are scored: the score
methods, the scoring hop, the synthetic test set and its fault severity) re-scores the run: the
checkpoints are kept and the old ``results/`` and ``config.json`` are moved to
``workdir/replaced/<time>/``, so ``--mode evaluate`` with, say,
``--config.eval.scores=mse,mahalanobis`` scores a finished run anew.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import ml_collections
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from mdg import errors, evaluate, storage
from mdg.data.synthetic import domain_shifts

CONFIG_FILE = "config.json"
# What a run leaves in its workdir; moved aside together on --restart.
RUN_FILES = ("checkpoints", "results", "metrics.jsonl", CONFIG_FILE)
# Keys that change how a run is carried out, not what it computes.
FREE_KEYS = frozenset({"train.log_every_steps", "train.num_devices", "data.cache_dir"})
# Keys that change only how trained models are scored; a change of these re-scores (module doc).
# The synthetic test set counts (its size and fault severity): every clip has its own seed and the
# training clips are normal, so they are the same whatever the test set (mdg/data/synthetic/).
SCORING_KEYS = frozenset({"input.eval_hop", "input.eval_batch_size", "data.synthetic.num_test",
                          "data.synthetic.fault_severity"})
SCORING_PREFIXES = ("eval.",)
# Keys added to the config after runs were made, each with the value that reproduces those runs: a
# config.json without the key is read as if it held this value (`read_run_config`), so an older
# run resumes, re-scores and re-renders under the newer code.
ADDED_KEYS = {
    "data.synthetic.fault_severity": 1.0,                                  # session 10
    "input.train_jitter": False,                                           # session 11
    "data.synthetic.snr_spread_db": domain_shifts.DEFAULT_SNR_SPREAD_DB,  # session 13
}
_SHOWN_KEYS = 10


def is_scoring_key(key: str) -> bool:
    return key in SCORING_KEYS or key.startswith(SCORING_PREFIXES)


class WorkdirConfigError(errors.UserError):
    """The workdir belongs to a run with another config: ``problem`` says how; the message adds what
    to do about it on ``mdg.main``'s command line (a sweep gives its own advice)."""

    def __init__(self, problem: str, advice: str):
        super().__init__(f"{problem}. {advice}")
        self.problem = problem


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_run_config(workdir: str | os.PathLike) -> dict[str, Any]:
    """The config recorded in ``workdir/config.json`` (nested dict), with the ADDED_KEYS it predates
    filled in. Raises OSError / ValueError: the file is missing or not JSON."""
    config = json.loads((storage.path(workdir) / CONFIG_FILE).read_text(encoding="utf-8"))
    for key, value in ADDED_KEYS.items():
        *parents, name = key.split(".")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node.setdefault(name, value)
    return config


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Sorted dotted keys whose values differ (or that only one side has), ignoring FREE_KEYS."""
    old, new = flatten(old), flatten(new)
    return sorted(k for k in set(old) | set(new) if old.get(k, ...) != new.get(k, ...) and k not in FREE_KEYS)


def _changes(old: dict[str, Any], new: dict[str, Any], keys: list[str]) -> str:
    """"key (old -> new), ..." for the first few ``keys``."""
    old, new = flatten(old), flatten(new)
    shown = ", ".join(f"{k} ({old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r})" for k in keys[:_SHOWN_KEYS])
    return shown + (f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else "")


def _has_run_outputs(workdir: epath.Path) -> bool:
    checkpoints = workdir / "checkpoints"
    return (checkpoints.is_dir() and any(checkpoints.iterdir())) or (workdir / "results").exists()


def _move_aside(workdir: epath.Path, names: tuple[str, ...] = RUN_FILES) -> epath.Path | None:
    """Moves the previous run's files ``names`` to workdir/replaced/<UTC time>/; returns that folder."""
    present = [name for name in names if (workdir / name).exists()]
    if not present:
        return None
    target = workdir / "replaced" / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = target.with_name(f"{target.name}-{time.time_ns() % 10**9:09d}")
    target.mkdir(parents=True)
    for name in present:
        (workdir / name).rename(target / name)
    return target


def scoring_changes(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> str:
    """The scoring keys in which ``config`` differs from the run in ``workdir``, as "key (old -> new), ...".

    "" if the configs are the same (but for FREE_KEYS) or the workdir holds no checkpoints or results.
    Raises WorkdirConfigError: the run's config differs in other keys too, or its config.json is unreadable.
    """
    workdir = storage.path(workdir)
    previous = workdir / CONFIG_FILE
    if not previous.is_file() or not _has_run_outputs(workdir):
        return ""
    try:
        old = read_run_config(workdir)
    except (OSError, ValueError) as error:
        raise WorkdirConfigError(f"{previous}: unreadable ({error}); cannot tell whether the run in "
                                 f"{workdir} used this config", "Pass --restart to start over") from None
    new = json.loads(config.to_json_best_effort())
    keys = differing_keys(old, new)
    if not all(is_scoring_key(k) for k in keys):
        raise WorkdirConfigError(
            f"{workdir} holds a run with another config; differing keys: {_changes(old, new, keys)}",
            "Use another --workdir, or pass --restart to move the old run to workdir/replaced/ and start over")
    return _changes(old, new, keys) if keys else ""


def claim(config: ml_collections.ConfigDict, workdir: str | os.PathLike, restart: bool = False) -> epath.Path | None:
    """Checks that ``workdir`` may hold this config's run (see the module doc) and writes config.json.

    Returns where the old run's files went (``restart``, or its results on a re-scoring), else None.
    Raises WorkdirConfigError: a different config owns checkpoints or results here and not ``restart``.
    """
    workdir = storage.path(workdir)
    moved = None
    aside = RUN_FILES if restart else ()
    changes = "" if restart else scoring_changes(config, workdir)
    if changes:
        aside = ("results", CONFIG_FILE)
        logging.warning("%s: only the scoring settings changed (%s): the trained models are kept and "
                        "scored anew", workdir, changes)
    if jax.process_index() == 0:
        moved = _move_aside(workdir, aside)
        if moved and not restart:
            logging.warning("the previous results and config.json are in %s", moved)
        evaluate.write_atomic(workdir / CONFIG_FILE, config.to_json_best_effort(indent=2) + "\n")
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("mdg workdir claimed")
    return moved
