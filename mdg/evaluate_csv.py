"""Scores any system's DCASE submission CSVs against the ground truth (CLI).

    python -m mdg.evaluate_csv --results DIR --data_root DIR [--ground_truth DIR] [--out DIR]

``--results`` holds ``anomaly_score_<machine>_section_<XX>_test.csv`` and
``decision_result_<machine>_section_<XX>_test.csv`` (rows ``<wav file name>,<value>``, no header),
ours or anyone's. ``--data_root`` holds ``<machine>/test/`` of the same set: development-set
names carry label and domain; evaluation-set names do not, so pass the official evaluator's
ground-truth folder with ``--ground_truth``. Every figure is recomputed (the decisions are taken
from the decision CSVs as submitted) and ``result.csv``, ``summary.json`` and ``report.md`` are
written to ``--out`` (default: the results folder); the table is printed.

UTF-8 with or without a BOM, line ends LF or CRLF. Rows must match the test clips exactly: a missing or extra row, a duplicate file name, an
unparsable or non-finite number, or a decision other than 0/1 stops with an error naming the
CSV file and line.
"""
from __future__ import annotations

import argparse
import csv
import math
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from mdg import errors, evaluate
from mdg.data import layout

TEST_SPLIT = "test"
_SHOWN_NAMES = 3


class SubmissionError(errors.UserError):
    """A submission CSV is missing, malformed, or does not match the test clips."""


