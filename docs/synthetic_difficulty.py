"""Data-quality report of the synthetic dataset (for docs/synthetic.md): separability and difficulty.

Per machine type, on clips synthesized in memory (nothing is written), log-Mel as the baselines
(128 bands, n_fft 1024, hop 512, dB):

1. Separability: 5-fold cross-validated accuracy of a logistic regression on standardized
   clip-mean log-Mel, for the section of source training clips (chance 1/3) and, per section, for
   its attribute values (chance 1 / number of source values).
2. Anomaly displacement per kind and domain: the distance of an anomalous test clip's clip-mean
   log-Mel to the mean of the normal test clips of its section and domain (standardized with the
   normal training statistics), divided by the same distance of the normal test clips: 1 means the
   kind does not move a clip beyond the normal spread.
3. AUCs of two proxies of the baselines, per section and domain (normal vs anomalous test clips):
   a linear autoencoder (PCA, 24 components, on standardized 5-frame log-Mel vectors, fitted per
   machine type on the source and target training clips, as the DCASE autoencoder baseline) scoring
   mean squared reconstruction error, and a linear section classifier (the logistic regression of
   1. on all training clips) scoring the negative log-probability of the clip's own section, as
   the MobileNetV2 baseline's negative logit.
4. Classifier proxy (`classifier_proxy`): the MobileNetV2 baseline's class-posterior score without
   the network. Clip features: mean and standard deviation over time of the log-Mel (float64); a
   multinomial logistic regression trained on all training clips to predict the section, or the
   (section, attribute values) class as the DCASE 2023 classifiers; score log(1 - p) - log(p) of
   the clip's class (p the largest probability among its section's classes when its attribute
   values were not in training, as mdg.scoring.negative_logit_rows). AUC per section and domain,
   and per anomaly kind (each kind against the normal clips of its section and domain, averaged
   over sections and domains): below 0.5 means the classifier is MORE confident on that kind than
   on normal clips. Run it at the MobileNetV2 default size (--num_source_train 10
   --num_target_train 2) to compare with the default runs.
5. Temporal dynamics and clip-to-clip differences against the real recordings: per clip, the
   spread of its frame energies (90th minus 10th percentile of the log-Mel frame energy, dB) and
   the mean over bands of each band's standard deviation over time (dB); per pair of clips, the
   mean over bands of the absolute difference of their clip-mean log-Mel (dB). Means over the
   source normal training clips (pairs: within section 00), and over the normal clips of the same
   machine type in the real DCASE development data under ``--real`` (pairs: the training clips;
   default: the DCASE 2023 slice beside the project, ../shared/data/dcase2023_dev_slice, if there,
   else the project's fixture tests/data/dcase2023: one clip per type, some cut to 2 s). How much a
   machine's events stand out of its background (a loud click over a quiet floor spreads widely),
   and how much two normal recordings of a machine differ. And how much of the normal clips'
   frame-to-frame variation an 8-dimensional code cannot hold (the AE's bottleneck): the share of
   the variance of their standardized 5-frame vectors (as the AE's input) outside the first 8
   principal components; synthetic: as many section 00 source training clips as there are real
   ones (at least 3), so that both pools hold as many clips.
6. Fault magnitudes against the real anomalies: the change of an anomalous clip's clip-mean
   log-Mel from the mean of the normal clips of its domain (synthetic: its section's normal test
   clips; real: the real normal clips of its domain, training and test, under ``--real``), as the
   mean change in each quarter of the Mel bands (0-31, 32-63, 64-95, 96-127; dB, signed) and the
   mean absolute change over all bands (dB); beside it the same figure of the normal clips (their
   mean absolute difference from their own mean; NaN with one clip). Synthetic: the median over
   the clips of each anomaly kind; real: each anomalous clip that has normal clips of its domain,
   against those with its attribute values where there are any (the DCASE names carry no fault
   kind). How strong a synthetic fault is against a real one, in the units the models see.

    python docs/synthetic_difficulty.py [--machines fan,valve] [--num_source_train 60]
        [--num_target_train 10] [--num_test 20] [--duration 10] [--seed 0] [--fault_severity 1]
        [--real DEV_DATA]
"""

import argparse
import collections
import pathlib
import sys
import time

import jax
import librosa
import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mdg import scoring
from mdg.data import audio, layout, synthetic

