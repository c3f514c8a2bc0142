"""Anomaly scores -> decisions, DCASE submission files, result tables and summaries.

What the DCASE 2022/2023 Task 2 baselines and evaluators do, in one place:

- Decision threshold: a gamma distribution is fitted to the anomaly scores of the training
  clips of a machine type (``scipy.stats.gamma.fit`` with shape, location and scale free) and
  the threshold is its quantile at ``decision_threshold`` = 0.9; a clip is called anomalous
  when its score is strictly greater than the threshold.
- Precision, recall and F1 per section and domain from those decisions, with the evaluators'
  ``max(denominator, sys.float_info.epsilon)`` guard.
- Submission files ``anomaly_score_<machine>_section_<XX>_test.csv`` and
  ``decision_result_<machine>_section_<XX>_test.csv``: rows ``<wav file name>,<value>``, no
  header, ``\\n`` line ends, as the baselines' ``csv.writer(lineterminator='\\n')`` writes them.
  Scores are written as Python's shortest round-trip ``repr`` so a reader gets the same float.
- ``result.csv`` in the baselines' layout (one block per machine type: section rows, then the
  arithmetic and harmonic means; then the means over all machine types and sections, the
  official score and its jackknife 95 % interval), ``summary.json`` with every figure, and
  ``report.md`` with a table in the layout of Table 3 of the MIMII DG paper (Dohi et al., 2022).

The AUC/pAUC numerics live in :mod:`mdg.metrics`; this module arranges groups, decisions and
files around them. Several scoring methods per run each get a folder ``<results_dir>/<method>/``
and :func:`write_report` puts them side by side in ``<results_dir>/report.md`` and
``<results_dir>/summary.json``.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.stats
from absl import logging

from etils import epath

from mdg import metrics, storage
from mdg.storage import write_atomic  # also used by compare, sweep, report, workdir_guard

MAX_FPR = 0.1
DECISION_PERCENTILE = 0.9
DOMAINS = ("source", "target")
UNKNOWN_DOMAIN = "unknown"
_EPS = sys.float_info.epsilon

# (summary.json key, result.csv header) of every per-section figure, in the column order of
# the 2023 baseline's result file.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("auc_source", "AUC (source)"),
    ("auc_target", "AUC (target)"),
    ("pauc", "pAUC"),
    ("pauc_source", "pAUC (source)"),
    ("pauc_target", "pAUC (target)"),
    ("precision_source", "precision (source)"),
    ("precision_target", "precision (target)"),
    ("recall_source", "recall (source)"),
    ("recall_target", "recall (target)"),
    ("f1_source", "F1 score (source)"),
    ("f1_target", "F1 score (target)"),
)
# The columns of the markdown tables: (summary key, header).
REPORT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("auc_source", "AUC source (%)"),
    ("auc_target", "AUC target (%)"),
    ("pauc", "pAUC (%)"),
)


def submission_file_name(kind: str, machine: str, section: int) -> str:
    """``anomaly_score_<machine>_section_<XX>_test.csv`` (kind "anomaly_score" or "decision_result")."""
    if kind not in ("anomaly_score", "decision_result"):
        raise ValueError(f"unknown submission file kind {kind!r}")
    return f"{kind}_{machine}_section_{section:02d}_test.csv"


@dataclasses.dataclass(frozen=True)
class ClipScores:
    """Anomaly scores of test clips, one row per clip; every field is a 1-D array of length n.

    machine: str, machine type.  section: int, section number (written as two digits).
    file_name: str, the WAV base name as it goes into the submission CSV (eval clips keep
    their unlabelled names).  domain: str, "source", "target" or "unknown".
    label: int, 0 normal, 1 anomalous, -1 unknown.  score: float64, higher = more anomalous.
    """

    machine: np.ndarray
    section: np.ndarray
    file_name: np.ndarray
    domain: np.ndarray
    label: np.ndarray
    score: np.ndarray

    def __post_init__(self):
        coerced = {
            "machine": np.asarray(self.machine, dtype=str),
            "section": np.asarray(self.section),
            "file_name": np.asarray(self.file_name, dtype=str),
            "domain": np.asarray(self.domain, dtype=str),
            "label": np.asarray(self.label),
            "score": np.asarray(self.score, dtype=np.float64),
        }
        num_clips = coerced["score"].shape[0] if coerced["score"].ndim == 1 else -1
        for name, array in coerced.items():
            if array.ndim != 1 or array.shape[0] != num_clips:
                raise ValueError(f"ClipScores.{name} must be 1-D with one entry per clip; shapes: "
                                 + ", ".join(f"{k}={v.shape}" for k, v in coerced.items()))
        for name in ("section", "label"):
            if num_clips and not np.issubdtype(coerced[name].dtype, np.integer):
                raise ValueError(f"ClipScores.{name} must be integers, got {coerced[name].dtype}")
            coerced[name] = coerced[name].astype(np.int64)
        for name, array in coerced.items():
            object.__setattr__(self, name, array)
        if np.any(self.section < 0):
            raise ValueError(f"negative section number in {self.section[self.section < 0][:3]}")
        bad_domain = ~np.isin(self.domain, (*DOMAINS, UNKNOWN_DOMAIN))
        if bad_domain.any():
            raise ValueError(f"{self.file_name[bad_domain][0]}: domain {self.domain[bad_domain][0]!r} "
                             f"is not one of {(*DOMAINS, UNKNOWN_DOMAIN)}")
        bad_label = ~np.isin(self.label, (-1, 0, 1))
        if bad_label.any():
            raise ValueError(f"{self.file_name[bad_label][0]}: label {self.label[bad_label][0]} "
                             "is not 0 (normal), 1 (anomalous) or -1 (unknown)")
        not_finite = ~np.isfinite(self.score)
        if not_finite.any():
            raise ValueError(f"{self.machine[not_finite][0]}/{self.file_name[not_finite][0]}: "
                             f"anomaly score is {self.score[not_finite][0]} ({not_finite.sum()} "
                             "clips have non-finite scores)")
        keys = np.char.add(np.char.add(self.machine, "/"), self.file_name)
        unique, counts = np.unique(keys, return_counts=True)
        if np.any(counts > 1):
            raise ValueError(f"duplicate clip {unique[counts > 1][0]} in ClipScores")

    @classmethod
    def from_clips(cls, clips: Sequence[Any], scores: Sequence[float] | np.ndarray) -> ClipScores:
        """Builds the table from ``mdg.data.layout.Clip`` records and their scores (same order)."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(clips),):
            raise ValueError(f"{len(clips)} clips but scores of shape {scores.shape}")
        return cls(
            machine=np.array([clip.machine for clip in clips], dtype=str),
            section=np.array([clip.section for clip in clips], dtype=np.int64),
            file_name=np.array([clip.file_name for clip in clips], dtype=str),
            domain=np.array([clip.domain for clip in clips], dtype=str),
            label=np.array([clip.label for clip in clips], dtype=np.int64),
            score=scores,
        )

    def __len__(self) -> int:
        return self.score.shape[0]

    @property
    def labelled(self) -> bool:
        """True if every clip has a label and a domain, False if none has; mixed is an error."""
        known = (self.label >= 0) & (self.domain != UNKNOWN_DOMAIN)
        if known.all():
            return True
        if not known.any():
            return False
        raise ValueError(f"{(~known).sum()} of {len(self)} clips lack a label or domain, e.g. "
                         f"{self.machine[~known][0]}/{self.file_name[~known][0]}; either all test "
                         "clips are labelled (dev set, or eval set with ground truth) or none")

    def sections(self) -> tuple[list[tuple[str, int]], np.ndarray]:
        """Sorted (machine, section) pairs and each clip's index into them, int64 (n,)."""
        pairs = list(zip(self.machine.tolist(), self.section.tolist()))
        keys = sorted(set(pairs))
        position = {key: i for i, key in enumerate(keys)}
        return keys, np.fromiter((position[p] for p in pairs), dtype=np.int64, count=len(pairs))


