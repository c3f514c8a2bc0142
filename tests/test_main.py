"""The main command end to end on the built-in synthetic data (tiny variants), as a user runs it."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mdg_cache")


def main(cache, *args, check=True):
    env = dict(os.environ, MDG_CACHE=str(cache), JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "mdg.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


# An absl-format INFO record (``I1129 15:45:26.233397 1397... file.py:25] message``; on the
# console it may follow a progress bar's carriage return) and its file name.
ABSL_INFO = re.compile(r"\bI\d{4} [\d:.]+ +\d+ ([\w.]+):\d+\]")
LIBRARY_INFO = ("dataset_builder.py", "checkpoint_manager.py")  # TFDS, orbax


def test_autoencoder_main_job_then_evaluate_mode(cache, tmp_path):
    proc = main(cache, "--config", "configs/ae.py:tiny", "--workdir", str(tmp_path))
    assert "| mse |" in proc.stdout and "| mahalanobis |" in proc.stdout
    # The console: stage lines, bars and the outputs, no INFO records; log.txt has them all.
    assert not ABSL_INFO.findall(proc.stderr + proc.stdout)
    for stage in ("prepare: log-Mel shards of fan, valve", "train fan: step", "score fan: mse, mahalanobis",
                  "train valve: step", f"write results: {tmp_path / 'results'}"):
        assert stage in proc.stderr
    assert f"report       {tmp_path / 'results' / 'report.md'}" in proc.stdout
    assert f"full log     {tmp_path / 'log.txt'}" in proc.stdout
    logged = (tmp_path / "log.txt").read_text()
    assert set(LIBRARY_INFO) <= set(ABSL_INFO.findall(logged))
    assert "train fan: step" in logged and "| mahalanobis |" in logged
    results = tmp_path / "results"
    for method in ("mse", "mahalanobis"):
        for kind in ("anomaly_score", "decision_result"):
            for machine in ("fan", "valve"):
                for section in ("00", "01", "02"):
                    rows = (results / method / f"{kind}_{machine}_section_{section}_test.csv").read_text().splitlines()
                    assert len(rows) == 8 and all(r.count(",") == 1 for r in rows)
        assert (results / method / "result.csv").exists()
    summary = json.loads((results / "summary.json").read_text())
    assert set(summary["official_scores"]) == {"mse", "mahalanobis"}
    assert all(0 <= v <= 1 for v in summary["official_scores"].values())
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["name"] == "autoencoder"
    epochs = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {r["unit"] for r in epochs} == {"fan", "valve"} and all("val_loss" in r for r in epochs)

    # Scoring again from the finished checkpoints gives the same figures, without training;
    # --log_level=info shows the libraries' INFO records too.
    again = main(cache, "--config", "configs/ae.py:tiny", "--workdir", str(tmp_path), "--mode", "evaluate",
                 "--log_level=info")
    assert "train fan" not in again.stderr and "restore fan: step" in again.stderr
    assert "checkpoint_manager.py" in ABSL_INFO.findall(again.stderr)
    assert json.loads((results / "summary.json").read_text()) == summary

    # Other scoring settings score the trained models anew; the previous results are kept aside.
    rescored = main(cache, "--config", "configs/ae.py:tiny", "--workdir", str(tmp_path), "--mode", "evaluate",
                    "--config.eval.scores=mse")
    assert "only the scoring settings changed (eval.scores ('mse,mahalanobis' -> 'mse'))" in rescored.stderr
    assert json.loads((results / "summary.json").read_text())["official_scores"] == {
        "mse": summary["official_scores"]["mse"]}
    (moved,) = (tmp_path / "replaced").iterdir()
    assert json.loads((moved / "results" / "summary.json").read_text()) == summary


def test_mobilenet_main_job_reports_both_scores(cache, tmp_path):
    proc = main(cache, "--config", "configs/mobilenet_v2.py:tiny", "--workdir", str(tmp_path))
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert set(summary["official_scores"]) == {"neg_logit", "knn"}
    assert "| neg_logit |" in proc.stdout and "| knn |" in proc.stdout


def test_evaluate_mode_without_checkpoints_is_a_clear_error(cache, tmp_path):
    proc = main(cache, "--config", "configs/ae.py:tiny", "--workdir", str(tmp_path), "--mode", "evaluate",
                check=False)
    assert proc.returncode != 0 and "no finished checkpoint" in proc.stderr


def test_bad_inputs_fail_clearly(cache, tmp_path):
    typo = main(cache, "--config", "configs/ae.py:tiny", "--config.train.lerning_rate=0.1", check=False)
    assert typo.returncode != 0 and "lerning_rate" in typo.stderr
    missing = main(cache, "--config", "configs/ae.py:tiny", "--workdir", str(tmp_path),
                   f"--config.data.root={tmp_path / 'nowhere'}", check=False)
    assert missing.returncode != 0 and "nowhere" in missing.stderr and "not a folder" in missing.stderr
