"""docs/synthetic_counterfactual.py on a tiny AE run (fan, valve): an identity replacement reproduces
every clip's score; replacing the factory noise changes exactly the re-rendered clips (the source
test clips of every section whose attributes do not name the noise type)."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile

from mdg.data import synthetic

ROOT = pathlib.Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("synthetic_counterfactual",
                                               ROOT / "docs" / "synthetic_counterfactual.py")
counterfactual = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(counterfactual)

FLAGS = ["--config", "configs/ae.py:tiny", "--config.eval.scores=mse"]


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    return dict(os.environ, MDG_CACHE=str(tmp_path_factory.mktemp("cache")), JAX_PLATFORMS="cpu")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, environment):
    run = tmp_path_factory.mktemp("tiny_ae") / "run"
    subprocess.run([sys.executable, "-m", "mdg.main", *FLAGS, f"--workdir={run}"], cwd=ROOT,
                   env=environment, check=True, capture_output=True, timeout=600)
    return run


def _scores(workdir: pathlib.Path) -> pd.Series:
    clips = pd.read_parquet(workdir / "results" / "clips.parquet")
    clips = clips[clips["split"] == "test"]
    return clips.set_index(["class", "file_name"])["anomaly_score_mse"].sort_index()


def _counterfactual(tiny_run, out, replace, environment):
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "synthetic_counterfactual.py"),
                             f"--run={tiny_run}", f"--replace={replace}", f"--out={out}", "--", *FLAGS],
                            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_identity_replacement_reproduces_every_score(tiny_run, tmp_path, environment):
    stdout = _counterfactual(tiny_run, tmp_path / "same", "f-n=A:A,B:B", environment)
    pd.testing.assert_series_equal(_scores(tmp_path / "same" / "run"), _scores(tiny_run))
    assert "median anomaly score" in stdout and "counterfactual" in stdout


def test_replacement_changes_exactly_the_rerendered_clips(tiny_run, tmp_path, environment):
    _counterfactual(tiny_run, tmp_path / "noise", "f-n=A:C,B:D", environment)
    before, after = _scores(tiny_run), _scores(tmp_path / "noise" / "run")
    assert before.index.equals(after.index)
    names = before.index.get_level_values("file_name")
    sections = np.array([int(name[8:10]) for name in names])
    named = np.array(["f-n" in synthetic.SECTIONS[machine][section].attribute_names  # fan 01
                      for machine, section in zip(before.index.get_level_values("class"), sections)])
    rerendered = names.str.contains("_source_test_") & ~named
    changed = ~np.isclose(before.to_numpy(), after.to_numpy(), rtol=1e-6, atol=0)
    assert rerendered.any() and (~rerendered).any()
    np.testing.assert_array_equal(changed[~rerendered], False)
    assert changed[rerendered].mean() > 0.9, changed[rerendered]


def test_parse_replace_and_bad_dimension():
    assert counterfactual.parse_replace("n-lv=L1:L3,L2:L4;f-n=A:C") == {
        "n-lv": {"L1": "L3", "L2": "L4"}, "f-n": {"A": "C"}}
    with pytest.raises(SystemExit, match="expected dimension=from:to"):
        counterfactual.parse_replace("n-lv=L1")
    with pytest.raises(ValueError, match="valve has no environment dimension 'n-lv'"):
        synthetic.synthesize_clip("valve", 0, "source", "test", "normal", 0, duration_s=0.2,
                                  environment_replace={"n-lv": {"L1": "L3"}})
    with pytest.raises(ValueError, match=r"unknown 'f-n' value\(s\) \['Q'\]"):
        synthetic.synthesize_clip("fan", 0, "source", "test", "normal", 0, duration_s=0.2,
                                  environment_replace={"f-n": {"A": "Q"}})


def test_re_renders_with_the_runs_sample_rate_fault_severity_and_snr_spread(tmp_path):
    # A run at 8 kHz on milder faults and a wider SNR spread: an identity replacement writes its clips again.
    render = {"seed": 2, "sample_rate": 8000, "duration_s": 0.5, "fault_severity": 0.5, "snr_spread_db": 4.0}
    settings = {"machines": ["valve"], "num_source_train": 1, "num_target_train": 0, "num_test": 1, **render}
    root = counterfactual.write_counterfactual(tmp_path / "cf", settings, {"f-n": {"A": "A", "B": "B"}})
    for section in range(3):
        clip = synthetic.synthesize_clip("valve", section, "source", "test", "anomaly", 0, **render)
        written, rate = soundfile.read(root / "valve" / "test" / clip.file_name, dtype="int16")
        assert rate == 8000 and np.array_equal(written, clip.pcm)