SAMPLE_RATE = 16000
CONTEXT = 5
PROJECT = pathlib.Path(__file__).resolve().parents[1]
REAL_DATA = (PROJECT.parent / "shared" / "data" / "dcase2023_dev_slice" / "dev_data",
             PROJECT / "tests" / "data" / "dcase2023" / "dev_data")


def log_mel(waveform: np.ndarray) -> np.ndarray:
    """(frames, 128) dB log-Mel frames (n_fft 1024, hop 512) of samples in [-1, 1]."""
    mel = librosa.feature.melspectrogram(y=waveform.astype(np.float32), sr=SAMPLE_RATE,
                                         n_fft=1024, hop_length=512, n_mels=128, power=2.0)
    return (10 * np.log10(mel + 1e-10)).T


def dynamics(frames: np.ndarray) -> tuple[float, float]:
    """(frame-energy spread, mean band std) in dB of one clip's (frames, bands) dB log-Mel (item 5)."""
    energy = 10 * np.log10(np.sum(10 ** (frames / 10), axis=1))
    return float(np.percentile(energy, 90) - np.percentile(energy, 10)), float(frames.std(axis=0).mean())


def pair_difference(frames: list[np.ndarray]) -> float:
    """Mean over the pairs of clips (each (frames, bands) dB log-Mel) of the mean absolute
    difference of their clip-mean log-Mel (dB); NaN with fewer than two clips (item 5)."""
    means = [f.mean(axis=0) for f in frames]
    pairs = [np.abs(a - b).mean() for i, a in enumerate(means) for b in means[i + 1:]]
    return float(np.mean(pairs)) if pairs else float("nan")


def stacked(frames: np.ndarray) -> np.ndarray:
    """(frames - 4, 5 * 128) vectors of 5 consecutive frames."""
    count = frames.shape[0] - CONTEXT + 1
    return np.concatenate([frames[i:i + count] for i in range(CONTEXT)], axis=1)


def residual_share(frames: list[np.ndarray], components: int = 8) -> float:
    """Share of the variance of the clips' standardized 5-frame vectors (each clip (frames, 128)
    dB) outside their first `components` principal components (item 5); NaN without clips."""
    if not frames:
        return float("nan")
    vectors = np.concatenate([stacked(f) for f in frames]).astype(np.float64)
    z = (vectors - vectors.mean(axis=0)) / (vectors.std(axis=0) + 1e-3)
    return float(1 - PCA(n_components=components).fit(z).explained_variance_ratio_.sum())


def read_real_clips(root: pathlib.Path, machine: str) -> list[tuple[layout.Clip, np.ndarray]]:
    """[(clip, (frames, 128) dB log-Mel)] of every WAV of `machine` under the dev_data folder `root`
    (its train and test folders, those that exist; names parsed and audio read as the project
    does: 16 kHz mono), read once for items 5 and 6. A bad clip exits naming the file."""
    try:
        return [(clip, log_mel(audio.read_wav(clip.path, SAMPLE_RATE)))
                for split in ("train", "test") if (root / machine / split).is_dir()
                for clip in layout.scan_split(root, machine, split)]
    except (audio.AudioError, layout.LayoutError) as error:
        raise SystemExit(str(error)) from None


def real_dynamics(clips: list[tuple[layout.Clip, np.ndarray]]) -> tuple[int, np.ndarray]:
    """(clip count, [frame-energy spread, band std, pair difference, residual share]) of the normal
    clips among `read_real_clips`' (pairs of the training clips); NaN where there are no clips or
    pairs."""
    frames = [f for clip, f in clips if clip.label == 0]
    training = [f for clip, f in clips if clip.label == 0 and clip.split == "train"]
    per_clip = np.mean([dynamics(f) for f in frames], axis=0) if frames else np.full(2, np.nan)
    return len(frames), np.r_[per_clip, pair_difference(training), residual_share(frames)]


QUARTERS = ((0, 32), (32, 64), (64, 96), (96, 128))


def fault_change(anomalous: np.ndarray, normals: list[np.ndarray]) -> np.ndarray:
    """(5,) dB: the change of one anomalous clip's clip-mean log-Mel from the mean of the normal
    clips' clip-means (each clip (frames, 128) dB), as the mean per quarter of the bands (signed),
    then the mean absolute change over all bands (item 6)."""
    change = anomalous.mean(axis=0) - np.mean([f.mean(axis=0) for f in normals], axis=0)
    return np.array([change[a:b].mean() for a, b in QUARTERS] + [np.abs(change).mean()])


