"""Checkpoints: orbax CheckpointManager saving the train state and the data-iterator position together.

One checkpoint holds two items: ``state`` (a pytree of arrays: parameters, BN statistics,
optimizer state, step, RNG key data, in their device shardings) and ``data`` (the input
stream's position as JSON). orbax writes each checkpoint into a temporary folder and renames it
when complete, so a run killed at any moment (even ``kill -9``) leaves only whole checkpoints;
starting again restores the newest one and continues with the exact same batches.

A damaged checkpoint (a step folder without its ``commit_success.txt`` marker, a missing item, a
truncated or unreadable file) is never restored silently: :meth:`Checkpointer.restore` moves it
aside to ``<unit folder>.damaged/<step>``, warns, and falls back to the previous kept checkpoint;
if none is usable it raises a :class:`CheckpointError` naming the folder and what to do.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from mdg import errors, storage

ITEMS = ("state", "data")
COMMIT_MARKER = "commit_success.txt"


class CheckpointError(errors.UserError):
    """No usable checkpoint in a folder that holds some; the message names it and the way out."""


def damage(step_dir: epath.Path) -> str | None:
    """What is visibly missing from a finished step folder (marker, items), or None."""
    missing = [name for name in (COMMIT_MARKER, *(f"{item}/{COMMIT_MARKER}" for item in ITEMS))
               if not (step_dir / name).is_file()]
    return f"missing {', '.join(missing)}" if missing else None


class Checkpointer:
    """Saves every ``save_every_steps`` steps (and on demand), keeping the newest ``keep``."""

    def __init__(self, directory: str | os.PathLike, save_every_steps: int, keep: int):
        self.directory = storage.absolute(directory)   # local or gs://
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                save_interval_steps=max(save_every_steps, 1), max_to_keep=keep, create=True,
                cleanup_tmp_directories=True),
            item_names=ITEMS,
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, data_state: dict, force: bool = False) -> bool:
        """Saves if ``step`` is on the save interval (or ``force``); returns whether it saved."""
        if step in self._manager.all_steps():
            return False
        saved = self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                    data=ocp.args.JsonSave(data_state)),
            force=force)
        if saved:
            logging.info("checkpoint saved at step %d", step)
        return saved

    def save_now(self, step: int, state: Any, data_state: dict) -> None:
        """Saves ``step`` (unless already saved) and waits until it is on disk (before a stop)."""
        self.save(step, state, data_state, force=True)
        self.wait()

    def restore(self, state_like: Any) -> tuple[Any, dict]:
        """Restores (state, data_state) of the newest usable step into ``state_like``'s shapes and shardings.

        Damaged steps are moved aside with a warning (see the module doc); raises
        :class:`CheckpointError` when steps exist but none is usable.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
        problems = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            step_dir = self.directory / str(step)
            problem = damage(step_dir)
            if problem is None:
                try:
                    restored = self._manager.restore(
                        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                      data=ocp.args.JsonRestore()))
                except Exception as error:  # orbax/tensorstore raise many types for bad files
                    problem = f"unreadable: {type(error).__name__}: {str(error)[:300]}"
                    try:
                        state, data = self._restore_variables_format(step, state_like)
                    except Exception:   # not that format either: damaged
                        pass
                    else:
                        logging.warning("restored checkpoint of step %d, written in the earlier nnx Variable format",
                                        step)
                        return state, data
                else:
                    logging.info("restored checkpoint of step %d", step)
                    return restored.state, restored.data
            problems.append(f"step {step}: {problem}")
            moved = self._move_aside(step_dir)
            logging.warning("checkpoint %s is damaged (%s); moved to %s, falling back to the previous one",
                            step_dir, problem, moved)
        raise CheckpointError(
            f"{self.directory}: no usable checkpoint ({'; '.join(problems)}); the damaged ones were moved "
            f"to {self.directory}.damaged. Rerun the same command to train this unit from scratch, or "
            "restore a backup of the folder")

    def _restore_variables_format(self, step: int, state_like: Any) -> tuple[Any, dict]:
        """Restores a checkpoint written while the train state held ``nnx.State`` (before
        2026-11-29), which stored every Variable as ``{"value": array}``, into ``state_like``'s
        plain-dict tree and shardings; raises if any leaf is missing or has another shape."""
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), data=ocp.args.JsonRestore()))

        def leaf(path, like):
            node = restored.state
            for entry in path:   # DictKey, GetAttrKey (named tuples) or SequenceKey
                name = next(getattr(entry, field) for field in ("key", "name", "idx") if hasattr(entry, field))
                node = node[int(name)] if isinstance(node, (list, tuple)) else node[str(name)]
            if isinstance(node, dict) and set(node) == {"value"}:
                node = node["value"]
            if np.shape(node) != like.shape:
                raise ValueError(f"{jax.tree_util.keystr(path)}: shape {np.shape(node)}, expected {like.shape}")
            return jax.device_put(node, like.sharding)

        return jax.tree_util.tree_map_with_path(leaf, state_like), restored.data

    def _move_aside(self, step_dir: epath.Path) -> epath.Path:
        """Renames a damaged step folder out of the manager's sight; returns its new path."""
        target = self.directory.with_name(self.directory.name + ".damaged") / f"{step_dir.name}-{time.time_ns()}"
        if jax.process_index() == 0:
            target.parent.mkdir(exist_ok=True)
            step_dir.rename(target)
        self._manager.reload()
        return target

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
