"""Which synthetic faults does a run detect? AUC per fault kind of a finished run's scores.

The synthetic test clips' file names do not say which fault an anomalous clip has (as on the real
data); the generator draws it from the clip's own seed, so it is re-drawn here (a short synthesis
of each anomalous clip with the run's generator settings). Per score and machine type, the AUC of
each kind's clips against the normal clips of their (section, domain), averaged over the
(section, domain) cells: below 0.5, the score ranks that fault *more* normal than normal clips.

With ``--paired`` it also scores each anomalous clip's fault-free twin: the same clip (every random
draw the same: machine, attributes, environment) rendered at a fault severity so small that the fault
changes nothing (``FAULT_FREE``), through the run's own model and scores. The twins' AUC against the
normal clips is what that kind's AUC would be if the model ignored the fault (with 10 normal clips
per cell it is not 0.5 but chance plus sampling noise), and the paired difference, score with the
fault minus score of the twin in units of the cell's normal-score spread, is what the fault itself
does to the score, free of that noise.

    python docs/fault_kinds.py WORKDIR      # a finished run on the built-in synthetic dataset
    python docs/fault_kinds.py WORKDIR --paired     # + fault-free twins (re-scores: minutes)
"""

import argparse
import dataclasses
import pathlib
import re

import ml_collections
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from mdg import objectives, score_methods, sharding, train, units, workdir_guard
from mdg.data import features, prepare, synthetic, tfds_builder

_ANOMALY = re.compile(r"section_(\d+)_(source|target)_test_anomaly_(\d+)")
# Fault severity of the fault-free twins: every part of the fault scaled by 1e-9 (a level fault 180 dB
# down, a speed / voltage / delay change or a ratio 1e-9 of the way; anomalies.severity_db /
# severity_ratio); the generator's other draws (and so the clip's normal sound) are unchanged.
FAULT_FREE = 1e-9


def fault_kind(machine: str, file_name: str, seed: int, fault_severity: float) -> str:
    """The fault kind of a synthetic test clip ("normal" for a normal clip)."""
    match = _ANOMALY.match(file_name)
    if not match:
        return "normal"
    return synthetic.synthesize_clip(machine, int(match[1]), match[2], "test", "anomaly", int(match[3]), seed=seed,
                                     duration_s=0.5, fault_severity=fault_severity).anomaly


def _kind_cells(table: pd.DataFrame, kind: str, score: str):
    """(normal clips' ``score``, the kind's rows) of each (section, domain) cell of ``table`` holding both."""
    for _, cell in table.groupby(["section", "domain"]):
        normal, faulty = cell[cell["kind"] == "normal"][score], cell[cell["kind"] == kind]
        if len(normal) and len(faulty):
            yield normal, faulty


def _auc(normal: pd.Series, faulty: pd.Series) -> float:
    return roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(faulty))], np.r_[normal, faulty])


def _kinds(table: pd.DataFrame) -> list[str]:
    return sorted(set(table["kind"]) - {"normal"})


def kind_aucs(table: pd.DataFrame, score: str) -> dict[str, float]:
    """{kind: mean AUC over (section, domain) cells} of ``table`` (one machine type's test clips with
    columns section, domain, kind and ``score``)."""
    return {kind: float(np.mean([_auc(normal, faulty[score]) for normal, faulty in _kind_cells(table, kind, score)]))
            for kind in _kinds(table)}


def twin_log_mels(config: ml_collections.ConfigDict, test: dict) -> np.ndarray:
    """(clips, frames, mels) log-Mel of a unit's test clips, the anomalous ones replaced by their
    fault-free twins (the run's generator settings at severity ``FAULT_FREE``)."""
    fault_free = dataclasses.replace(synthetic.RenderSettings.of(prepare.synthetic_settings(config)),
                                     fault_severity=FAULT_FREE)
    log_mel = np.array(test["log_mel"][:])
    waveforms = []
    for row in np.flatnonzero(test["label"] == 1):
        match = _ANOMALY.match(str(test["file_name"][row]))
        twin = synthetic.synthesize_clip(
            str(test["machine"][row]), int(match[1]), match[2], "test", "anomaly", int(match[3]),
            **dataclasses.asdict(fault_free))
        waveforms.append((row, twin.pcm.astype(np.float32) / 32768))
    for row, twin_log_mel in features.log_mel_stream(
            waveforms, **tfds_builder.feature_settings(dict(config.features))):
        log_mel[row] = twin_log_mel
    return log_mel


