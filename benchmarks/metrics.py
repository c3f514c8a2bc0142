"""Official-score computation: mdg.metrics against the DCASE evaluators' way, same run.

The evaluators' way is one scikit-learn ``roc_auc_score`` call per section for AUC (source),
AUC (target) and pAUC, then ``scipy.stats.hmean`` of all of them floored at epsilon
(``dcase2023_task2_evaluator.py``); data are split per section beforehand, as the evaluators
read one CSV per section, and that split is not timed. Ours is ``section_metrics`` (one
compiled call for all sections) plus ``official_score``; compile time is measured separately
as the first call.

Sets (200 clips per section: 100 per domain, 50 normal / 50 anomalous in each):
  small  21 sections (DCASE 2022 size: 7 machine types x 3 sections)
  large  2100 sections: 100x more sections, the case that grows the evaluators' Python loop
  long   21 sections x 20000 clips: 100x more clips per section, where scikit-learn's own
         sort dominates its time (reported for honesty; the gain is far smaller)
Scores are float32 values, as our models produce and the CSVs hold; the evaluators get them as
float64. "ours f64" feeds float64 scores that are not float32 values (a tiny monotone stretch,
which leaves every figure unchanged), exercising the exact-rank path.

Also the jackknife "official score ci95" of the 2023 evaluator (2 x N leave-one-out
scikit-learn calls over all clips pooled) at DCASE 2023 size: 7 machine types x 1 section x 200
clips = 1400 clips.

Prints a table and one JSON line. Run: ``python benchmarks/metrics.py [--repeats 5]``.
Timings are wall-clock medians (CPU-time ratios alongside, as the machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import jax
import numpy as np
import scipy.stats
from sklearn.metrics import roc_auc_score

from mdg import metrics

MAX_FPR = 0.1
TOLERANCE = 1e-6
SETS = {"small": (21, 200), "large": (2100, 200), "long": (21, 20000)}


def make_set(num_sections: int, clips_per_section: int, seed: int = 0):
    """Flat per-clip arrays; scores float32 with anomalies shifted up (AUC around 0.75)."""
    rng = np.random.default_rng(seed)
    quarter = clips_per_section // 4
    within = np.arange(clips_per_section)
    is_target = np.tile(within >= 2 * quarter, num_sections)
    is_anomaly = np.tile((within % (2 * quarter)) >= quarter, num_sections)
    group = np.repeat(np.arange(num_sections), clips_per_section)
    scores = (rng.normal(size=group.size) + 0.9 * is_anomaly).astype(np.float32)
    return scores, group, is_target, is_anomaly


def evaluator_official_score(sections):
    """The evaluators' loop over pre-split sections: 3 roc_auc_score calls each, then hmean."""
    auc_source, auc_target, pauc = [], [], []
    for scores, is_target, is_anomaly in sections:
        pauc.append(roc_auc_score(is_anomaly, scores, max_fpr=MAX_FPR))
        for domain, out in ((False, auc_source), (True, auc_target)):
            chosen = (is_target == domain) | is_anomaly
            out.append(roc_auc_score(is_anomaly[chosen], scores[chosen]))
    values = np.array(auc_source + auc_target + pauc)
    return scipy.stats.hmean(np.maximum(values, sys.float_info.epsilon)), values


def ours_official_score(scores, group, is_target, is_anomaly, num_groups):
    result = metrics.section_metrics(scores, group, is_target, is_anomaly, num_groups)
    return metrics.official_score(result), np.concatenate(
        [result.auc_source, result.auc_target, result.pauc])


def evaluator_jackknife(is_anomaly, scores):
    """The evaluator's jackknife_estimate for AUC and pAUC; returns the mean half-width."""
    n = scores.size
    half_widths = []
    for max_fpr in (None, MAX_FPR):
        theta_i = np.array([roc_auc_score(np.delete(is_anomaly, i), np.delete(scores, i),
                                          max_fpr=max_fpr) for i in range(n)])
        sigma = np.sqrt(np.sum((theta_i - theta_i.mean())**2) / (n * (n - 1)))
        half_widths.append(abs(scipy.stats.t.ppf(0.025, n - 1)) * sigma)
    return float(np.mean(half_widths))