def read_value_csv(path: str | pathlib.Path, decision: bool = False) -> dict[str, tuple[float, int]]:
    """Reads ``<wav file name>,<value>`` rows: file name -> (value, 1-based line number).

    decision=True requires each value to be 0 or 1 (written as an integer or a float).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: submission file not found")
    rows: dict[str, tuple[float, int]] = {}
    with open(path, newline="", encoding="utf-8-sig") as file:  # a BOM (Excel) is skipped
        reader = csv.reader(file)
        try:
            for row in reader:
                line = reader.line_num
                if len(row) != 2:
                    raise SubmissionError(f"{path}:{line}: expected '<wav file name>,<value>' "
                                          f"(2 fields), got {len(row)} field(s): {row!r}")
                name, text = row[0].strip(), row[1].strip()
                if not name:
                    raise SubmissionError(f"{path}:{line}: empty file name")
                try:
                    value = float(text)
                except ValueError:
                    raise SubmissionError(f"{path}:{line}: cannot parse {text!r} as a number") from None
                if not math.isfinite(value):
                    raise SubmissionError(f"{path}:{line}: value {text!r} is not a finite number")
                if decision and value not in (0.0, 1.0):
                    raise SubmissionError(f"{path}:{line}: decision {text!r} is neither 0 nor 1")
                if name in rows:
                    raise SubmissionError(f"{path}:{line}: duplicate file name {name!r} "
                                          f"(first on line {rows[name][1]})")
                rows[name] = (value, line)
        except (csv.Error, UnicodeDecodeError) as error:
            raise SubmissionError(f"{path}:{reader.line_num}: unreadable CSV: {error}") from None
    return rows


def _match(path: pathlib.Path, rows: dict[str, tuple[float, int]], expected: Sequence[str],
           where: str) -> np.ndarray:
    """Values of rows in the order of expected names; errors on missing or extra names."""
    extra = sorted(set(rows) - set(expected), key=lambda name: rows[name][1])
    if extra:
        name = extra[0]
        raise SubmissionError(f"{path}:{rows[name][1]}: {name!r} is not a test clip of {where} "
                              f"({len(extra)} such row(s))")
    missing = [name for name in expected if name not in rows]
    if missing:
        raise SubmissionError(f"{path}: no row for {len(missing)} of the {len(expected)} test clips "
                              f"of {where}, e.g. {missing[:_SHOWN_NAMES]}")
    return np.array([rows[name][0] for name in expected], dtype=np.float64)


def read_submission(results_dir: str | pathlib.Path,
                    clips: Sequence[Any]) -> tuple[evaluate.ClipScores, np.ndarray]:
    """Reads the submission CSVs of every (machine, section) that ``clips`` hold.

    clips: ``mdg.data.layout.Clip`` test records. Returns the scores (in clip order) and the
    submitted decisions, int64 (n,).
    """
    results_dir = pathlib.Path(results_dir)
    if not results_dir.is_dir():
        raise SubmissionError(f"{results_dir}: results folder not found")
    if not clips:
        raise SubmissionError("no test clips to score")
    by_section: dict[tuple[str, int], list[int]] = {}
    for index, clip in enumerate(clips):
        by_section.setdefault((clip.machine, clip.section), []).append(index)
    scores = np.empty(len(clips), dtype=np.float64)
    decisions = np.empty(len(clips), dtype=np.int64)
    for (machine, section), indices in sorted(by_section.items()):
        names = [clips[i].file_name for i in indices]
        where = f"{machine} section {section:02d}"
        for kind, target, is_decision in (("anomaly_score", scores, False),
                                          ("decision_result", decisions, True)):
            path = results_dir / evaluate.submission_file_name(kind, machine, section)
            target[indices] = _match(path, read_value_csv(path, is_decision), names, where)
    return evaluate.ClipScores.from_clips(clips, scores), decisions


def load_test_clips(data_root: str | pathlib.Path,
                    ground_truth: str | pathlib.Path | None = None) -> list[Any]:
    """Test clips of every machine type under data_root, labelled from names or ground_truth."""
    data_root = pathlib.Path(data_root)
    machines = layout.list_machine_types(data_root)
    if not machines:
        raise SubmissionError(f"{data_root}: no machine-type folders with a {TEST_SPLIT}/ split")
    clips: list[Any] = []
    for machine in machines:
        machine_clips = list(layout.scan_split(data_root, machine, TEST_SPLIT))
        if ground_truth is not None:
            machine_clips = list(layout.read_eval_ground_truth(ground_truth, machine, machine_clips))
        clips.extend(machine_clips)
    return clips


def evaluate_folder(results_dir: str | pathlib.Path, data_root: str | pathlib.Path,
                    ground_truth: str | pathlib.Path | None = None,
                    out_dir: str | pathlib.Path | None = None,
                    max_fpr: float = evaluate.MAX_FPR) -> dict[str, Any]:
    """Recomputes every figure of a submission folder, writes the result files, returns the summary."""
    results_dir = pathlib.Path(results_dir)
    clips = load_test_clips(data_root, ground_truth)
    test, decisions = read_submission(results_dir, clips)
    if not test.labelled:
        raise SubmissionError(f"{data_root}: the test clip names carry no labels (evaluation set); "
                              "pass the official ground truth with --ground_truth")
    summary = evaluate.summarize(results_dir.resolve().name, test, decisions, thresholds=None,
                                 max_fpr=max_fpr)
    evaluate.write_method_files(results_dir if out_dir is None else out_dir, summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 bad input, as ``mdg.main``)."""
    parser = argparse.ArgumentParser(prog="python -m mdg.evaluate_csv",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="folder with the submission CSVs")
    parser.add_argument("--data_root", required=True, help="folder holding <machine>/test/")
    parser.add_argument("--ground_truth", default=None,
                        help="official evaluator's ground-truth folder (evaluation sets)")
    parser.add_argument("--out", default=None,
                        help="where to write result.csv, summary.json, report.md (default: --results)")
    parser.add_argument("--max_fpr", type=float, default=evaluate.MAX_FPR, help="pAUC FPR limit")
    args = parser.parse_args(argv)
    try:
        summary = evaluate_folder(args.results, args.data_root, args.ground_truth, args.out,
                                  args.max_fpr)
    except errors.UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(evaluate.markdown_report({summary["method"]: summary}), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
