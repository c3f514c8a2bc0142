"""Checkpoints: orbax CheckpointManager saving the train state and the data-iterator position together.

One checkpoint holds two items: ``state`` (a pytree of arrays: parameters, BN statistics,
optimizer state, step, RNG key data, in their device shardings) and ``data`` (the input
stream's position as JSON). orbax writes each checkpoint into a temporary folder and renames it
when complete, so a run killed at any moment (even ``kill -9``) leaves only whole checkpoints;
starting again restores the newest one and continues with the exact same batches.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


class Checkpointer:
    """Saves every ``save_every_steps`` steps (and on demand), keeping the newest ``keep``."""

    def __init__(self, directory: str | pathlib.Path, save_every_steps: int, keep: int):
        self._manager = ocp.CheckpointManager(
            pathlib.Path(directory).absolute(),
            options=ocp.CheckpointManagerOptions(
                save_interval_steps=max(save_every_steps, 1), max_to_keep=keep, create=True,
                cleanup_tmp_directories=True),
            item_names=("state", "data"),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, data_state: dict, force: bool = False) -> bool:
        """Saves if ``step`` is on the save interval (or ``force``); returns whether it saved."""
        saved = self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                    data=ocp.args.JsonSave(data_state)),
            force=force)
        if saved:
            logging.info("checkpoint saved at step %d", step)
        return saved

    def restore(self, state_like: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores (state, data_state) of ``step`` (default newest) into ``state_like``'s shapes and shardings."""
        step = self._manager.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                          data=ocp.args.JsonRestore()))
        logging.info("restored checkpoint of step %d", step)
        return restored.state, restored.data

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