def fit_decision_threshold(train_scores: Sequence[float] | np.ndarray,
                           percentile: float = DECISION_PERCENTILE) -> float:
    """The baselines' decision threshold from the anomaly scores of training clips (any units).

    A gamma distribution with free shape, location and scale is fitted by maximum likelihood
    (``scipy.stats.gamma.fit``) and the threshold is its quantile at ``percentile``.
    """
    scores = np.asarray(train_scores, dtype=np.float64).ravel()
    if not 0.0 < percentile < 1.0:
        raise ValueError(f"decision percentile must lie in (0, 1), got {percentile}")
    if scores.size < 2 or not np.all(np.isfinite(scores)):
        raise ValueError(f"need at least 2 finite training scores to fit a gamma distribution, got "
                         f"{scores.size} ({np.count_nonzero(~np.isfinite(scores))} non-finite)")
    if np.ptp(scores) == 0.0:
        # A gamma cannot be fitted; the only sensible cut is the value itself (a clip is anomalous
        # iff it scores above every training clip). Seen with badly undertrained models.
        logging.warning("all %d training scores equal %g: no gamma fit possible, using that constant "
                        "value as the decision threshold", scores.size, scores[0])
        return float(scores[0])
    shape, loc, scale = scipy.stats.gamma.fit(scores)
    threshold = float(scipy.stats.gamma.ppf(percentile, shape, loc=loc, scale=scale))
    if not math.isfinite(threshold):
        raise ValueError(f"gamma fit of {scores.size} training scores gave a non-finite threshold "
                         f"(shape={shape}, loc={loc}, scale={scale})")
    return threshold


