"""What a person looks at after a run: the per-clip table, plots, an HTML report, TensorBoard.

Call :func:`write_all` once after scoring, when ``results/summary.json`` and the submission CSVs
are written (mdg.evaluate.write_report). Modules: :mod:`mdg.report.clips` (clips.parquet),
:mod:`mdg.report.plots` (results/plots/*.png, needs matplotlib), :mod:`mdg.report.html`
(report.html), :mod:`mdg.report.tensorboard` (``ScalarWriter`` for the training loop and the
final figures).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from etils import epath

from mdg import storage
from mdg.report import clips as clip_table
from mdg.report import html, plots, summary, tensorboard


def write_all(results_dir: str | os.PathLike, workdir: str | os.PathLike,
              clips: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray],
              decisions: Mapping[str, np.ndarray], embeddings: np.ndarray, model_name: str,
              data_root: str | os.PathLike | None, *, tensorboard_enabled: bool = True,
              audio_budget_bytes: int = html.AUDIO_BUDGET_BYTES) -> dict[str, list[epath.Path]]:
    """Writes ``<results_dir>/clips.parquet``, ``<results_dir>/plots/*.png`` (if matplotlib is
    installed), ``<results_dir>/report.html`` and the final figures into ``<workdir>/tensorboard/``.

    clips, scores, decisions, embeddings, model_name, data_root: see
    :func:`mdg.report.clips.build_table` (one row per training and test clip). Reads
    ``<results_dir>/summary.json`` and ``<workdir>/metrics.jsonl`` when present.
    Returns {"clips": [...], "plots": [...], "report": [...], "tensorboard": [...]}.
    """
    results_dir = storage.path(results_dir)
    table = clip_table.build_table(clips, scores, decisions, embeddings, model_name, data_root)
    written = {"clips": [clip_table.write_table(results_dir / "clips.parquet", table)]}
    written["plots"] = plots.write_plots(results_dir, workdir)
    written["report"] = [html.write_report_html(results_dir, written["plots"], audio_budget_bytes)]
    written["tensorboard"] = []
    document = summary.read_summary(results_dir)
    if document is not None:
        with tensorboard.ScalarWriter(tensorboard.logdir(workdir), tensorboard_enabled) as writer:
            writer.write_final(document)
            if writer.enabled:
                written["tensorboard"].append(tensorboard.logdir(workdir))
    return written