def twin_scores(workdir: pathlib.Path) -> pd.DataFrame:
    """The run's scores of every anomalous test clip's fault-free twin: columns class (machine type),
    file_name and ``twin_anomaly_score_<method>`` per score method of the run (the clip table's score
    column names with ``twin_`` before them)."""
    config = ml_collections.ConfigDict(workdir_guard.read_run_config(workdir))
    objective, methods = objectives.from_config(config), score_methods.from_config(config)
    mesh = sharding.make_mesh(config.train.num_devices or None)
    frames = []
    for unit in units.iterate_units(config, prepare.prepare(config)):
        graphdef, state = train.train_unit(config, unit, mesh, workdir, allow_training=False)
        twins = dataclasses.replace(unit, test={**unit.test, "log_mel": twin_log_mels(config, unit.test)})
        scored = score_methods.score_unit(config, twins, graphdef, {"params": state["params"], "rest": state["rest"]},
                                          mesh, objective, methods)
        anomalous = unit.test["label"] == 1
        frames.append(pd.DataFrame({"class": unit.test["machine"][anomalous].astype(str),
                                    "file_name": unit.test["file_name"][anomalous].astype(str),
                                    **{f"twin_anomaly_score_{m}": scored.scores[m][1][anomalous] for m in methods}}))
    return pd.concat(frames, ignore_index=True)


def paired_effects(table: pd.DataFrame, score: str) -> dict[str, tuple[float, float, float]]:
    """{kind: (AUC of the twins, share of clips the fault raised, median rise)} of ``table`` (one
    machine type's test clips with columns section, domain, kind, ``score`` and ``twin_<score>``, the
    twin score of the anomalous clips). The rise is (score - twin score) / the standard deviation
    of the normal clips' scores of the clip's (section, domain) cell; the AUC is the mean over cells."""
    result = {}
    for kind in _kinds(table):
        cells = list(_kind_cells(table, kind, score))
        twin_auc = np.mean([_auc(normal, faulty[f"twin_{score}"]) for normal, faulty in cells])
        rises = np.concatenate([(faulty[score] - faulty[f"twin_{score}"]) / max(float(np.std(normal)), 1e-12)
                                for normal, faulty in cells])
        result[kind] = (float(twin_auc), float(np.mean(rises > 0)), float(np.median(rises)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=pathlib.Path)
    parser.add_argument("--paired", action="store_true", help="also score each anomalous clip's fault-free twin")
    args = parser.parse_args()
    for needed in ("config.json", "results/clips.parquet"):
        if not (args.workdir / needed).is_file():
            raise SystemExit(f"{args.workdir / needed}: missing; WORKDIR must be a finished mdg.main run")
    config = workdir_guard.read_run_config(args.workdir)
    if config["data"]["root"]:
        raise SystemExit(f"{args.workdir}: a run on {config['data']['root']}, not on the built-in synthetic data")
    settings = config["data"]["synthetic"]
    table = pd.read_parquet(args.workdir / "results" / "clips.parquet")
    table = table[table["split"] == "test"].copy()
    table["kind"] = [fault_kind(machine, name, settings["seed"], settings["fault_severity"])
                     for machine, name in zip(table["class"], table["file_name"])]
    scores = [c for c in table.columns if c.startswith("anomaly_score_")]
    if args.paired:
        table = table.merge(twin_scores(args.workdir), on=["class", "file_name"], how="left")
        scores = [s for s in scores if f"twin_{s}" in table.columns]
    print(f"{args.workdir}: AUC per fault kind (mean over section x domain cells)")
    if args.paired:
        print("twins: the AUC of the kind's fault-free twins; raised: the share of its clips whose score the "
              "fault raised; by: the median rise, in standard deviations of the cell's normal scores")
    print("| machine type | score | AUC per fault kind |")
    print("|---|---|---|")
    for machine, rows in table.groupby("class"):
        for score in scores:
            aucs = kind_aucs(rows, score)
            text = ", ".join(f"{k} {a:.2f}" for k, a in aucs.items())
            if args.paired:
                text = ", ".join(f"{k} {aucs[k]:.2f} (twins {t:.2f}; raised {r:.0%}, by {d:+.2f} sd)"
                                 for k, (t, r, d) in paired_effects(rows, score).items())
            print(f"| {machine} | {score.removeprefix('anomaly_score_')} | {text} |")


if __name__ == "__main__":
    main()