def fit_machine_thresholds(machine: Sequence[str] | np.ndarray,
                           train_scores: Sequence[float] | np.ndarray,
                           percentile: float = DECISION_PERCENTILE) -> dict[str, float]:
    """One threshold per machine type (as the baselines, one model per type): machine -> threshold.

    machine: (n,) str, the machine type of each training clip; train_scores: (n,) float.
    """
    machine = np.asarray(machine, dtype=str)
    train_scores = np.asarray(train_scores, dtype=np.float64)
    if machine.shape != train_scores.shape:
        raise ValueError(f"machine {machine.shape} and train_scores {train_scores.shape} "
                         "differ in shape")
    return {name: fit_decision_threshold(train_scores[machine == name], percentile)
            for name in sorted(set(machine.tolist()))}


def decide(test: ClipScores, thresholds: float | Mapping[str, float]) -> np.ndarray:
    """Decisions int64 (n,): 1 where score > the threshold of the clip's machine type, else 0."""
    if isinstance(thresholds, Mapping):
        missing = sorted(set(test.machine.tolist()) - set(thresholds))
        if missing:
            raise KeyError(f"no decision threshold for machine type(s) {missing}")
        per_clip = np.array([thresholds[m] for m in test.machine.tolist()], dtype=np.float64)
    else:
        per_clip = np.full(len(test), float(thresholds))
    return (test.score > per_clip).astype(np.int64)