def normal_spread(normals: list[np.ndarray]) -> float:
    """Mean absolute difference (dB) of the normal clips' clip-mean log-Mel from their own mean
    (over clips and bands); NaN with fewer than two clips (item 6)."""
    if len(normals) < 2:
        return float("nan")
    means = np.stack([f.mean(axis=0) for f in normals])
    return float(np.abs(means - means.mean(axis=0)).mean())


def real_fault_changes(clips: list[tuple[layout.Clip, np.ndarray]]
                       ) -> list[tuple[str, np.ndarray, int, float, str]]:
    """[(file name, fault_change, normal clip count, normal_spread, basis)] of every anomalous clip
    among `read_real_clips`' that has normal clips of its domain: those with its attribute values
    if there are any (basis "attributes"), else all of its domain (basis "domain")."""
    normals = [(clip, f) for clip, f in clips if clip.label == 0]
    out = []
    for anomalous, frames in ((clip, f) for clip, f in clips if clip.label == 1):
        of_domain = [(clip, f) for clip, f in normals if clip.domain == anomalous.domain]
        same = [f for clip, f in of_domain if clip.attributes == anomalous.attributes]
        basis = "attributes" if same else "domain"
        same = same or [f for _, f in of_domain]
        if same:
            out.append((anomalous.file_name, fault_change(frames, same), len(same), normal_spread(same), basis))
    return out


def clips_of(machine, args, split, label, domain, section, count):
    """(clip, log-Mel frames) of `count` clips of one group."""
    out = []
    for i in range(count):
        clip = synthetic.synthesize_clip(machine, section, domain, split, label, i,
                                         seed=args.seed, duration_s=args.duration,
                                         fault_severity=args.fault_severity)
        out.append((clip, log_mel(clip.pcm / 32768)))
    return out


def classifier():
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))


def auc(normal, anomalous) -> float:
    return roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(anomalous))],
                         np.r_[normal, anomalous])


