"""End to end, WAV files to the official score: mdg against the DCASE 2023 PyTorch baseline's way.

One machine type of a dataset in the DCASE layout (``<data>/<machine>/{train,test}/*.wav``; the
full-size synthetic one: 3 sections x 1000 training and 200 test clips, made by
``python -m mdg.data.synthetic --out DIR --machines fan``), the autoencoder baseline (640-128x4-8,
BN), batch 256, Adam lr 1e-3, MSE loss, 10 % of the training clips held out for a validation loss
after every epoch, the same number of epochs on both sides (10 by default: 100, the baseline's,
takes hours on a 2-core CPU), anomaly score = a clip's mean squared reconstruction error.

  mdg       ``python -m mdg.main --config configs/ae.py:full`` with a fresh cache directory, so the
            log-Mel shards are built inside the timed run; results/summary.json gives the score.
  baseline  the way of github.com/nttcslab/dcase2023_task2_baseline_ae (code written here):
            librosa log-Mels computed in the run, clip by clip (``features.librosa_features``);
            5-frame vectors; ``torch.utils.data.DataLoader`` (shuffled, batch 256) over them;
            the same network in torch.nn (``train_step.TorchAutoEncoder``), ``torch.optim.Adam``;
            scoring clip by clip (features, eval-mode forward pass, mean squared error);
            scikit-learn ``roc_auc_score`` per section (AUC source, AUC target, pAUC at
            max_fpr 0.1) and ``scipy.stats.hmean`` of them floored at epsilon, as the evaluator.

Each side runs as its own process (interpreter start and imports included in its wall time), one
after the other. The two official scores differ (different initializations and shuffles) but
should be close; both are printed.

    python benchmarks/end_to_end.py --data /tmp/e2e/data --machine fan --epochs 10

Prints both wall times and the ratio, then exactly one JSON line (the last line of stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

FRAMES, BATCH, LEARNING_RATE, VALIDATION_SPLIT, MAX_FPR = 5, 256, 1e-3, 0.1, 0.1
PROJECT = pathlib.Path(__file__).resolve().parents[1]


def run_mdg(data: pathlib.Path, machine: str, epochs: int, workdir: pathlib.Path) -> float:
    """``python -m mdg.main`` on ``data``'s ``machine`` with a fresh cache; its official score."""
    command = [sys.executable, "-m", "mdg.main", "--config", str(PROJECT / "configs/ae.py:full"),
               f"--workdir={workdir / 'run'}", f"--config.data.root={data}",
               f"--config.data.machines={machine}", f"--config.data.cache_dir={workdir / 'cache'}",
               f"--config.train.num_epochs={epochs}", "--config.eval.scores=mse"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((workdir / "run" / "results" / "summary.json").read_text())
    return float(summary["methods"]["mse"]["official_score"])


def vectors(log_mel: np.ndarray) -> np.ndarray:
    """(frames, mels) -> (frames - 4, 5 * mels): 5 consecutive frames, frame-major, the
    baseline's input vectors."""
    count = log_mel.shape[0] - FRAMES + 1
    return np.concatenate([log_mel[t:t + count] for t in range(FRAMES)], axis=1)


def run_baseline(data: pathlib.Path, machine: str, epochs: int) -> float:
    """The DCASE 2023 baseline's way (module docstring); returns the official score."""
    import scipy.stats
    from sklearn.metrics import roc_auc_score
    import torch

    from features import librosa_features
    from mdg.data import layout
    from train_step import TorchAutoEncoder

    torch.manual_seed(0)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    train_clips = layout.scan_split(data, machine, "train")
    order = np.random.default_rng(0).permutation(len(train_clips))
    held_out = int(round(VALIDATION_SPLIT * len(train_clips)))
    splits = {}
    for name, rows in (("train", order[held_out:]), ("validation", order[:held_out])):
        features = librosa_features([train_clips[i].path for i in rows])
        splits[name] = torch.from_numpy(np.concatenate([vectors(f) for f in features]))
    model = TorchAutoEncoder(splits["train"].shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(splits["train"]),
                                         batch_size=BATCH, shuffle=True)
    for epoch in range(epochs):
        model.train()
        for (batch,) in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(batch), batch)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            validation = splits["validation"]
            validation_loss = float(torch.nn.functional.mse_loss(model(validation), validation))
        print(f"baseline epoch {epoch + 1}: train loss {loss.item():.3f}, "
              f"validation loss {validation_loss:.3f}", file=sys.stderr)

    test_clips = layout.scan_split(data, machine, "test")
    scores = []
    with torch.no_grad():
        for clip in test_clips:
            x = torch.from_numpy(vectors(librosa_features([clip.path])[0]))
            scores.append(float(torch.mean(torch.square(model(x) - x))))
    scores = np.array(scores)
    section = np.array([clip.section for clip in test_clips])
    target = np.array([clip.domain == "target" for clip in test_clips])
    anomaly = np.array([clip.label == 1 for clip in test_clips])
    figures = []
    for number in np.unique(section):
        s, d, y = scores[section == number], target[section == number], anomaly[section == number]
        figures += [roc_auc_score(y[~d | y], s[~d | y]), roc_auc_score(y[d | y], s[d | y]),
                    roc_auc_score(y, s, max_fpr=MAX_FPR)]
    return float(scipy.stats.hmean(np.maximum(figures, sys.float_info.epsilon)))


