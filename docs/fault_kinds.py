"""Which synthetic faults does a run detect? AUC per fault kind of a finished run's scores.

The synthetic test clips' file names do not say which fault an anomalous clip has (as on the real
data); the generator draws it from the clip's own seed, so it is re-drawn here (a short synthesis
of each anomalous clip with the run's generator settings). Per score and machine type, the AUC of
each kind's clips against the normal clips of their (section, domain), averaged over the
(section, domain) cells: below 0.5, the score ranks that fault *more* normal than normal clips.

    python docs/fault_kinds.py WORKDIR      # a finished run on the built-in synthetic dataset
"""

import argparse
import json
import pathlib
import re

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from mdg.data import synthetic

_ANOMALY = re.compile(r"section_(\d+)_(source|target)_test_anomaly_(\d+)")


def fault_kind(machine: str, file_name: str, seed: int, fault_severity: float) -> str:
    """The fault kind of a synthetic test clip ("normal" for a normal clip)."""
    match = _ANOMALY.match(file_name)
    if not match:
        return "normal"
    return synthetic.synthesize_clip(machine, int(match[1]), match[2], "test", "anomaly", int(match[3]), seed=seed,
                                     duration_s=0.5, fault_severity=fault_severity).anomaly


def kind_aucs(table: pd.DataFrame, score: str) -> dict[str, float]:
    """{kind: mean AUC over (section, domain) cells} of ``table`` (one machine type's test clips with
    columns section, domain, kind and ``score``)."""
    result = {}
    for kind in sorted(set(table["kind"]) - {"normal"}):
        aucs = []
        for _, cell in table.groupby(["section", "domain"]):
            normal, faulty = cell[cell["kind"] == "normal"][score], cell[cell["kind"] == kind][score]
            if len(normal) and len(faulty):
                labels = np.r_[np.zeros(len(normal)), np.ones(len(faulty))]
                aucs.append(roc_auc_score(labels, np.r_[normal, faulty]))
        result[kind] = float(np.mean(aucs))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=pathlib.Path)
    args = parser.parse_args()
    config = json.loads((args.workdir / "config.json").read_text())
    if config["data"]["root"]:
        raise SystemExit(f"{args.workdir}: a run on {config['data']['root']}, not on the built-in synthetic data")
    settings = config["data"]["synthetic"]
    table = pd.read_parquet(args.workdir / "results" / "clips.parquet")
    table = table[table["split"] == "test"].copy()
    table["kind"] = [fault_kind(machine, name, settings["seed"], settings.get("fault_severity", 1.0))
                     for machine, name in zip(table["class"], table["file_name"])]
    scores = [c for c in table.columns if c.startswith("anomaly_score_")]
    print(f"{args.workdir}: AUC per fault kind (mean over section x domain cells)")
    print("| machine type | score | AUC per fault kind |")
    print("|---|---|---|")
    for machine, rows in table.groupby("class"):
        for score in scores:
            aucs = kind_aucs(rows, score)
            print(f"| {machine} | {score.removeprefix('anomaly_score_')} | "
                  + ", ".join(f"{k} {a:.2f}" for k, a in aucs.items()) + " |")


if __name__ == "__main__":
    main()