def report(machine: str, args) -> None:
    start = time.time()
    train = {(s, d): clips_of(machine, args, "train", "normal", d, s, n) for s in range(3)
             for d, n in (("source", args.num_source_train), ("target", args.num_target_train))}
    test = {(s, d, lab): clips_of(machine, args, "test", lab, d, s, args.num_test)
            for s in range(3) for d in synthetic.DOMAINS for lab in synthetic.LABELS}
    print(f"\n### {machine}\n")

    # 1. Separability of sections and attributes (source training clips).
    source = [(s, clip, frames.mean(axis=0)) for s in range(3) for clip, frames in train[s, "source"]]
    x = np.stack([m for _, _, m in source])
    sections = np.array([s for s, _, _ in source])
    accuracy = cross_val_score(classifier(), x, sections, cv=5).mean()
    line = [f"section {accuracy:.2f} (chance 0.33)"]
    for s in range(3):
        keep = sections == s
        values = np.array(["_".join(v for _, v in clip.attributes) for t, clip, _ in source if t == s])
        if len(set(values)) > 1 and min(collections.Counter(values).values()) >= 5:
            acc = cross_val_score(classifier(), x[keep], values, cv=5).mean()
            line.append(f"attributes of {s:02d} {acc:.2f} (chance {1 / len(set(values)):.2f})")
    print("Separability (5-fold CV accuracy, logistic regression on clip-mean log-Mel): "
          + "; ".join(line) + "\n")

    # 2. Displacement of anomalies re. the normal spread, per kind and domain.
    train_means = np.stack([f.mean(axis=0) for group in train.values() for _, f in group])
    scale = train_means.std(axis=0) + 1e-3
    moved = collections.defaultdict(list)
    for s in range(3):
        for d in synthetic.DOMAINS:
            normal = np.stack([f.mean(axis=0) for _, f in test[s, d, "normal"]]) / scale
            centre = normal.mean(axis=0)
            spread = np.linalg.norm(normal - centre, axis=1).mean()
            for clip, frames in test[s, d, "anomaly"]:
                distance = np.linalg.norm(frames.mean(axis=0) / scale - centre)
                moved[clip.anomaly, d].append(distance / spread)
    kinds = synthetic.ANOMALY_KINDS[machine]
    print("| displacement / normal spread | " + " | ".join(kinds) + " |")
    print("|---" * (len(kinds) + 1) + "|")
    for d in synthetic.DOMAINS:
        print(f"| {d} | " + " | ".join(f"{np.mean(moved[k, d]):.2f}" if moved[k, d] else "-"
                                      for k in kinds) + " |")

    # 3. Proxy AUCs: linear autoencoder and linear section classifier.
    vectors = np.concatenate([stacked(f) for group in train.values() for _, f in group])
    mean, std = vectors.mean(axis=0), vectors.std(axis=0) + 1e-3
    pca = PCA(n_components=24, random_state=0).fit((vectors - mean) / std)
    all_train = [(s, f.mean(axis=0)) for (s, _), group in train.items() for _, f in group]
    section_model = classifier().fit(np.stack([m for _, m in all_train]),
                                     np.array([s for s, _ in all_train]))

    def ae_score(frames):
        z = (stacked(frames) - mean) / std
        return float(np.mean((z - pca.inverse_transform(pca.transform(z))) ** 2))

    def classifier_score(frames, section):
        return float(-section_model.predict_log_proba(frames.mean(axis=0)[None])[0, section])

    print("\n| proxy AUC | " + " | ".join(f"{s:02d} {d[:3]}" for s in range(3)
                                          for d in synthetic.DOMAINS) + " | mean src | mean tgt |")
    print("|---" * 9 + "|")
    for name, score in (("linear AE", lambda f, s: ae_score(f)), ("linear classifier", classifier_score)):
        cells = [auc([score(f, s) for _, f in test[s, d, "normal"]],
                     [score(f, s) for _, f in test[s, d, "anomaly"]])
                 for s in range(3) for d in synthetic.DOMAINS]
        print(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells)
              + f" | {np.mean(cells[0::2]):.2f} | {np.mean(cells[1::2]):.2f} |", flush=True)
    classifier_proxy(machine, train, test)

    # 5. Temporal dynamics of the normal clips against the real ones.
    spread, band_std = np.mean([dynamics(f) for s in range(3) for _, f in train[s, "source"]], axis=0)
    pairs = pair_difference([f for _, f in train[0, "source"]])
    real_clips = read_real_clips(args.real, machine)
    count, real = real_dynamics(real_clips)
    residual = residual_share([f for _, f in train[0, "source"][:max(count, 3)]])
    print(f"\nNormal clips (frame-energy spread p90 - p10; mean band std over time; clip-to-clip "
          f"difference; share outside 8 components): synthetic source training {spread:.1f}; "
          f"{band_std:.1f}; {pairs:.1f} dB; {residual:.2f} | real ({count} clips, {args.real}) "
          f"{real[0]:.1f}; {real[1]:.1f}; {real[2]:.1f} dB; {real[3]:.2f}")
    # 6. Fault magnitudes against the real anomalies.
    changes = collections.defaultdict(list)
    spreads = []
    for s in range(3):
        for d in synthetic.DOMAINS:
            normals = [f for _, f in test[s, d, "normal"]]
            spreads.append(normal_spread(normals))
            for clip, frames in test[s, d, "anomaly"]:
                changes[clip.anomaly].append(fault_change(frames, normals))
    print("\nFault magnitudes (change of the clip-mean log-Mel from the normal clips of the domain, dB: "
          "quarters of the Mel bands, signed; mean absolute change | the normal clips' own spread):")
    for kind in synthetic.ANOMALY_KINDS[machine]:
        if changes[kind]:
            median = np.median(changes[kind], axis=0)
            print(f"  synthetic {kind} (median of {len(changes[kind])}): "
                  + " / ".join(f"{v:+.1f}" for v in median[:4]) + f"; {median[4]:.1f} | {np.mean(spreads):.1f}")
    for name, change, normals_count, normals_spread, basis in real_fault_changes(real_clips):
        print(f"  real {name} (against {normals_count} normal clips of its {basis}): "
              + " / ".join(f"{v:+.1f}" for v in change[:4]) + f"; {change[4]:.1f} | {normals_spread:.1f}")
    print(f"{machine}: {time.time() - start:.0f} s", file=sys.stderr)


