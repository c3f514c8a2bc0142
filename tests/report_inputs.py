"""Synthetic inputs of mdg.report: the per-row numpy columns a run hands over, written WAVs,
results/ from mdg.evaluate (submission CSVs, summary.json) and a metrics.jsonl. No training."""
from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import soundfile

from mdg import evaluate

SECTIONS = {"fan": (0, 1), "valve": (0,)}
TRAIN_COUNTS = {"source": 12, "target": 3}
TEST_COUNTS = {("source", 0): 6, ("source", 1): 4, ("target", 0): 5, ("target", 1): 3}
EMBEDDING_DIM = 48
SAMPLE_RATE = 16000
CLIP_SECONDS = 0.25
METHODS = ("mse", "lof")


@dataclasses.dataclass
class Run:
    workdir: pathlib.Path
    results_dir: pathlib.Path
    data_root: pathlib.Path
    clips: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    decisions: dict[str, np.ndarray]
    thresholds: dict[str, dict[str, float]]
    embeddings: np.ndarray
    summaries: dict


def _rows() -> list[dict]:
    rows = []
    for machine, sections in SECTIONS.items():
        for section in sections:
            index = 0
            for domain, count in TRAIN_COUNTS.items():
                for _ in range(count):
                    rows.append(dict(split="train", machine=machine, section=section, domain=domain,
                                     label=0, index=index))
                    index += 1
            index = 0
            for (domain, label), count in TEST_COUNTS.items():
                for _ in range(count):
                    rows.append(dict(split="test", machine=machine, section=section, domain=domain,
                                     label=label, index=index))
                    index += 1
    return rows


def make_run(tmp_path: pathlib.Path, seed: int = 0) -> Run:
    """A finished run's workdir without the report: results/<method>/, summary.json, metrics.jsonl."""
    rng = np.random.default_rng(seed)
    rows = _rows()
    data_root = tmp_path / "data"
    workdir = tmp_path / "workdir"
    results_dir = workdir / "results"
    names, attribute_names, attribute_values = [], [], []
    for row in rows:
        condition = "anomaly" if row["label"] else "normal"
        speed = str(rng.choice(["6", "8"]))
        # fan clips carry two attribute pairs, valve clips one
        pairs = (("spd", speed), ("mic", "1")) if row["machine"] == "fan" else (("v1pat", "02"),)
        tail = "_".join(f"{n}_{v}" for n, v in pairs)
        name = (f"section_{row['section']:02d}_{row['domain']}_{row['split']}_{condition}_"
                f"{row['index']:04d}_{tail}.wav")
        names.append(name)
        attribute_names.append(tuple(n for n, _ in pairs))
        attribute_values.append(tuple(v for _, v in pairs))
        path = data_root / row["machine"] / row["split"] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, 0.1 * rng.standard_normal(int(SAMPLE_RATE * CLIP_SECONDS)), SAMPLE_RATE,
                        subtype="PCM_16")

    def objects(values):
        out = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):
            out[i] = value
        return out

    clips = {
        "split": np.array([r["split"] for r in rows]),
        "file_name": np.array(names),
        "machine": np.array([r["machine"] for r in rows]),
        "section": np.array([r["section"] for r in rows], dtype=np.int32),
        "domain": np.array([0 if r["domain"] == "source" else 1 for r in rows], dtype=np.int32),
        "label": np.array([r["label"] for r in rows], dtype=np.int32),
        "attribute_names": objects(attribute_names),
        "attribute_values": objects(attribute_values),
    }
    label, domain = clips["label"], clips["domain"]
    embeddings = rng.standard_normal((len(rows), EMBEDDING_DIM)).astype(np.float32)
    embeddings[:, 0] += 3.0 * label + 1.5 * domain + clips["section"]
    scores = {"mse": rng.gamma(2.0, 1.0, len(rows)) + 1.5 * label + 0.5 * domain,
              "lof": 1.0 + rng.gamma(3.0, 0.1, len(rows)) + 0.4 * label}
    is_train = clips["split"] == "train"
    test_rows = ~is_train
    test = evaluate.ClipScores(
        machine=clips["machine"][test_rows], section=clips["section"][test_rows],
        file_name=clips["file_name"][test_rows],
        domain=np.where(domain[test_rows] == 1, "target", "source"), label=label[test_rows],
        score=np.zeros(int(test_rows.sum())))
    thresholds, decisions, summaries = {}, {}, {}
    for method, score in scores.items():
        thresholds[method] = evaluate.fit_machine_thresholds(clips["machine"][is_train], score[is_train])
        per_row = np.array([thresholds[method][m] for m in clips["machine"]])
        decisions[method] = (score > per_row).astype(np.int64)
        summaries[method] = evaluate.evaluate_method(
            results_dir, method, dataclasses.replace(test, score=score[test_rows]), thresholds[method])
    evaluate.write_report(results_dir, summaries)

    lines = []
    for unit in SECTIONS:
        for epoch in range(1, 6):
            lines.append({"unit": unit, "step": 4 * epoch, "epoch": epoch, "loss": 10.0 / epoch,
                          "val_loss": 11.0 / epoch + 0.2, "epoch_time_s": 0.5,
                          "samples_per_s": 1000.0 + epoch, **({"compile_s": 1.2} if epoch == 1 else {})})
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return Run(workdir, results_dir, data_root, clips, scores, decisions, thresholds, embeddings, summaries)
