"""mdg.evaluate / mdg.evaluate_csv against scipy and scikit-learn, and the DCASE file formats."""
import csv
import json
import pathlib

import numpy as np
import pytest
import scipy.stats
from sklearn import metrics as skm

from mdg import evaluate, evaluate_csv
from mdg.data import layout

MACHINES = {"fan": (0, 1), "valve": (0,)}
# clips per (domain, condition) in every section
COUNTS = {("source", "normal"): 7, ("source", "anomaly"): 4,
          ("target", "normal"): 5, ("target", "anomaly"): 3}


def _touch(path: pathlib.Path) -> None:
    # layout reads names only, so empty files stand in for WAVs
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


@pytest.fixture
def dev_set(tmp_path):
    """A labelled test tree and random scores (anomalies shifted up, so AUCs are informative)."""
    root = tmp_path / "data"
    for machine, sections in MACHINES.items():
        for section in sections:
            index = 0
            for (domain, condition), count in COUNTS.items():
                for _ in range(count):
                    _touch(root / machine / "test" /
                           f"section_{section:02d}_{domain}_test_{condition}_{index:04d}_m-n_W.wav")
                    index += 1
    clips = [clip for machine in layout.list_machine_types(root)
             for clip in layout.scan_split(root, machine, "test")]
    rng = np.random.default_rng(0)
    labels = np.array([clip.label for clip in clips])
    scores = rng.gamma(2.0, 1.0, size=len(clips)) + 1.5 * labels
    return root, clips, evaluate.ClipScores.from_clips(clips, scores)


def _reference_section(test, decision, machine, section):
    """Figures of one section straight from scikit-learn, as the DCASE evaluators define them."""
    rows = (test.machine == machine) & (test.section == section)
    y, s, d, dom = test.label[rows], test.score[rows], decision[rows], test.domain[rows]
    out = {"pauc": skm.roc_auc_score(y, s, max_fpr=0.1)}
    for domain in ("source", "target"):
        auc_rows = (dom == domain) | (y == 1)
        out[f"auc_{domain}"] = skm.roc_auc_score(y[auc_rows], s[auc_rows])
        in_domain = dom == domain
        out[f"pauc_{domain}"] = skm.roc_auc_score(y[in_domain], s[in_domain], max_fpr=0.1)
        out[f"precision_{domain}"] = skm.precision_score(y[in_domain], d[in_domain], zero_division=0)
        out[f"recall_{domain}"] = skm.recall_score(y[in_domain], d[in_domain], zero_division=0)
        out[f"f1_{domain}"] = skm.f1_score(y[in_domain], d[in_domain], zero_division=0)
    return out


def test_fit_decision_threshold_is_the_gamma_quantile():
    rng = np.random.default_rng(1)
    shape, loc, scale = 3.0, 0.2, 0.5
    scores = scipy.stats.gamma.rvs(shape, loc=loc, scale=scale, size=3000, random_state=rng)
    threshold = evaluate.fit_decision_threshold(scores, 0.9)
    # the maximum-likelihood fit of a large gamma sample recovers the true 90 % quantile
    assert threshold == pytest.approx(scipy.stats.gamma.ppf(0.9, shape, loc=loc, scale=scale), rel=0.03)
    fitted = scipy.stats.gamma.fit(scores)
    assert scipy.stats.gamma.cdf(threshold, *fitted) == pytest.approx(0.9, abs=1e-9)
    assert evaluate.fit_decision_threshold(scores, 0.5) < threshold
    per_machine = evaluate.fit_machine_thresholds(["a"] * 1500 + ["b"] * 1500, scores, 0.9)
    assert per_machine["a"] == pytest.approx(evaluate.fit_decision_threshold(scores[:1500], 0.9))
    with pytest.raises(ValueError, match="percentile"):
        evaluate.fit_decision_threshold(scores, 1.0)
    # constant training scores: the constant is the cut, so only higher scores are anomalous
    assert evaluate.fit_decision_threshold(np.full(10, 0.25)) == 0.25


def test_decide_is_strictly_greater(dev_set):
    _, _, test = dev_set
    threshold = float(np.sort(test.score)[10])
    decision = evaluate.decide(test, {"fan": threshold, "valve": threshold})
    np.testing.assert_array_equal(decision, (test.score > threshold).astype(int))
    assert decision[test.score == threshold].tolist() == [0]
    with pytest.raises(KeyError, match="valve"):
        evaluate.decide(test, {"fan": 1.0})