def timed(function, repeats: int):
    """(result, median wall seconds, median CPU seconds) over ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = jax.block_until_ready(function())
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return result, float(np.median(walls)), float(np.median(cpus))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of fast runs")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"devices: {jax.devices()}  load average: {os.getloadavg()}")

    record = {"benchmark": "metrics", "clips_per_section": 200, "small_sections": 21,
              "large_sections": 2100, "long_clips_per_section": 20000}
    rows = []
    for name, (num_sections, per_section) in SETS.items():
        scores, group, is_target, is_anomaly = make_set(num_sections, per_section)
        scores64 = scores.astype(np.float64)
        sections = [(scores64[group == g], is_target[group == g], is_anomaly[group == g])
                    for g in range(num_sections)]
        stretched = scores64 * (1.0 + 2.0**-40)  # same order and ties, not float32 values
        arguments = (group, is_target, is_anomaly, num_sections)

        (want, want_values), evaluator_s, evaluator_cpu = timed(
            lambda: evaluator_official_score(sections), 1 if name == "large" else args.repeats)
        compile_s = {}
        results = {}
        for label, data in (("f32", scores), ("f64", stretched)):
            start = time.perf_counter()
            ours_official_score(data, *arguments)
            compile_s[label] = time.perf_counter() - start
            results[label] = timed(lambda: ours_official_score(data, *arguments),
                                   args.repeats * (4 if name == "small" else 1))
            got, got_values = results[label][0]
            difference = float(np.max(np.abs(got_values - want_values)))
            assert max(difference, abs(got - want)) <= TOLERANCE, (name, label, difference)
            record[f"max_abs_diff_{name}_{label}"] = max(difference, abs(got - want))
        ours_s, ours_cpu = results["f32"][1], results["f32"][2]
        record.update({
            f"evaluator_{name}_s": evaluator_s, f"ours_{name}_ms": ours_s * 1e3,
            f"ours_{name}_f64_ms": results["f64"][1] * 1e3,
            f"compile_{name}_s": compile_s["f32"], f"compile_{name}_f64_s": compile_s["f64"],
            f"ratio_{name}": evaluator_s / ours_s,
            f"ratio_{name}_f64": evaluator_s / results["f64"][1],
            f"cpu_ratio_{name}": evaluator_cpu / ours_cpu,
        })
        rows.append((name, f"{num_sections} x {per_section}", f"{evaluator_s * 1e3:.1f}",
                     f"{ours_s * 1e3:.2f}", f"{results['f64'][1] * 1e3:.2f}",
                     f"{compile_s['f32']:.2f}", f"{evaluator_s / ours_s:.0f}x",
                     f"{evaluator_cpu / ours_cpu:.0f}x"))

    scores, _, _, is_anomaly = make_set(7, 200)
    want, evaluator_s, _ = timed(
        lambda: evaluator_jackknife(is_anomaly, scores.astype(np.float64)), 1)
    metrics.jackknife_interval(scores, is_anomaly)
    got, ours_s, _ = timed(lambda: metrics.jackknife_interval(scores, is_anomaly).half_width,
                           args.repeats)
    assert abs(got - want) <= TOLERANCE, (got, want)
    record.update({"jackknife_evaluator_s": evaluator_s, "jackknife_ours_ms": ours_s * 1e3,
                   "jackknife_ratio": evaluator_s / ours_s})
    rows.append(("jackknife", f"{scores.size} pooled", f"{evaluator_s * 1e3:.0f}",
                 f"{ours_s * 1e3:.2f}", "", "", f"{evaluator_s / ours_s:.0f}x", ""))

    header = ("set", "sections x clips", "evaluator ms", "ours ms", "ours f64 ms",
              "compile s", "speed-up", "cpu speed-up")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(v).rjust(w) for v, w in zip(row, widths)))
    record["load_average"] = os.getloadavg()[0]
    print(json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) else v
                      for k, v in record.items()}))


if __name__ == "__main__":
    main()
