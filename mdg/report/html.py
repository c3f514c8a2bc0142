"""``results/report.html``: one self-contained page (plots and audio inline as base64 data URLs).

Sections: the official score per method (with the jackknife interval and the harmonic means of
AUC source / target and pAUC), AUC source / target and pAUC per machine type and section, the
plots of :mod:`mdg.report.plots`, and per section and method the clips a reader should listen to:
the highest-scored normal clip (the worst false alarm) and the lowest-scored anomalous clip (the
best-hidden anomaly), with an audio player when the WAV is on disk. Audio is embedded as it is on
disk up to ``audio_budget_bytes`` in total (default 8 MiB, ~25 ten-second 16 kHz clips); clips past
the cap are listed without a player.
"""
from __future__ import annotations

import base64
import html
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath

from mdg import evaluate, storage
from mdg.report import clips as clip_table
from mdg.report import summary as summary_file

AUDIO_BUDGET_BYTES = 8 * 2**20

_STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; }
th { background: #eee; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0 1em; }
figcaption { font-size: 0.85em; color: #555; } audio { height: 2em; width: 16em; }
"""


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    """An HTML table; cells are raw HTML (escape before), columns >= numeric_from right-aligned."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i >= numeric_from else f"<td>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>\n" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}</table>\n"


def summary_tables(document: Mapping[str, Any]) -> str:
    """The two tables of ``results/summary.json`` (``{"official_scores", "methods"}``)."""
    methods: Mapping[str, Mapping[str, Any]] = document["methods"]
    rows = []
    for name, summary in methods.items():
        if not summary["labelled"]:
            rows.append([html.escape(name), "no ground truth", "", "", "", ""])
            continue
        ci95 = summary.get("official_score_ci95") or {}
        interval = (f"{_percent(ci95.get('low'))} – {_percent(ci95.get('high'))}"
                    if ci95.get("low") is not None else "n/a")
        means = summary["harmonic_mean"]
        rows.append([html.escape(name), _percent(summary["official_score"]), interval,
                     *(_percent(means[key]) for key, _ in evaluate.REPORT_COLUMNS)])
    parts = ["<h2>Official score</h2>",
             _table(["Method", "Official score (%)", "95 % CI (%)", "h-mean AUC source (%)",
                     "h-mean AUC target (%)", "h-mean pAUC (%)"], rows, 1)]
    labelled = {name: s for name, s in methods.items() if s["labelled"]}
    if labelled:
        header = ["Machine type", "Section"] + [f"{name} {title}" for name in labelled
                                                for _, title in evaluate.REPORT_COLUMNS]
        rows = []
        machines = sorted({m for s in labelled.values() for m in s["machines"]})
        for machine in machines:
            sections = sorted({sec for s in labelled.values()
                               for sec in s["machines"].get(machine, {}).get("sections", {})})
            for section in sections:
                cells = []
                for summary in labelled.values():
                    row = summary["machines"].get(machine, {}).get("sections", {}).get(section, {})
                    cells += [_percent(row.get(key)) for key, _ in evaluate.REPORT_COLUMNS]
                rows.append([html.escape(machine), html.escape(section), *cells])
        parts += ["<h2>Per machine type and section</h2>",
                  "<p>AUC source/target: that domain's normal clips against all anomalous clips of "
                  "the section; pAUC: all clips of the section at FPR ≤ "
                  f"{next(iter(labelled.values()))['max_fpr']}.</p>",
                  _table(header, rows, 2)]
    return "\n".join(parts)


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


PLOT_ORDER = ("roc", "scores", "embedding", "training")


def plot_section(plot_paths: Sequence[str | os.PathLike]) -> str:
    """The plots grouped under a heading per machine type (or training unit), in PLOT_ORDER."""
    by_subject: dict[str, list[tuple[int, epath.Path]]] = {}
    for path in map(storage.path, plot_paths):
        subject, _, kind = path.stem.rpartition("_")
        rank = PLOT_ORDER.index(kind) if kind in PLOT_ORDER else len(PLOT_ORDER)
        by_subject.setdefault(subject, []).append((rank, path))
    parts = ["<h2>Plots</h2>"]
    for subject in sorted(by_subject):
        parts.append(f"<h3>{html.escape(subject)}</h3>")
        for _, path in sorted(by_subject[subject]):
            parts.append(f'<figure><img src="{_data_url("image/png", path.read_bytes())}" '
                         f'alt="{html.escape(path.stem)}"><figcaption>{html.escape(path.name)}'
                         "</figcaption></figure>")
    if not by_subject:
        parts.append("<p>No plots (matplotlib is not installed: pip install 'mdg[plots]').</p>")
    return "\n".join(parts)


class _AudioBudget:
    """Embeds WAVs while the total stays within the budget."""

    def __init__(self, budget_bytes: int):
        self.left = budget_bytes

    def player(self, path: str | None) -> str:
        if path is None or not pathlib.Path(path).is_file():   # WAVs: local data
            return "WAV not on disk"
        size = pathlib.Path(path).stat().st_size
        if size > self.left:
            return "not embedded (report audio cap reached)"
        self.left -= size
        return f'<audio controls preload="metadata" src="{_data_url("audio/wav", pathlib.Path(path).read_bytes())}"></audio>'


def clip_section(columns: Mapping[str, np.ndarray], metadata: Mapping[str, Any],
                 document: Mapping[str, Any] | None, audio_budget_bytes: int) -> str:
    """Per labelled section and method: the highest-scored normal and lowest-scored anomalous clip."""
    budget = _AudioBudget(audio_budget_bytes)
    test = clip_table.labelled_test_rows(columns)
    rows = []
    keys = sorted(set(zip(columns["class"][test].tolist(), columns["section"][test].tolist())))
    for machine, section in keys:
        in_section = test & (columns["class"] == machine) & (columns["section"] == section)
        for method, suffix in metadata["methods"].items():
            score = columns[f"anomaly_score_{suffix}"]
            threshold = summary_file.threshold(document, method, machine)
            for kind, label, pick in (("highest-scored normal", 0, np.argmax),
                                      ("lowest-scored anomalous", 1, np.argmin)):
                candidates = np.flatnonzero(in_section & (columns["label"] == label) & ~np.isnan(score))
                if not candidates.size:
                    continue
                row = candidates[pick(score[candidates])]
                domain = {0.0: "source", 1.0: "target"}.get(float(columns["domain"][row]), "unknown")
                rows.append([html.escape(machine), f"{section:02d}", html.escape(method), kind, domain,
                             html.escape(str(columns["file_name"][row])), f"{score[row]:.4g}",
                             "n/a" if threshold is None else f"{threshold:.4g}",
                             budget.player(columns["path"][row])])
    if not rows:
        return "<h2>Clips to listen to</h2>\n<p>No labelled test clips.</p>"
    return ("<h2>Clips to listen to</h2>\n<p>Per section and method, the normal clip with the highest "
            "anomaly score and the anomalous clip with the lowest: the clips the method gets most "
            "wrong.</p>\n" + _table(["Machine type", "Section", "Method", "Clip", "Domain", "File",
                                     "Score", "Threshold", "Audio"], rows, 6))


def render(document: Mapping[str, Any] | None, columns: Mapping[str, np.ndarray],
           metadata: Mapping[str, Any], plot_paths: Sequence[str | os.PathLike],
           audio_budget_bytes: int = AUDIO_BUDGET_BYTES) -> str:
    """The whole page as a string. document: results/summary.json (None: no tables)."""
    title = f"mdg results: {metadata['model']}"
    body = [f"<h1>{html.escape(title)}</h1>"]
    if document is not None:
        body.append(summary_tables(document))
    body += [plot_section(plot_paths), clip_section(columns, metadata, document, audio_budget_bytes)]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def write_report_html(results_dir: str | os.PathLike, plot_paths: Sequence[str | os.PathLike],
                      audio_budget_bytes: int = AUDIO_BUDGET_BYTES) -> epath.Path:
    """Writes ``<results_dir>/report.html`` from clips.parquet, summary.json (if present) and the
    given plot files; returns its path."""
    results_dir = storage.path(results_dir)
    columns, metadata = clip_table.read_table(results_dir / "clips.parquet")
    document = summary_file.read_summary(results_dir)
    path = results_dir / "report.html"
    evaluate.write_atomic(path, render(document, columns, metadata, plot_paths, audio_budget_bytes))
    return path