def test_detection_metrics_match_sklearn():
    rng = np.random.default_rng(2)
    n, groups = 400, 5
    group = rng.integers(0, groups, n)
    is_target = rng.random(n) < 0.4
    is_anomaly = rng.random(n) < 0.5
    decision = rng.random(n) < 0.5
    decision[(group == 3) & is_target] = False  # a cell without positive decisions: precision 0
    got = evaluate.detection_metrics(decision, is_anomaly, group, is_target, groups)
    for g in range(groups):
        for column, target in enumerate((False, True)):
            cell = (group == g) & (is_target == target)
            y, d = is_anomaly[cell], decision[cell]
            assert got.precision[g, column] == pytest.approx(skm.precision_score(y, d, zero_division=0))
            assert got.recall[g, column] == pytest.approx(skm.recall_score(y, d, zero_division=0))
            assert got.f1[g, column] == pytest.approx(skm.f1_score(y, d, zero_division=0))


def test_summary_matches_sklearn(dev_set):
    _, _, test = dev_set
    thresholds = {"fan": 2.5, "valve": 3.0}
    decision = evaluate.decide(test, thresholds)
    summary = evaluate.summarize("mse", test, decision, thresholds)
    assert summary["labelled"] and summary["num_clips"] == len(test)
    all_rows, hmean_inputs = [], []
    for machine, sections in MACHINES.items():
        entry = summary["machines"][machine]
        assert entry["threshold"] == thresholds[machine]
        rows = []
        for section in sections:
            expected = _reference_section(test, decision, machine, section)
            got = entry["sections"][f"{section:02d}"]
            for key, value in expected.items():
                assert got[key] == pytest.approx(value, abs=1e-12), (machine, section, key)
            assert got["counts"]["source_anomaly"] == COUNTS[("source", "anomaly")]
            rows.append(expected)
            hmean_inputs += [expected["auc_source"], expected["auc_target"], expected["pauc"]]
        for key, _ in evaluate.COLUMNS:
            values = [row[key] for row in rows]
            assert entry["arithmetic_mean"][key] == pytest.approx(np.mean(values))
            assert entry["harmonic_mean"][key] == pytest.approx(
                scipy.stats.hmean(np.maximum(values, np.finfo(float).eps)))
        all_rows += rows
    for key, _ in evaluate.COLUMNS:
        assert summary["harmonic_mean"][key] == pytest.approx(
            scipy.stats.hmean(np.maximum([row[key] for row in all_rows], np.finfo(float).eps)))
    assert summary["official_score"] == pytest.approx(scipy.stats.hmean(hmean_inputs))
    fan = [value for s in summary["machines"]["fan"]["sections"].values()
           for value in (s["auc_source"], s["auc_target"], s["pauc"])]
    assert summary["machines"]["fan"]["official_score"] == pytest.approx(scipy.stats.hmean(fan))
    # the 2023 evaluator's jackknife: leave one pooled clip out, sklearn AUC and pAUC
    n = len(test)
    left_out = np.array([[skm.roc_auc_score(np.delete(test.label, i), np.delete(test.score, i),
                                            max_fpr=fpr) for i in range(n)] for fpr in (None, 0.1)])
    deviation = left_out - left_out.mean(axis=1, keepdims=True)
    sigma = np.sqrt(np.sum(deviation ** 2, axis=1) / (n * (n - 1)))
    half_width = np.mean(abs(scipy.stats.t.ppf(0.025, n - 1)) * sigma)
    ci95 = summary["official_score_ci95"]
    assert ci95["half_width"] == pytest.approx(half_width, rel=1e-9)
    assert ci95["low"] == pytest.approx(summary["official_score"] - half_width, rel=1e-9)
    assert ci95["high"] == pytest.approx(summary["official_score"] + half_width, rel=1e-9)
    json.dumps(summary, allow_nan=False)  # JSON-ready as is


def test_round_trip_through_submission_csvs(dev_set, tmp_path):
    root, _, test = dev_set
    thresholds = {"fan": 2.5, "valve": 3.0}
    written = evaluate.evaluate_method(tmp_path / "results", "mse", test, thresholds)
    method_dir = tmp_path / "results" / "mse"
    recomputed = evaluate_csv.evaluate_folder(method_dir, root, out_dir=tmp_path / "rescored")
    ignore = {"threshold", "decision_percentile"}

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ignore}
        return node

    assert strip(recomputed) == strip(written)  # identical floats, not just close
    for name in ("result.csv", "summary.json", "report.md"):
        assert (method_dir / name).is_file() and (tmp_path / "rescored" / name).is_file()
    assert (tmp_path / "results" / "mse" / "result.csv").read_text() == \
        (tmp_path / "rescored" / "result.csv").read_text()
    assert not list(method_dir.glob(".*.tmp"))  # atomic writes leave no temp files