def timed_process(arguments: list[str]) -> tuple[float, float]:
    """(wall seconds, official score) of this script run with ``arguments`` in a new process."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, *arguments], check=True,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))})
    seconds = time.perf_counter() - start
    return seconds, float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=pathlib.Path, required=True,
                        help="dataset root holding <machine>/{train,test}/")
    parser.add_argument("--machine", default="fan")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--side", choices=["mdg", "baseline"],
                        help="run one side in this process and print its score (internal)")
    parser.add_argument("--workdir", type=pathlib.Path,
                        help="mdg's workdir and cache (with --side mdg); must not exist")
    args = parser.parse_args()
    for split in ("train", "test"):
        if not (args.data / args.machine / split).is_dir():
            raise SystemExit(f"{args.data / args.machine / split}: folder missing "
                             f"(generate with python -m mdg.data.synthetic --out {args.data} "
                             f"--machines {args.machine})")
    if args.side == "mdg":
        print(run_mdg(args.data.resolve(), args.machine, args.epochs, args.workdir))
        return
    if args.side == "baseline":
        print(run_baseline(args.data.resolve(), args.machine, args.epochs))
        return

    common = ["--data", str(args.data), "--machine", args.machine, "--epochs", str(args.epochs)]
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="mdg_end_to_end_"))
    try:
        mdg_seconds, mdg_score = timed_process(
            [*common, "--side", "mdg", "--workdir", str(scratch / "mdg")])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    baseline_seconds, baseline_score = timed_process([*common, "--side", "baseline"])
    ratio = baseline_seconds / mdg_seconds
    print(f"{args.machine}, {args.epochs} epochs, wall time WAV -> official score:")
    print(f"  mdg       {mdg_seconds:8.1f} s   official score {mdg_score:.4f}")
    print(f"  baseline  {baseline_seconds:8.1f} s   official score {baseline_score:.4f}")
    print(f"  baseline / mdg = {ratio:.2f}x")
    print(json.dumps({"benchmark": "end_to_end", "machine": args.machine, "epochs": args.epochs,
                      "mdg_s": round(mdg_seconds, 1), "baseline_s": round(baseline_seconds, 1),
                      "ratio": round(ratio, 2), "mdg_official_score": round(mdg_score, 4),
                      "baseline_official_score": round(baseline_score, 4),
                      "cores": len(os.sched_getaffinity(0))}))


if __name__ == "__main__":
    main()