def classifier_proxy(machine: str, train: dict, test: dict) -> dict[str, list[float]]:
    """Prints and returns the classifier proxy's AUCs (item 4 of the module docstring).

    Args:
      machine: machine type (for the anomaly kinds).
      train: {(section, domain): [(clip, (frames, 128) log-Mel dB)]} normal training clips.
      test: {(section, domain, label): [(clip, log-Mel)]} test clips of every section and domain.
    Returns:
      {target: AUCs}, target "section" or "section_attribute": 3 sections x 2 domains in the
      order (00 source, 00 target, 01 source, ...), then one AUC per anomaly kind of `machine`
      (nan where a kind has no clip).
    """
    def features(frames):  # (256,) float64: per-band mean and std over time
        frames = frames.astype(np.float64)
        return np.r_[frames.mean(axis=0), frames.std(axis=0)]

    def label(section, clip, target):
        return (f"{section}" if target == "section"
                else f"{section}|" + "_".join(v for _, v in clip.attributes))

    kinds = synthetic.ANOMALY_KINDS[machine]
    cells = [(s, d) for s in range(3) for d in synthetic.DOMAINS]
    results = {}
    print("\n| classifier proxy AUC (neg. logit, mean+std log-Mel) | "
          + " | ".join(f"{s:02d} {d[:3]}" for s, d in cells) + " | mean src | mean tgt | "
          + " | ".join(kinds) + " |")
    print("|---" * (len(cells) + 3 + len(kinds)) + "|")
    for target in ("section", "section_attribute"):
        x = np.stack([features(f) for group in train.values() for _, f in group])
        y = np.array([label(s, clip, target) for (s, _), group in train.items() for clip, _ in group])
        model = classifier().fit(x, y)
        classes = list(model.classes_)

        def score(section, clip, frames):
            log_p = model.predict_log_proba(features(frames)[None])   # (1, classes)
            own = label(section, clip, target)
            candidates = np.array([[c == own if own in classes else c.split("|")[0] == str(section)
                                    for c in classes]])
            with jax.enable_x64(True):   # float64 as the rest of this report
                return float(scoring.negative_logit_rows(log_p, candidates)[0])

        cell_aucs, kind_aucs = [], collections.defaultdict(list)
        for s, d in cells:
            normal = [score(s, clip, f) for clip, f in test[s, d, "normal"]]
            anomalous = [(clip.anomaly, score(s, clip, f)) for clip, f in test[s, d, "anomaly"]]
            cell_aucs.append(auc(normal, [v for _, v in anomalous]))
            for kind in kinds:
                of_kind = [v for k, v in anomalous if k == kind]
                if of_kind:
                    kind_aucs[kind].append(auc(normal, of_kind))
        by_kind = [float(np.mean(kind_aucs[k])) if kind_aucs[k] else float("nan") for k in kinds]
        results[target] = cell_aucs + by_kind
        print(f"| {target} | " + " | ".join(f"{c:.2f}" for c in cell_aucs)
              + f" | {np.mean(cell_aucs[0::2]):.2f} | {np.mean(cell_aucs[1::2]):.2f} | "
              + " | ".join(f"{c:.2f}" for c in by_kind) + " |", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", default=",".join(synthetic.MIMII_DG_MACHINE_TYPES))
    parser.add_argument("--num_source_train", type=int, default=60,
                        help="source training clips per section")
    parser.add_argument("--num_target_train", type=int, default=10,
                        help="target training clips per section")
    parser.add_argument("--num_test", type=int, default=20,
                        help="test clips per (section, domain, label)")
    parser.add_argument("--duration", type=float, default=10.0, help="clip length (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault_severity", type=float, default=1.0,
                        help="scales every anomaly's intensity (docs/synthetic.md, Anomalies)")
    parser.add_argument("--real", type=pathlib.Path,
                        default=next((p for p in REAL_DATA if p.is_dir()), REAL_DATA[-1]),
                        help="real DCASE dev_data folder (<machine>/{train,test}/*.wav) for items 5 and 6")
    args = parser.parse_args()
    print(f"Synthetic data report: generator version {synthetic.GENERATOR_VERSION}, seed "
          f"{args.seed}, {args.num_source_train} + {args.num_target_train} training and "
          f"{args.num_test} test clips per (section, domain, label), {args.duration:g} s clips, "
          f"fault severity {args.fault_severity:g}.")
    for machine in args.machines.split(","):
        report(machine, args)


if __name__ == "__main__":
    main()