def test_submission_csv_bytes(dev_set, tmp_path):
    _, _, test = dev_set
    decision = evaluate.decide(test, 2.5)
    out = tmp_path / "submission"
    evaluate.write_submission(out, test, decision)
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(f"{kind}_{m}_section_{s:02d}_test.csv"
                           for kind in ("anomaly_score", "decision_result")
                           for m, sections in MACHINES.items() for s in sections)
    rows = (test.machine == "fan") & (test.section == 1)
    order = np.argsort(test.file_name[rows])
    names, scores = test.file_name[rows][order], test.score[rows][order]
    decisions = decision[rows][order]
    expected = "".join(f"{n},{float(s)!r}\n" for n, s in zip(names, scores)).encode()
    assert (out / "anomaly_score_fan_section_01_test.csv").read_bytes() == expected
    expected = "".join(f"{n},{int(d)}\n" for n, d in zip(names, decisions)).encode()
    assert (out / "decision_result_fan_section_01_test.csv").read_bytes() == expected


def _rewrite(path: pathlib.Path, edit) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(edit(lines)))


@pytest.mark.parametrize("kind, edit, message", [
    ("anomaly_score", lambda lines: lines[:-1], r"no row for 1 of the 19 test clips"),
    ("anomaly_score", lambda lines: lines + ["section_01_source_test_normal_9999_m-n_W.wav,0.5\n"],
     r":20: 'section_01_source_test_normal_9999_m-n_W.wav' is not a test clip of fan section 01"),
    ("anomaly_score", lambda lines: lines + [lines[2]],
     r":20: duplicate file name .* \(first on line 3\)"),
    ("anomaly_score", lambda lines: ["file_name,score\n"] + lines,
     r":1: cannot parse 'score' as a number"),
    ("anomaly_score", lambda lines: [lines[0].split(",")[0] + ",nan\n"] + lines[1:],
     r":1: value 'nan' is not a finite number"),
    ("anomaly_score", lambda lines: [lines[0].rstrip() + ",extra\n"] + lines[1:],
     r":1: expected .* 3 field"),
    ("decision_result", lambda lines: lines[:4] + [lines[4].split(",")[0] + ",2\n"] + lines[5:],
     r":5: decision '2' is neither 0 nor 1"),
    ("decision_result", lambda lines: [], r"no row for 19 of the 19"),
])
def test_read_submission_errors(dev_set, tmp_path, kind, edit, message):
    _, clips, test = dev_set
    evaluate.write_submission(tmp_path, test, evaluate.decide(test, 2.5))
    path = tmp_path / f"{kind}_fan_section_01_test.csv"
    _rewrite(path, edit)
    with pytest.raises(evaluate_csv.SubmissionError, match=message) as error:
        evaluate_csv.read_submission(tmp_path, clips)
    assert str(path) in str(error.value)


def test_read_submission_missing_file(dev_set, tmp_path):
    _, clips, test = dev_set
    evaluate.write_submission(tmp_path, test, evaluate.decide(test, 2.5))
    (tmp_path / "decision_result_valve_section_00_test.csv").unlink()
    with pytest.raises(evaluate_csv.SubmissionError, match="decision_result_valve_section_00_test.csv: "
                       "submission file not found"):
        evaluate_csv.read_submission(tmp_path, clips)


def test_result_csv_layout(dev_set, tmp_path):
    _, _, test = dev_set
    summary = evaluate.evaluate_method(tmp_path, "mse", test, 2.5)
    with open(tmp_path / "mse" / "result.csv", newline="") as file:
        rows = list(csv.reader(file))
    headers = [header for _, header in evaluate.COLUMNS]
    assert rows[0] == ["fan"] and rows[1] == ["section", *headers]
    assert [r[0] for r in rows[2:6]] == ["00", "01", "arithmetic mean", "harmonic mean"]
    assert float(rows[2][1]) == summary["machines"]["fan"]["sections"]["00"]["auc_source"]
    assert rows[6] == [] and rows[7] == ["valve"]
    assert rows[-6] == ["", *headers]
    assert rows[-5][0] == "arithmetic mean over all machine types, sections, and domains"
    assert rows[-4][0] == "harmonic mean over all machine types, sections, and domains"
    assert rows[-3] == []
    assert rows[-2][:2] == ["official score", ""] and float(rows[-2][2]) == summary["official_score"]
    assert rows[-1][0] == "official score ci95"


