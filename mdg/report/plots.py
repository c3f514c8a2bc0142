"""PNG plots of a run in ``results/plots/`` (matplotlib, the optional extra ``mdg[plots]``).

Per machine type ``<machine>``:

- ``<machine>_roc.png``: one panel per scoring method, one ROC curve per section and domain
  (that domain's normal clips against all anomalous clips of the section, the DCASE definition of
  AUC source/target; its AUC in the legend), the pAUC region FPR <= 0.1 shaded;
- ``<machine>_scores.png``: rows = methods, columns = source / target; histograms of the test
  clips' scores, normal vs anomalous, and the machine type's decision threshold;
- ``<machine>_embedding.png``: the 2-D projection of the clip embeddings coloured by section,
  by domain and by split + label.

Per training unit ``<unit>`` (a machine type, ``<machine>_section_XX`` or ``all_machines``):
``<unit>_training.png``, training and validation loss per epoch from ``metrics.jsonl``.

Without matplotlib nothing is drawn and one warning says so.
"""
from __future__ import annotations

import functools
import io
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging
from etils import epath
from sklearn import metrics as skm

from mdg import storage
from mdg.report import clips as clip_table
from mdg.report import summary as summary_file

MAX_FPR = 0.1
DOMAINS = ((0, "source"), (1, "target"))
DPI = 110


@functools.cache
def _pyplot():
    """matplotlib.pyplot on the Agg backend, or None (warning once) when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        logging.warning("matplotlib is not installed: no plots in results/plots/ and none in the HTML "
                        "report (pip install 'mdg[plots]')")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def available() -> bool:
    return _pyplot() is not None


def _save(fig, path: epath.Path) -> epath.Path:
    """Saves as PNG, atomically (see :func:`mdg.storage.write_atomic`); closes the figure."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        _pyplot().close(fig)
    return storage.write_atomic(path, buffer.getvalue())


def roc_figure(columns: Mapping[str, np.ndarray], metadata: Mapping[str, Any], machine: str):
    """ROC curves of one machine type's labelled test clips; None if it has none."""
    rows = clip_table.labelled_test_rows(columns, machine)
    if not rows.any():
        return None
    plt, methods = _pyplot(), metadata["methods"]
    sections = np.unique(columns["section"][rows])
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(methods), figsize=(5.2 * len(methods), 5.0), squeeze=False)
    for ax, (method, suffix) in zip(axes[0], methods.items()):
        score = columns[f"anomaly_score_{suffix}"]
        ax.axvspan(0.0, MAX_FPR, color="0.85", label=f"pAUC region (FPR ≤ {MAX_FPR})")
        ax.plot([0, 1], [0, 1], color="0.5", linestyle=":", linewidth=1, label="chance")
        for i, section in enumerate(sections):
            in_section = rows & (columns["section"] == section) & ~np.isnan(score)
            anomalous = in_section & (columns["label"] == 1)
            for domain, domain_name in DOMAINS:
                normal = in_section & (columns["label"] == 0) & (columns["domain"] == domain)
                if not normal.any() or not anomalous.any():
                    continue
                picked = normal | anomalous
                fpr, tpr, _ = skm.roc_curve(columns["label"][picked].astype(int), score[picked])
                auc = skm.auc(fpr, tpr)
                ax.plot(fpr, tpr, color=colours(i % 10), linestyle="-" if domain == 0 else "--",
                        label=f"section {section:02d} {domain_name}: AUC {auc:.2f}")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (normal clips of the domain)",
               ylabel="true positive rate (anomalous clips of the section)", title=f"{machine}: {method}")
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize=7.5, framealpha=0.9)
    fig.tight_layout()
    return fig


def _bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """``bins + 1`` equal-width edges spanning ``values``, widened around a (near-)constant set,
    where numpy cannot make distinct edges."""
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    minimum_span = max(abs(high), abs(low), 1.0) * 1e-6
    if high - low < minimum_span:
        low, high = low - minimum_span, high + minimum_span
    return np.linspace(low, high, bins + 1)


def scores_figure(columns: Mapping[str, np.ndarray], metadata: Mapping[str, Any], machine: str,
                  summary: Mapping[str, Any] | None):
    """Score histograms of one machine type's labelled test clips; None if it has none."""
    rows = clip_table.labelled_test_rows(columns, machine)
    if not rows.any():
        return None
    plt, methods = _pyplot(), metadata["methods"]
    fig, axes = plt.subplots(len(methods), 2, figsize=(10.0, 3.2 * len(methods)), squeeze=False)
    for row_axes, (method, suffix) in zip(axes, methods.items()):
        score = columns[f"anomaly_score_{suffix}"]
        scored = rows & ~np.isnan(score)
        threshold = summary_file.threshold(summary, method, machine)
        values = score[scored]
        edges = _bin_edges(np.append(values, [] if threshold is None else [threshold]), 30)
        for ax, (domain, domain_name) in zip(row_axes, DOMAINS):
            in_domain = scored & (columns["domain"] == domain)
            for label, name, colour in ((0, "normal", "tab:blue"), (1, "anomalous", "tab:red")):
                picked = score[in_domain & (columns["label"] == label)]
                ax.hist(picked, bins=edges, color=colour, alpha=0.55, label=f"{name} ({picked.size})")
            if threshold is not None:
                ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2,
                           label=f"decision threshold {threshold:.3g}")
            ax.set(xlabel=f"anomaly score ({method}; higher = more anomalous)", ylabel="test clips",
                   title=f"{machine}, {method}, {domain_name} domain")
            ax.yaxis.get_major_locator().set_params(integer=True)
            ax.set_ylim(top=ax.get_ylim()[1] * 1.4)  # headroom, so the legend covers no bar
            ax.legend(fontsize=8, loc="upper right", framealpha=0.9)
    fig.tight_layout()
    return fig