class DetectionMetrics(NamedTuple):
    """Precision, recall, F1 of hard decisions; each float64 (num_groups, 2): source, target."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray


def detection_metrics(decision: np.ndarray, is_anomaly: np.ndarray, group: np.ndarray,
                      is_target: np.ndarray, num_groups: int | None = None) -> DetectionMetrics:
    """Precision / recall / F1 per (group, domain) as the DCASE 2022/2023 evaluators compute them.

    decision, is_anomaly, is_target: (n,) bool or 0/1; group: (n,) int in [0, num_groups).
    Every ratio divides by ``max(denominator, sys.float_info.epsilon)``, so an empty cell gives 0.
    """
    decision = np.asarray(decision).astype(bool)
    is_anomaly = np.asarray(is_anomaly).astype(bool)
    is_target = np.asarray(is_target).astype(bool)
    group = np.asarray(group, dtype=np.int64)
    num_groups = int(group.max()) + 1 if num_groups is None else num_groups
    cell = group * 2 + is_target

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(cell[mask], minlength=2 * num_groups).reshape(num_groups, 2)

    true_pos = count(decision & is_anomaly)
    false_pos = count(decision & ~is_anomaly)
    false_neg = count(~decision & is_anomaly)
    precision = true_pos / np.maximum(true_pos + false_pos, _EPS)
    recall = true_pos / np.maximum(true_pos + false_neg, _EPS)
    f1 = 2.0 * precision * recall / np.maximum(precision + recall, _EPS)
    return DetectionMetrics(precision, recall, f1)


def _float_or_none(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _means(table: Mapping[str, np.ndarray], rows: np.ndarray) -> tuple[dict, dict]:
    """Arithmetic and (epsilon-floored, as the evaluators) harmonic means of each column over rows."""
    arithmetic = {key: _float_or_none(np.mean(table[key][rows])) for key, _ in COLUMNS}
    harmonic = {key: _float_or_none(metrics.harmonic_mean(table[key][rows])) for key, _ in COLUMNS}
    return arithmetic, harmonic


def summarize(method: str, test: ClipScores, decision: np.ndarray,
              thresholds: float | Mapping[str, float] | None = None, *, max_fpr: float = MAX_FPR,
              percentile: float | None = DECISION_PERCENTILE) -> dict[str, Any]:
    """Every figure of one scoring method as a JSON-ready dict (schema in the README).

    decision: int (n,) 0/1, aligned with ``test``. thresholds: per machine type, one for all,
    or None when unknown (e.g. recomputed from someone's CSVs). Unlabelled test sets give the
    clip counts only (``"labelled": false``, no metrics). Undefined figures (e.g. an AUC of a
    section without anomalies) are ``None`` (JSON null).
    """
    if not len(test):
        raise ValueError(f"no test clips to summarize for method {method!r}")
    decision = np.asarray(decision)
    if decision.shape != (len(test),) or not np.isin(decision, (0, 1)).all():
        raise ValueError(f"decisions must be 0/1 of shape ({len(test)},), got shape {decision.shape}")
    keys, group = test.sections()
    labelled = test.labelled
    summary: dict[str, Any] = {
        "method": method,
        "labelled": labelled,
        "max_fpr": max_fpr,
        "decision_percentile": percentile if thresholds is not None else None,
        "num_clips": len(test),
        "official_score": None,
        "official_score_ci95": None,
        "arithmetic_mean": None,
        "harmonic_mean": None,
        "machines": {},
    }
    for machine in sorted({m for m, _ in keys}):
        threshold = thresholds.get(machine) if isinstance(thresholds, Mapping) else thresholds
        summary["machines"][machine] = {
            "threshold": None if threshold is None else float(threshold), "sections": {}}
    for index, (machine, section) in enumerate(keys):
        in_section = group == index
        counts: dict[str, int] = {"clips": int(in_section.sum()),
                                  "anomalous_decisions": int(decision[in_section].sum())}
        if labelled:
            for domain in DOMAINS:
                for label, label_name in ((0, "normal"), (1, "anomaly")):
                    counts[f"{domain}_{label_name}"] = int(np.count_nonzero(
                        in_section & (test.domain == domain) & (test.label == label)))
        summary["machines"][machine]["sections"][f"{section:02d}"] = {"counts": counts}
    if not labelled:
        return summary

    is_target = test.domain == "target"
    is_anomaly = test.label == 1
    section_metrics = metrics.section_metrics(test.score, group, is_target, is_anomaly,
                                              num_groups=len(keys), max_fpr=max_fpr)
    detection = detection_metrics(decision, is_anomaly, group, is_target, num_groups=len(keys))
    table: dict[str, np.ndarray] = dict(section_metrics._asdict())  # auc_source, ..., pauc_target
    for name, values in detection._asdict().items():
        for column, domain in enumerate(DOMAINS):
            table[f"{name}_{domain}"] = values[:, column]

    for index, (machine, section) in enumerate(keys):
        row = summary["machines"][machine]["sections"][f"{section:02d}"]
        row.update({key: _float_or_none(table[key][index]) for key, _ in COLUMNS})
    group_machine = [machine for machine, _ in keys]
    per_machine_scores = metrics.machine_scores(section_metrics, group_machine)
    for machine, entry in summary["machines"].items():
        rows = np.array([m == machine for m in group_machine])
        entry["official_score"] = _float_or_none(per_machine_scores[machine]["official_score"])
        entry["arithmetic_mean"], entry["harmonic_mean"] = _means(table, rows)
    summary["arithmetic_mean"], summary["harmonic_mean"] = _means(table, np.ones(len(keys), bool))
    summary["official_score"] = _float_or_none(metrics.official_score(section_metrics))
    summary["official_score_ci95"] = _jackknife_summary(test, summary["official_score"], max_fpr)
    return summary


def _jackknife_summary(test: ClipScores, official_score: float | None,
                       max_fpr: float) -> dict[str, float | None] | None:
    """The 2023 evaluator's jackknife "official score ci95", JSON-ready; None if undefined.

    The evaluator pools all clips and reports the mean half-width of the AUC and pAUC
    intervals; low/high are the official score minus/plus that half-width.
    """
    anomalous = int(np.count_nonzero(test.label == 1))
    if min(anomalous, len(test) - anomalous) < 2:  # a leave-one-out set would lack a class
        return None
    interval = metrics.jackknife_interval(test.score, test.label == 1, max_fpr=max_fpr)
    document = {key: _float_or_none(value) for key, value in interval._asdict().items()}
    half_width = document["half_width"]
    if official_score is None or half_width is None:
        document["low"] = document["high"] = None
    else:
        document["low"], document["high"] = official_score - half_width, official_score + half_width
    return document


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as the DCASE baselines write them: ``csv.writer`` with ``\\n`` line ends, floats as repr."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    return buffer.getvalue()


def write_submission(results_dir: str | os.PathLike, test: ClipScores,
                     decision: np.ndarray) -> list[epath.Path]:
    """Writes the anomaly-score and decision CSVs of every (machine, section); returns the paths.

    Rows are sorted by file name, as the evaluators sort them on reading.
    """
    results_dir = storage.path(results_dir)
    decision = np.asarray(decision, dtype=np.int64)
    keys, group = test.sections()
    paths = []
    for index, (machine, section) in enumerate(keys):
        rows = np.flatnonzero(group == index)
        rows = rows[np.argsort(test.file_name[rows], kind="stable")]
        names = test.file_name[rows].tolist()
        for kind, values in (("anomaly_score", [float(v) for v in test.score[rows]]),
                             ("decision_result", [int(v) for v in decision[rows]])):
            path = results_dir / submission_file_name(kind, machine, section)
            write_atomic(path, csv_text(zip(names, values)))
            paths.append(path)
    return paths


def result_csv_text(summary: Mapping[str, Any]) -> str:
    """``result.csv`` in the layout of the DCASE 2022/2023 baselines and the 2023 evaluator."""
    headers = [header for _, header in COLUMNS]

    def value(figure: float | None) -> float:
        return math.nan if figure is None else float(figure)

    lines: list[list[Any]] = []
    for machine, entry in summary["machines"].items():
        lines.append([machine])
        lines.append(["section", *headers])
        for section, row in entry["sections"].items():
            lines.append([section, *(value(row[key]) for key, _ in COLUMNS)])
        lines.append(["arithmetic mean", *(value(entry["arithmetic_mean"][key]) for key, _ in COLUMNS)])
        lines.append(["harmonic mean", *(value(entry["harmonic_mean"][key]) for key, _ in COLUMNS)])
        lines.append([])
    lines.append(["", *headers])
    for mean, label in (("arithmetic_mean", "arithmetic mean"), ("harmonic_mean", "harmonic mean")):
        lines.append([f"{label} over all machine types, sections, and domains",
                      *(value(summary[mean][key]) for key, _ in COLUMNS)])
    lines.append([])
    lines.append(["official score", "", value(summary["official_score"])])
    ci95 = summary.get("official_score_ci95") or {}
    lines.append(["official score ci95", "", value(ci95.get("half_width"))])
    return csv_text(lines)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}"


def markdown_report(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown tables for one or more methods, side by side (Table 3 of the MIMII DG paper).

    Rows: machine type / section, then each machine type's arithmetic and harmonic means, then
    the means over all machine types and sections; per method the columns AUC source, AUC
    target and pAUC in percent. A second table gives each method's official score with its
    jackknife interval and harmonic means.
    """
    labelled = {name: s for name, s in summaries.items() if s["labelled"]}
    lines = ["# Anomaly detection results", ""]
    for name, summary in summaries.items():
        if not summary["labelled"]:
            lines.append(f"- `{name}`: no ground truth for these {summary['num_clips']} test clips; "
                         "submission files written, metrics not computed.")
    if not labelled:
        return "\n".join(lines) + "\n"
    lines += ["AUC and pAUC in %; AUC source/target use the domain's normal clips and all anomalous "
              f"clips of the section; pAUC at max FPR {next(iter(labelled.values()))['max_fpr']}. "
              "Harmonic means floor each value at machine epsilon, as the DCASE evaluators do.", ""]
    header = ["Machine type", "Section"]
    for name in labelled:
        header += [f"{name} {title}" if len(labelled) > 1 else title for _, title in REPORT_COLUMNS]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join([" --- ", " --- "] + [" ---: "] * (len(header) - 2)) + "|")

    def cells(pick) -> list[str]:
        out = []
        for summary in labelled.values():
            row = pick(summary)
            out += [_percent(None if row is None else row.get(key)) for key, _ in REPORT_COLUMNS]
        return out

    machines = sorted({m for s in labelled.values() for m in s["machines"]})
    for machine in machines:
        sections = sorted({sec for s in labelled.values() for sec in s["machines"].get(machine, {})
                           .get("sections", {})})
        first = True
        for section in sections:
            row = cells(lambda s: s["machines"].get(machine, {}).get("sections", {}).get(section))
            lines.append("| " + " | ".join([machine if first else "", section, *row]) + " |")
            first = False
        for mean, label in (("arithmetic_mean", "Arithmetic mean"), ("harmonic_mean", "Harmonic mean")):
            row = cells(lambda s: s["machines"].get(machine, {}).get(mean))
            lines.append("| " + " | ".join(["", label, *row]) + " |")
    for mean, label in (("arithmetic_mean", "Arithmetic mean"), ("harmonic_mean", "Harmonic mean")):
        lines.append("| " + " | ".join(["All", label, *cells(lambda s: s[mean])]) + " |")

    lines += ["", summary_table(labelled), ""]
    lines.append("Official score: harmonic mean of AUC source, AUC target and pAUC over all machine "
                 "types and sections (DCASE 2023); 95 % CI: official score +- the DCASE 2023 "
                 "evaluator's jackknife half-width over the pooled clips.")
    return "\n".join(lines) + "\n"