def test_report_tables(dev_set, tmp_path):
    _, _, test = dev_set
    summaries = {"mse": evaluate.evaluate_method(tmp_path, "mse", test, 2.5)}
    # a second method with other scores, so the columns differ
    shifted = evaluate.ClipScores(test.machine, test.section, test.file_name, test.domain, test.label,
                                  test.score[::-1].copy())
    summaries["mahalanobis"] = evaluate.evaluate_method(tmp_path, "mahalanobis", shifted, 3.0)
    markdown = evaluate.write_report(tmp_path, summaries)
    assert (tmp_path / "report.md").read_text() == markdown
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| Machine type"))
    assert header == ("| Machine type | Section | mse AUC source (%) | mse AUC target (%) | "
                      "mse pAUC (%) | mahalanobis AUC source (%) | mahalanobis AUC target (%) | "
                      "mahalanobis pAUC (%) |")
    fan_00 = summaries["mse"]["machines"]["fan"]["sections"]["00"]
    other = summaries["mahalanobis"]["machines"]["fan"]["sections"]["00"]
    values = [fan_00["auc_source"], fan_00["auc_target"], fan_00["pauc"],
              other["auc_source"], other["auc_target"], other["pauc"]]
    assert ("| fan | 00 | " + " | ".join(f"{100 * v:.2f}" for v in values) + " |") in lines
    assert any(line.startswith("|  | 01 | ") for line in lines)  # machine named on its first row only
    hmean = summaries["mse"]["harmonic_mean"]
    row = next(line for line in lines if line.startswith("| All | Harmonic mean |"))
    assert row.split(" | ")[2] == f"{100 * hmean['auc_source']:.2f}"
    score_row = next(line for line in lines if line.startswith("| mse |"))
    assert f"{100 * summaries['mse']['official_score']:.2f}" in score_row
    combined = json.loads((tmp_path / "summary.json").read_text())
    assert combined["official_scores"] == {n: s["official_score"] for n, s in summaries.items()}
    assert combined["methods"]["mse"] == json.loads((tmp_path / "mse" / "summary.json").read_text())


def test_eval_set_with_ground_truth(tmp_path):
    root, truth = tmp_path / "eval", tmp_path / "truth"
    rng = np.random.default_rng(3)
    labels = np.array([0, 1] * 10)
    domains = np.array([0] * 12 + [1] * 8)
    names = [f"section_00_{i:04d}.wav" for i in range(20)]
    for name in names:
        _touch(root / "ToyTank" / "test" / name)
    for folder, values in (("ground_truth_data", labels), ("ground_truth_domain", domains)):
        (truth / folder).mkdir(parents=True)
        (truth / folder / "ground_truth_ToyTank_section_00_test.csv").write_text(
            "".join(f"{n},{v}\n" for n, v in zip(names, values)))
    clips = layout.scan_split(root, "ToyTank", "test")
    test = evaluate.ClipScores.from_clips(clips, rng.random(20) + labels)
    summary = evaluate.evaluate_method(tmp_path / "results", "knn", test, {"ToyTank": 1.0})
    assert not summary["labelled"] and summary["official_score"] is None
    method_dir = tmp_path / "results" / "knn"
    first_row = (method_dir / "anomaly_score_ToyTank_section_00_test.csv").read_text().split(",")[0]
    assert first_row == "section_00_0000.wav"
    assert not (method_dir / "result.csv").exists()
    with pytest.raises(evaluate_csv.SubmissionError, match="--ground_truth"):
        evaluate_csv.evaluate_folder(method_dir, root)
    scored = evaluate_csv.evaluate_folder(method_dir, root, ground_truth=truth)
    source_auc_rows = (domains == 0) | (labels == 1)
    assert scored["machines"]["ToyTank"]["sections"]["00"]["auc_source"] == pytest.approx(
        skm.roc_auc_score(labels[source_auc_rows], test.score[source_auc_rows]))


def test_cli(dev_set, tmp_path, capsys):
    root, _, test = dev_set
    evaluate.evaluate_method(tmp_path, "mse", test, 2.5)
    assert evaluate_csv.main(["--results", str(tmp_path / "mse"), "--data_root", str(root),
                              "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "| fan | 00 |" in printed and (tmp_path / "out" / "result.csv").is_file()
    (tmp_path / "mse" / "anomaly_score_valve_section_00_test.csv").write_text("garbage\n")
    assert evaluate_csv.main(["--results", str(tmp_path / "mse"), "--data_root", str(root)]) == 2
    assert "anomaly_score_valve_section_00_test.csv:1: expected" in capsys.readouterr().err


def test_clip_scores_validation(dev_set):
    _, clips, test = dev_set
    scores = test.score.copy()
    scores[3] = np.nan
    with pytest.raises(ValueError, match=clips[3].file_name):
        evaluate.ClipScores.from_clips(clips, scores)
    with pytest.raises(ValueError, match="duplicate clip"):
        evaluate.ClipScores.from_clips(clips + clips[:1], np.ones(len(clips) + 1))
    with pytest.raises(ValueError, match="plain folder name"):
        evaluate.evaluate_method("unused", "../x", test, 1.0)
