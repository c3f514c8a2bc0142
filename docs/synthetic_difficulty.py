"""Measures how hard the synthetic dataset is with a linear-autoencoder proxy (for docs/synthetic.md).

Per machine type: PCA (the optimal linear autoencoder) fitted on 5-frame log-Mel vectors of the
normal training clips of all three sections, as the DCASE autoencoder baseline is fitted per
machine type; anomaly score = mean squared reconstruction error of a test clip's vectors (features
standardized with the training statistics). Prints the AUC per section and domain (normal vs
anomalous test clips of that domain) and per anomaly kind (its clips vs the normal clips of the
same section and domain, averaged). Clips are synthesized in memory, nothing is written.

    python docs/synthetic_difficulty.py [--machines fan,valve] [--num_source_train 100]
        [--num_test 25] [--components 24] [--seed 0]
"""

import argparse
import collections
import sys
import time

import librosa
import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

from mdg.data import synthetic

SAMPLE_RATE = 16000
CONTEXT = 5


def vectors(pcm: np.ndarray) -> np.ndarray:
    """(frames - 4, 5 * 128) stacked log-Mel frames (n_fft 1024, hop 512, dB) of int16 samples."""
    mel = librosa.feature.melspectrogram(y=pcm.astype(np.float32) / 32768, sr=SAMPLE_RATE,
                                         n_fft=1024, hop_length=512, n_mels=128, power=2.0)
    frames = (10 * np.log10(mel + 1e-10)).T
    count = frames.shape[0] - CONTEXT + 1
    return np.concatenate([frames[i:i + count] for i in range(CONTEXT)], axis=1)


def evaluate(machine: str, args) -> None:
    start = time.time()
    train = [vectors(synthetic.synthesize_clip(machine, section, domain, "train", "normal", i,
                                               seed=args.seed).pcm)
             for section in range(3)
             for domain, count in (("source", args.num_source_train), ("target", 10))
             for i in range(count)]
    train = np.concatenate(train)
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-3
    pca = PCA(n_components=args.components, random_state=0).fit((train - mean) / std)

    def score(pcm):
        z = (vectors(pcm) - mean) / std
        return float(np.mean((z - pca.inverse_transform(pca.transform(z))) ** 2))

    cells, kinds = [], collections.defaultdict(list)
    for section in range(3):
        for domain in synthetic.DOMAINS:
            normal = np.array([score(synthetic.synthesize_clip(
                machine, section, domain, "test", "normal", i, seed=args.seed).pcm)
                for i in range(args.num_test)])
            anomalous = collections.defaultdict(list)
            for i in range(args.num_test):
                clip = synthetic.synthesize_clip(machine, section, domain, "test", "anomaly", i,
                                                 seed=args.seed)
                anomalous[clip.anomaly].append(score(clip.pcm))
            everything = np.concatenate([np.array(v) for v in anomalous.values()])
            labels = np.r_[np.zeros(normal.size), np.ones(everything.size)]
            cells.append(roc_auc_score(labels, np.r_[normal, everything]))
            for kind, scores in anomalous.items():
                kinds[kind].append(roc_auc_score(np.r_[np.zeros(normal.size), np.ones(len(scores))],
                                                 np.r_[normal, scores]))
    source, target = np.mean(cells[0::2]), np.mean(cells[1::2])
    print(f"| {machine} | " + " | ".join(f"{auc:.2f}" for auc in cells)
          + f" | {source:.2f} | {target:.2f} | "
          + ", ".join(f"{kind} {np.mean(v):.2f}" for kind, v in sorted(kinds.items())) + " |",
          flush=True)
    print(f"{machine}: {time.time() - start:.0f} s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", default=",".join(synthetic.MIMII_DG_MACHINE_TYPES))
    parser.add_argument("--num_source_train", type=int, default=100,
                        help="source training clips per section (plus all 10 target ones)")
    parser.add_argument("--num_test", type=int, default=25,
                        help="test clips per (section, domain, label)")
    parser.add_argument("--components", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| machine | 00 src | 00 tgt | 01 src | 01 tgt | 02 src | 02 tgt | mean src | mean tgt "
          "| AUC per anomaly kind |")
    print("|---" * 10 + "|")
    for machine in args.machines.split(","):
        evaluate(machine, args)


if __name__ == "__main__":
    main()
