"""docs/fault_kinds.py: the re-drawn fault kind is the generator's, and the per-kind AUC against
scikit-learn on a table whose answer is known."""

import importlib.util
import pathlib

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from mdg.data import synthetic

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
