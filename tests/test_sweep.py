"""The sweep runner end to end (tiny grid: 2 variants x 2 seeds) and the comparison statistics."""

import csv
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from mdg import compare
from mdg import sweep as mdg_sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]


def sweep(workdir, cache, *flags, config="configs/sweeps/dg_losses.py:tiny"):
    env = dict(os.environ, MDG_CACHE=str(cache), JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "mdg.sweep", "--config", config,
                           "--workdir", str(workdir), *flags], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200)


def test_tiny_sweep_table_matches_the_runs_and_resumes(tmp_path):
    workdir, cache = tmp_path / "sweep", tmp_path / "cache"
    first = sweep(workdir, cache, "--parallel=2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "4 to run" in first.stdout and "[4/4]" in first.stdout
    rows = {r["method"]: r for r in csv.DictReader((workdir / "comparison.csv").open())}
    assert set(rows) == {f"{v}/{m}" for v in ("ae", "ae_mixup") for m in ("mse", "mahalanobis")}
    base = np.mean([json.loads((workdir / f"ae/seed_{s}/results/summary.json").read_text())["official_scores"]["mse"]
                    for s in (0, 1)])
    for method, row in rows.items():
        variant, score = method.split("/")
        summaries = [json.loads((workdir / f"{variant}/seed_{s}/results/summary.json").read_text()) for s in (0, 1)]
        official = [summary["official_scores"][score] for summary in summaries]
        assert int(row["seeds"]) == 2
        machines = summaries[0]["methods"][score]["machines"]
        for machine in machines:   # per machine type: mean and std over the seeds
            per_seed = [summary["methods"][score]["machines"][machine]["official_score"] for summary in summaries]
            np.testing.assert_allclose(float(row[f"official_{machine}"]), np.mean(per_seed), rtol=1e-12)
            np.testing.assert_allclose(float(row[f"official_{machine}_std"]), np.std(per_seed, ddof=1),
                                       rtol=1e-9, atol=1e-15)
        for domain in ("source", "target"):   # means over (machine type, section), then over the seeds
            per_section = [[section[f"auc_{domain}"] for machine in summary["methods"][score]["machines"].values()
                            for section in machine["sections"].values()] for summary in summaries]
            np.testing.assert_allclose(float(row[f"amean_auc_{domain}_mean"]), np.mean(per_section), rtol=1e-12)
            np.testing.assert_allclose(float(row[f"hmean_auc_{domain}_mean"]),
                                       np.mean([stats.hmean(np.maximum(a, np.finfo(float).eps)) for a in per_section]),
                                       rtol=1e-9)
        np.testing.assert_allclose(float(row["official_mean"]), np.mean(official), rtol=1e-12)
        np.testing.assert_allclose(float(row["official_std"]), np.std(official, ddof=1), rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(float(row["diff_to_baseline"]), np.mean(official) - base, atol=1e-12)
        assert float(row["diff_low"]) <= float(row["diff_high"])
    # The baseline against itself: its interval is the point 0, not two independent seed resamples.
    assert float(rows["ae/mse"]["diff_low"]) == float(rows["ae/mse"]["diff_high"]) == 0.0
    markdown = (workdir / "comparison.md").read_text()
    assert "ae/seed_1/results/report.html" in markdown and "diff to ae/mse" in markdown
    assert "| mean AUC source (%) | mean AUC target (%) |" in markdown
    assert all(f"| {m} (%) |" in markdown for m in machines) and " ± " in markdown

    # A second call finds every run finished and only rewrites the table.
    again = sweep(workdir, cache)
    assert again.returncode == 0 and "4 finished, 0 to run" in again.stdout
    commands = sweep(workdir, cache, "--print_commands")
    lines = (workdir / "commands.txt").read_text().splitlines()
    assert commands.returncode == 0 and len(lines) == 4 and all("mdg.main" in line for line in lines)


ONE_RUN_SWEEP = """
import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.seeds = (0,)
    c.bootstrap = 10
    c.variants = {"ae": "configs/ae.py:tiny"}
    c.baseline = "ae/mse"
    return c
"""


def test_a_finished_run_is_rescored_after_a_scoring_change_and_kept_when_unchanged(tmp_path):
    """The tiny AE scores with mse and mahalanobis; the variant then asks for mse alone (a scoring
    key): the sweep re-scores the run with --mode evaluate, the trained model kept. Unchanged, the
    run is skipped; changed in a training key, it is refused and left as it is."""
    workdir, cache, config = tmp_path / "sweep", tmp_path / "cache", tmp_path / "one_run.py"
    config.write_text(ONE_RUN_SWEEP)
    run = workdir / "ae" / "seed_0"
    first = sweep(workdir, cache, config=str(config))
    assert first.returncode == 0 and "1 to run, 0 to re-score" in first.stdout, first.stdout[-3000:]
    checkpoints = sorted(p.relative_to(run) for p in (run / "checkpoints").rglob("*"))
    metrics = (run / "metrics.jsonl").read_text()

    mse_only = "--config.variants.ae=configs/ae.py:tiny --config.eval.scores=mse"
    rescored = sweep(workdir, cache, mse_only, config=str(config))
    assert rescored.returncode == 0, rescored.stdout[-3000:] + rescored.stderr[-3000:]
    assert "0 finished, 0 to run, 1 to re-score" in rescored.stdout
    assert "ae/seed_0: to re-score, its scoring settings changed: eval.scores ('mse,mahalanobis' -> 'mse')" \
        in rescored.stdout
    assert "[1/1] ae/seed_0: re-scored" in rescored.stdout
    assert set(json.loads((run / "results/summary.json").read_text())["official_scores"]) == {"mse"}
    (moved,) = (run / "replaced").iterdir()
    assert sorted(p.name for p in moved.iterdir()) == ["config.json", "results"]
    assert sorted(p.relative_to(run) for p in (run / "checkpoints").rglob("*")) == checkpoints
    assert (run / "metrics.jsonl").read_text() == metrics     # restored, not trained again
    assert "restore fan: step" in (run / "sweep_output.txt").read_text()

    again = sweep(workdir, cache, mse_only, config=str(config))
    assert again.returncode == 0, again.stdout[-3000:]
    assert "1 finished, 0 to run, 0 to re-score" in again.stdout
    assert len(list((run / "replaced").iterdir())) == 1

    summary = (run / "results/summary.json").read_text()
    other = sweep(workdir, cache, mse_only + " --config.train.learning_rate=0.5", config=str(config))
    assert other.returncode == 1, other.stdout[-3000:]
    assert "0 to re-score, 1 not run (see above)" in other.stdout and "ae/seed_0: not run: " in other.stdout
    assert "differing keys: train.learning_rate (0.001 -> 0.5)" in other.stdout
    assert "--restart" not in other.stdout       # mdg.main's advice; the sweep has no such flag
    assert (run / "results/summary.json").read_text() == summary
    assert len(list((run / "replaced").iterdir())) == 1

    # --collect compares only runs finished with their command's config: none here.
    collected = sweep(workdir, cache, mse_only + " --config.train.learning_rate=0.5", "--collect", config=str(config))
    assert collected.returncode == 1, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert "left out of the comparison: ae/seed_0" in collected.stdout
    assert "no run is finished with this sweep's config" in collected.stdout

    # A command that gives no config (a misspelt key): one line for the run, no traceback.
    broken = sweep(workdir, cache, "--config.variants.ae=configs/ae.py:tiny --config.eval.scorse=mse", config=str(config))
    assert broken.returncode == 1 and "Traceback" not in broken.stderr, broken.stderr[-3000:]
    assert "ae/seed_0: not run: its command '--config configs/ae.py:tiny --config.seed=0 --config.eval.scorse=mse' " \
        "gives no config" in broken.stdout
    assert (run / "results/summary.json").read_text() == summary


def _fake_run(rng, scores_shift):
    group = np.repeat(np.arange(3), 40)
    is_target = np.tile(np.repeat([False, True], 20), 3)
    is_anomaly = np.tile(np.repeat([False, True, False, True], 10), 3)
    scores = rng.normal(size=120) + scores_shift * is_anomaly
    return compare.RunScores(summary={}, keys=np.arange(120).astype(str), group=group, is_target=is_target,
                             is_anomaly=is_anomaly, scores={"m": scores})


def test_resampled_official_matches_sklearn_per_replicate():
    rng = np.random.default_rng(0)
    run = _fake_run(rng, 1.0)
    resamples = compare.stratified_resamples(run.group, run.is_target, run.is_anomaly, 3, rng)
    cell = run.group * 4 + run.is_target * 2 + run.is_anomaly
    for row in resamples:
        assert np.array_equal(np.sort(cell[row]), np.sort(cell))   # every cell keeps its size
    got = compare.resampled_official(run, "m", resamples)
    for replicate, row in enumerate(resamples):
        figures = []
        s, g, t, a = run.scores["m"][row], run.group[row], run.is_target[row], run.is_anomaly[row]
        for section in range(3):
            in_section = g == section
            for domain in (False, True):
                keep = in_section & ((t == domain) | a)
                figures.append(roc_auc_score(a[keep], s[keep]))
            figures.append(roc_auc_score(a[in_section], s[in_section], max_fpr=0.1))
        np.testing.assert_allclose(got[replicate], len(figures) / np.sum(1 / np.array(figures)), rtol=1e-12)


def test_difference_interval_separates_a_real_gap_and_covers_none():
    rng = np.random.default_rng(1)
    strong = [_fake_run(rng, 2.0) for _ in range(3)]
    weak = [_fake_run(rng, 0.5) for _ in range(3)]
    low, high = compare.difference_interval(strong, "m", weak, "m", replicates=100)
    assert 0 < low < high
    same = [_fake_run(rng, 1.0) for _ in range(3)]
    low, high = compare.difference_interval(same, "m", same, "m", replicates=100)
    assert low <= 0 <= high
    with pytest.raises(ValueError, match="same test clips"):
        other = _fake_run(rng, 1.0)
        other.keys = other.keys[::-1]
        compare.difference_interval([other], "m", same, "m", replicates=10)


def test_two_scores_of_the_same_runs_share_their_seed_resamples():
    """Two scores equal on every clip but of seeds that differ: paired (the same training runs) the
    difference is 0 in every replicate; the same seeds drawn independently would spread it."""
    rng = np.random.default_rng(2)
    runs = [_fake_run(rng, shift) for shift in (0.5, 1.0, 2.0)]
    for run in runs:
        run.scores["copy"] = run.scores["m"].copy()
    assert compare.difference_interval(runs, "copy", runs, "m", replicates=100) == (0.0, 0.0)
    low, high = compare.difference_interval(runs, "copy", list(runs), "m", replicates=100)
    assert low < 0 < high


def test_one_bootstrap_scores_each_method_once_and_gives_every_row_its_own_interval(monkeypatch):
    """A sweep's rows share one Bootstrap: the baseline's per-seed figures are computed once, not
    once per row, and each row's interval is the one a comparison of that pair alone gives."""
    rng = np.random.default_rng(3)
    baseline, a, b = ([_fake_run(rng, shift) for _ in range(3)] for shift in (1.0, 0.5, 2.0))
    alone = [compare.difference_interval(runs, "m", baseline, "m", replicates=50) for runs in (a, b, baseline)]
    calls = []
    scored = compare.resampled_official
    monkeypatch.setattr(compare, "resampled_official", lambda run, *args: calls.append(run) or scored(run, *args))
    bootstrap = compare.Bootstrap(baseline[0], replicates=50)
    shared = [bootstrap.difference_interval(runs, "m", baseline, "m") for runs in (a, b, baseline)]
    assert shared == alone
    assert len(calls) == 9   # three seeds of three (runs, method) pairs, the baseline's once


@pytest.mark.parametrize("sweep_variant", ["", "cpu", "baselines", "machine_section", "tiny"])
def test_every_run_of_the_sweep_configs_is_a_valid_main_config(sweep_variant, monkeypatch):
    """Each run's config file, its ``:variant`` and every ``--config.KEY=VALUE`` override resolve
    as ``mdg.main`` would parse them (an unknown key or variant fails here, not an hour into a sweep)."""
    spec = importlib.util.spec_from_file_location("dg_losses", ROOT / "configs/sweeps/dg_losses.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runs = mdg_sweep.sweep_runs(module.get_config(sweep_variant))
    assert runs
    monkeypatch.chdir(ROOT)   # the config files are named relative to the project, as the sweep runs them
    for run in runs:
        config = mdg_sweep.run_config(run)
        assert config.seed == run.seed
        _, *overrides = run.arguments
        for override in overrides:
            key, value = override.removeprefix("--config.").split("=", 1)
            node = config
            for part in key.split("."):
                node = node[part]
            assert str(node) == value, (run, key)