def embedding_figure(columns: Mapping[str, np.ndarray], metadata: Mapping[str, Any], machine: str):
    """The 2-D projection of one machine type's clips in three colourings."""
    plt = _pyplot()
    rows = columns["class"] == machine
    x, y = columns["projection_x"][rows], columns["projection_y"][rows]
    split = columns["split"][rows]
    label = columns["label"][rows].astype(float)
    domain = columns["domain"][rows].astype(float)
    section = columns["section"][rows]
    # section colours avoid those of the domain and label panels (green, purple, blue, red, grey)
    palette = [plt.get_cmap("tab10")(i) for i in (1, 5, 6, 8, 9)]
    # (name, rows, colour); label colours match the histograms (normal blue, anomalous red)
    groups = {
        "section": [(f"section {s:02d}", section == s, palette[i % len(palette)])
                    for i, s in enumerate(np.unique(section))],
        "domain": [("source", domain == 0, "tab:green"), ("target", domain == 1, "tab:purple"),
                   ("unknown", np.isnan(domain), "0.3")],
        "split and label": [("train (normal)", split == "train", "0.7"),
                            ("test normal", (split == "test") & (label == 0), "tab:blue"),
                            ("test anomalous", (split == "test") & (label == 1), "tab:red"),
                            ("test, no label", (split == "test") & np.isnan(label), "black")],
    }
    fig, axes = plt.subplots(1, 3, figsize=(15.0, 4.8))
    for ax, (title, parts) in zip(axes, groups.items()):
        for order, (name, mask, colour) in enumerate(parts):
            if mask.any():
                ax.scatter(x[mask], y[mask], s=14, color=colour, alpha=0.8, linewidths=0, zorder=2 + order,
                           label=f"{name} ({int(mask.sum())})")
        ax.set(xlabel="principal component 1", ylabel="principal component 2",
               title=f"{machine}: {metadata['model']} embedding by {title}")
        ax.legend(fontsize=8, markerscale=1.5)
    fig.tight_layout()
    return fig


def read_metrics(path: str | os.PathLike) -> dict[str, list[dict]]:
    """metrics.jsonl -> unit -> records sorted by epoch, the last record of each epoch kept
    (a resumed run repeats epochs). Raises naming the line on bad JSON or missing keys."""
    path = storage.path(path)
    by_unit: dict[str, dict[int, dict]] = {}
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                by_unit.setdefault(str(record["unit"]), {})[int(record["epoch"])] = record
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{number}: not a metrics record with unit and epoch "
                                 f"({error})") from error
    return {unit: [epochs[e] for e in sorted(epochs)] for unit, epochs in by_unit.items()}


def training_figure(unit: str, records: list[dict]):
    """Training and validation loss per epoch of one unit, and a classifier's validation accuracy
    (right axis, %)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    epochs = [r["epoch"] for r in records]
    values = []
    for key, name, colour in (("loss", "training loss", "tab:blue"),
                              ("val_loss", "validation loss", "tab:orange")):
        series = [r.get(key) for r in records]
        kept = [(e, v) for e, v in zip(epochs, series) if v is not None and np.isfinite(v)]
        if kept:
            ax.plot(*zip(*kept), marker="o", markersize=3, color=colour, label=name)
            values += [v for _, v in kept]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel="loss (log scale)" if ax.get_yscale() == "log" else "loss",
           title=f"training curve: {unit}")
    ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = ax.get_legend_handles_labels()
    accuracy = [(r["epoch"], 100 * r["val_accuracy"]) for r in records
                if r.get("val_accuracy") is not None and np.isfinite(r["val_accuracy"])]
    if accuracy:
        right = ax.twinx()
        right.plot(*zip(*accuracy), marker="s", markersize=3, color="tab:green", label="validation accuracy")
        right.set(ylabel="validation accuracy (%)", ylim=(0, 100))
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels)
    fig.tight_layout()
    return fig


def write_plots(results_dir: str | os.PathLike, workdir: str | os.PathLike) -> list[epath.Path]:
    """Every plot of the module docstring into ``<results_dir>/plots/``; returns the paths
    (empty without matplotlib). Reads ``<results_dir>/clips.parquet``, ``<results_dir>/summary.json``
    (thresholds; optional) and ``<workdir>/metrics.jsonl`` (optional)."""
    if not available():
        return []
    results_dir = storage.path(results_dir)
    out_dir = results_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    columns, metadata = clip_table.read_table(results_dir / "clips.parquet")
    summary = summary_file.read_summary(results_dir)
    paths = []
    for machine in sorted(set(columns["class"].tolist())):
        for kind, fig in (("roc", roc_figure(columns, metadata, machine)),
                          ("scores", scores_figure(columns, metadata, machine, summary)),
                          ("embedding", embedding_figure(columns, metadata, machine))):
            if fig is not None:
                paths.append(_save(fig, out_dir / f"{machine}_{kind}.png"))
    metrics_path = storage.path(workdir) / "metrics.jsonl"
    if metrics_path.exists():
        for unit, records in read_metrics(metrics_path).items():
            paths.append(_save(training_figure(unit, records), out_dir / f"{unit}_training.png"))
    return paths
