"""docs/fault_kinds.py: the re-drawn fault kind is the generator's, the per-kind AUC against
scikit-learn on a table whose answer is known, and the fault-free twins of ``--paired``: the same
clip without its fault, replacing only the anomalous rows."""

import importlib.util
import os
import subprocess
import sys
import pathlib

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from mdg import config_defaults
from mdg.data import features, synthetic

_PATH = pathlib.Path(__file__).resolve().parents[1] / "docs" / "fault_kinds.py"
_SPEC = importlib.util.spec_from_file_location("fault_kinds", _PATH)
fault_kinds = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fault_kinds)


def test_the_kind_is_the_one_the_generator_gave_the_clip():
    for index in range(4):
        clip = synthetic.synthesize_clip("valve", 1, "target", "test", "anomaly", index, seed=3, duration_s=1.0)
        assert fault_kinds.fault_kind("valve", clip.file_name, seed=3, fault_severity=1.0) == clip.anomaly
    normal = synthetic.synthesize_clip("valve", 1, "target", "test", "normal", 0, seed=3, duration_s=1.0)
    assert fault_kinds.fault_kind("valve", normal.file_name, seed=3, fault_severity=1.0) == "normal"


def test_kind_aucs_average_each_kinds_auc_over_the_cells():
    rng = np.random.default_rng(0)
    rows = []
    for section in (0, 1):
        for domain in (0, 1):
            rows += [(section, domain, "normal", s) for s in rng.normal(0, 1, 6)]
            rows += [(section, domain, "loud", s) for s in rng.normal(3, 1, 3)]      # ranked above normal
            rows += [(section, domain, "quiet", s) for s in rng.normal(-3, 1, 3)]    # ranked below
    table = pd.DataFrame(rows, columns=["section", "domain", "kind", "score"])
    expected = {}
    for kind in ("loud", "quiet"):
        cells = [roc_auc_score(np.r_[np.zeros(6), np.ones(3)],
                               np.r_[g[g.kind == "normal"].score, g[g.kind == kind].score])
                 for _, g in table.groupby(["section", "domain"])]
        expected[kind] = np.mean(cells)
    aucs = fault_kinds.kind_aucs(table, "score")
    assert aucs.keys() == expected.keys() and all(np.isclose(aucs[k], expected[k]) for k in aucs)
    assert aucs["loud"] > 0.9 and aucs["quiet"] < 0.1


def test_a_twin_is_its_clip_without_the_fault():
    """The twin keeps every other draw of the clip: at a 1e-3 severity (a level fault 60 dB down) the
    clip differs from its twin by less than 1e-2 of its RMS, at severity 1 by far more (the fault)."""
    coordinates = ("bearing", 0, "source", "test", "anomaly")
    index = next(i for i in range(20) if synthetic.synthesize_clip(*coordinates, i, duration_s=1.0).anomaly == "outer_race")
    def pcm(severity):
        return synthetic.synthesize_clip(*coordinates, index, duration_s=1.0, fault_severity=severity).pcm.astype(np.float64)
    twin = pcm(fault_kinds.FAULT_FREE)
    rms = np.sqrt(np.mean(twin ** 2))
    assert np.sqrt(np.mean((pcm(1e-3) - twin) ** 2)) < 1e-2 * rms
    assert np.sqrt(np.mean((pcm(1.0) - twin) ** 2)) > 0.2 * rms


def _log_mel(pcm: np.ndarray) -> np.ndarray:
    return np.asarray(features.log_mel(pcm[None].astype(np.float32) / 32768))[0]


def test_twin_log_mels_replace_only_the_anomalous_clips():
    config = config_defaults.base_config()
    config.data.synthetic.duration_s = 0.5
    names, labels, rows = [], [], []
    for label in ("normal", "anomaly"):
        for index in range(2):
            clip = synthetic.synthesize_clip("valve", 2, "target", "test", label, index, duration_s=0.5)
            names.append(clip.file_name)
            labels.append(int(label == "anomaly"))
            rows.append(_log_mel(clip.pcm))
    test = {"log_mel": np.stack(rows), "file_name": np.array(names), "machine": np.array(["valve"] * 4),
            "label": np.array(labels)}
    twins = fault_kinds.twin_log_mels(config, test)
    np.testing.assert_array_equal(twins[:2], test["log_mel"][:2])
    for row, index in ((2, 0), (3, 1)):
        twin = synthetic.synthesize_clip("valve", 2, "target", "test", "anomaly", index, duration_s=0.5,
                                         fault_severity=fault_kinds.FAULT_FREE)
        np.testing.assert_allclose(twins[row], _log_mel(twin.pcm), atol=1e-3)
        assert not np.allclose(twins[row], test["log_mel"][row], atol=1.0)


def test_paired_effects_against_a_table_whose_answer_is_known():
    rng = np.random.default_rng(1)
    rows = []
    for section in (0, 1):
        for domain in (0, 1):
            normal = rng.normal(0, 2, 8)
            rows += [(section, domain, "normal", s, np.nan) for s in normal]
            twins = rng.normal(0, 2, 4)
            rows += [(section, domain, "loud", t + 3 * np.std(normal), t) for t in twins]    # +3 sd each
            rows += [(section, domain, "none", t, t) for t in rng.normal(0, 2, 4)]          # no effect
    table = pd.DataFrame(rows, columns=["section", "domain", "kind", "score", "twin_score"])
    effects = fault_kinds.paired_effects(table, "score")
    cells = [roc_auc_score(np.r_[np.zeros(8), np.ones(4)],
                           np.r_[g[g.kind == "normal"].score, g[g.kind == "loud"].twin_score])
             for _, g in table.groupby(["section", "domain"])]
    assert np.isclose(effects["loud"][0], np.mean(cells))
    assert effects["loud"][1] == 1.0 and np.isclose(effects["loud"][2], 3.0)
    assert effects["none"][1] == 0.0 and effects["none"][2] == 0.0


def test_a_workdir_without_a_finished_run_is_a_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    result = subprocess.run([sys.executable, str(_PATH), str(tmp_path)], capture_output=True, text=True, timeout=120,
                            cwd=_PATH.parents[1], env={**os.environ, "PYTHONPATH": str(_PATH.parents[1])})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{tmp_path / 'results/clips.parquet'}: missing; WORKDIR must be a finished mdg.main run" in result.stderr
