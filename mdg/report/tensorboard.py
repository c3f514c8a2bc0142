"""TensorBoard event files without TensorFlow (tensorboardX).

Tags are ``<scalar>/<unit>`` (e.g. ``loss/fan``, ``val_loss/fan``, ``learning_rate/fan``,
``samples_per_s/fan``, ``compile_s/fan``), so TensorBoard groups one chart per quantity with a
line per unit, and ``final/<figure>/<method>`` for the figures of ``results/summary.json``
(official score, harmonic-mean AUC source / target and pAUC, each a fraction in [0, 1]).
Events go to ``WORKDIR/tensorboard/``; ``tensorboard --logdir SWEEP_DIR`` then shows every run of
a sweep side by side (one run per workdir).
"""
from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from typing import Any

from absl import logging
from etils import epath

from mdg import storage

# summary.json key -> tag figure name of the final figures
FINAL_FIGURES = {"official_score": "official_score", "auc_source": "hmean_auc_source",
                 "auc_target": "hmean_auc_target", "pauc": "hmean_pauc"}


@functools.cache
def _summary_writer_class():
    """tensorboardX.SummaryWriter, or None (warning once) when tensorboardX is missing."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        logging.warning("tensorboardX is not installed: no TensorBoard logs (pip install tensorboardX)")
        return None
    return SummaryWriter


def logdir(workdir: str | os.PathLike) -> epath.Path:
    """``<workdir>/tensorboard`` (tensorboardX writes to local folders and gs:// itself)."""
    return storage.path(workdir) / "tensorboard"


class ScalarWriter:
    """Writes scalars of one run; a no-op when disabled or when tensorboardX is missing.

    Usage: ``writer = ScalarWriter(logdir(workdir), config.eval.tensorboard)``, per epoch
    ``writer.write(step, {"loss": ..., "val_loss": ..., "learning_rate": ...}, unit.name)``,
    at the end ``writer.write_final(summary_document)`` and ``writer.close()`` (or use ``with``).
    """

    def __init__(self, directory: str | os.PathLike, enabled: bool = True):
        writer_class = _summary_writer_class() if enabled else None
        self._writer = None if writer_class is None else writer_class(logdir=str(directory))

    @property
    def enabled(self) -> bool:
        return self._writer is not None

    def write(self, step: int, scalars: Mapping[str, float | None], unit: str) -> None:
        """One point per scalar at ``step`` under ``<name>/<unit>``; None and non-finite are skipped."""
        if self._writer is None:
            return
        for name, value in scalars.items():
            if value is not None and math.isfinite(float(value)):
                self._writer.add_scalar(f"{name}/{unit}", float(value), int(step))

    def write_final(self, document: Mapping[str, Any], step: int = 0) -> None:
        """The figures of ``results/summary.json`` (``{"official_scores", "methods"}``) per method."""
        if self._writer is None:
            return
        for method, summary in document["methods"].items():
            if not summary["labelled"]:
                continue
            figures = {"official_score": summary["official_score"],
                       **{key: summary["harmonic_mean"][key] for key in ("auc_source", "auc_target", "pauc")}}
            self.write(step, {f"final/{FINAL_FIGURES[key]}": value for key, value in figures.items()},
                       method)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> ScalarWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