def summary_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table, one row per method: official score, its 95 % interval and the harmonic
    means of AUC source, AUC target and pAUC, in percent ("n/a" where unknown, e.g. no labels)."""
    lines = ["| Method | Official score (%) | 95 % CI (%) | h-mean AUC source (%) "
             "| h-mean AUC target (%) | h-mean pAUC (%) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, summary in summaries.items():
        ci95 = summary.get("official_score_ci95") or {}
        interval = (f"{_percent(ci95.get('low'))} – {_percent(ci95.get('high'))}"
                    if ci95.get("low") is not None else "n/a")
        means = summary["harmonic_mean"] or {}
        lines.append(f"| {name} | {_percent(summary['official_score'])} | {interval} | "
                     + " | ".join(_percent(means.get(key)) for key, _ in REPORT_COLUMNS) + " |")
    return "\n".join(lines)


def _json_text(document: Any) -> str:
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def write_method_files(method_dir: str | os.PathLike, summary: Mapping[str, Any]) -> None:
    """Writes ``result.csv`` (labelled sets only), ``summary.json`` and ``report.md`` of one method."""
    method_dir = storage.path(method_dir)
    if summary["labelled"]:
        write_atomic(method_dir / "result.csv", result_csv_text(summary))
    write_atomic(method_dir / "summary.json", _json_text(summary))
    write_atomic(method_dir / "report.md", markdown_report({summary["method"]: summary}))


def _check_method_name(method: str) -> None:
    if (not method or method in (".", "..") or any(c in method for c in "/\\")
            or method != method.strip()):
        raise ValueError(f"method name {method!r} must be a plain folder name")


def evaluate_method(results_dir: str | os.PathLike, method: str, test: ClipScores,
                    thresholds: float | Mapping[str, float], *, max_fpr: float = MAX_FPR,
                    percentile: float | None = DECISION_PERCENTILE) -> dict[str, Any]:
    """Decisions, submission CSVs, result.csv, summary.json and report.md of one scoring method.

    Everything goes to ``<results_dir>/<method>/``. thresholds: from :func:`fit_machine_thresholds`
    (or one float); percentile is only recorded. Returns the summary (see :func:`summarize`).
    """
    _check_method_name(method)
    method_dir = storage.path(results_dir) / method
    decision = decide(test, thresholds)
    write_submission(method_dir, test, decision)
    summary = summarize(method, test, decision, thresholds, max_fpr=max_fpr, percentile=percentile)
    write_method_files(method_dir, summary)
    return summary


def clip_table(tests: Sequence[Mapping[str, np.ndarray]], scores: Sequence[np.ndarray]) -> ClipScores:
    """Per-clip metadata of test splits (as :func:`mdg.data.tfds_builder.load_split` returns them:
    ``machine``, ``section``, ``file_name``, ``domain`` -1/0/1, ``label``) + their scores -> one table."""
    def column(name):
        return np.concatenate([t[name] for t in tests])
    domain_names = np.array(["unknown", "source", "target"])
    return ClipScores(machine=column("machine"), section=column("section"), file_name=column("file_name"),
                      domain=domain_names[column("domain") + 1], label=column("label"),
                      score=np.concatenate(scores))


def write_results(results_dir: str | os.PathLike, tests: Sequence[Mapping[str, np.ndarray]],
                  test_scores: Mapping[str, Sequence[np.ndarray]], thresholds: Mapping[str, Mapping[str, float]],
                  *, max_fpr: float = MAX_FPR, percentile: float = DECISION_PERCENTILE
                  ) -> tuple[str, dict[str, dict[str, Any]]]:
    """Submission files and summaries of every method, then the side-by-side report.

    Args:
      tests: the test split of every unit (per-clip metadata, see :func:`clip_table`).
      test_scores: per method, the test clip scores of every unit, in the same order.
      thresholds: per method, the decision threshold of each machine type
        (:func:`fit_machine_thresholds` on the training clips' scores).
    Returns:
      (the markdown report, {method: summary}).
    """
    summaries = {method: evaluate_method(results_dir, method, clip_table(tests, scores), thresholds[method],
                                         max_fpr=max_fpr, percentile=percentile)
                 for method, scores in test_scores.items()}
    return write_report(results_dir, summaries), summaries


def write_report(results_dir: str | os.PathLike, summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Writes ``<results_dir>/report.md`` and ``summary.json`` of all methods; returns the markdown."""
    if not summaries:
        raise ValueError("no method summaries to report")
    results_dir = storage.path(results_dir)
    markdown = markdown_report(summaries)
    document = {
        "official_scores": {name: s["official_score"] for name, s in summaries.items()},
        "methods": dict(summaries),
    }
    write_atomic(results_dir / "summary.json", _json_text(document))
    write_atomic(results_dir / "report.md", markdown)
    return markdown
