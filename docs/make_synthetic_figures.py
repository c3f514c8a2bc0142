"""Draws the log-Mel spectrograms of docs/synthetic.md: normal vs anomalous synthetic clips.

One PNG per machine type, docs/images/synthetic_<machine>.png: section 00, rows source and
target domain, columns a normal and an anomalous test clip with the same attribute values (the
anomaly kind and its intensity in the title). With ``--real DEV_DATA`` (a real DCASE dev_data
folder, e.g. ../shared/data/dcase2023_dev_slice/dev_data) also real_vs_synthetic_<machine>.png:
two real normal clips of the machine type above two synthetic source normal training clips. Those
figures are made from the real data and fall under its licence (CC BY-NC-SA 4.0, see
tests/data/LICENSE.md), not the project's: they are not committed; draw them locally.

    python docs/make_synthetic_figures.py [--out docs/images] [--seed 0] [--section 0] [--real DIR]
"""

import argparse
import io
import os
import pathlib

import librosa
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402  (Pillow comes with matplotlib)

from mdg.data import audio, synthetic  # noqa: E402

SAMPLE_RATE = 16000
N_FFT, HOP, N_MELS = 1024, 512, 128


def log_mel(waveform: np.ndarray) -> np.ndarray:
    """dB log-Mel spectrogram (n_mels, frames) of samples in [-1, 1], as the baseline features."""
    mel = librosa.feature.melspectrogram(y=waveform.astype(np.float32), sr=SAMPLE_RATE,
                                         n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, power=2.0)
    return librosa.power_to_db(mel, ref=1.0, top_db=None)


def pick_clips(machine: str, section: int, seed: int) -> list[list[synthetic.SyntheticClip]]:
    """[[normal, anomaly] for source, target]: test clip 0000 as the normal one, and the first
    anomalous test clip with the same attribute values and environment (background, mixed-in
    machine, ...), so that only the fault differs (target: of another kind than source)."""
    rows = []
    for domain in synthetic.DOMAINS:
        normal = synthetic.synthesize_clip(machine, section, domain, "test", "normal", 0,
                                           seed=seed, sample_rate=SAMPLE_RATE)
        shown = [row[1].anomaly for row in rows]
        for index in range(500):
            anomaly = synthetic.synthesize_clip(machine, section, domain, "test", "anomaly",
                                                index, seed=seed, sample_rate=SAMPLE_RATE)
            if ((anomaly.attributes, anomaly.environment) == (normal.attributes, normal.environment)
                    and anomaly.anomaly not in shown):
                break
        rows.append([normal, anomaly])
    return rows


def clip_title(machine: str, domain: str, clip: synthetic.SyntheticClip) -> str:
    attributes = "_".join(f"{name}_{value}" for name, value in clip.attributes)
    background = dict(clip.environment)["f-n"]
    what = "normal" if clip.anomaly is None else (
        f"{clip.anomaly} ({clip.anomaly_intensity:.2g} "
        f"{synthetic.ANOMALIES[machine][clip.anomaly].unit.split(' ')[0]})")
    return f"{domain} {attributes} (noise {background}): {what}"


def draw_machine(machine: str, section: int, seed: int, path: pathlib.Path) -> None:
    """Saves a 2 x 2 figure: (source, target) x (normal, anomaly) test clips of one section."""
    panels = [[(clip_title(machine, domain, clip), clip.pcm / 32768) for clip in clips]
              for domain, clips in zip(synthetic.DOMAINS, pick_clips(machine, section, seed))]
    draw_panels(panels, f"{machine}, section {section:02d}: log-Mel ({N_MELS} bands, dB re. the "
                "loudest bin; anomaly intensity in its ANOMALIES unit)", path)


def draw_real(machine: str, real: pathlib.Path, seed: int, path: pathlib.Path) -> bool:
    """Saves two real normal clips of `machine` (under the dev_data folder `real`) above two
    synthetic source normal training clips (sections 00 and 01); False if `real` has fewer than two."""
    names = sorted((real / machine).glob("*/*_normal_*.wav"))[:2]
    if len(names) < 2:
        return False
    real_row = []
    for name in names:
        try:
            waveform = audio.read_wav(name, SAMPLE_RATE)
        except audio.AudioError as error:
            raise SystemExit(str(error)) from None
        real_row.append((f"real: {name.stem.removeprefix('section_')}", waveform))
    synthetic_row = []
    for section in (0, 1):
        clip = synthetic.synthesize_clip(machine, section, "source", "train", "normal", 0, seed=seed,
                                         sample_rate=SAMPLE_RATE)
        synthetic_row.append((f"synthetic: {clip.file_name.removeprefix('section_').removesuffix('.wav')}", clip.pcm / 32768))
    draw_panels([real_row, synthetic_row], f"{machine}: real (DCASE 2023 development data, CC "
                "BY-NC-SA 4.0) and synthetic normal clips, log-Mel (dB re. the loudest bin)", path)
    return True


def draw_panels(panels: list[list[tuple[str, np.ndarray]]], title: str, path: pathlib.Path) -> None:
    """Saves a rows x 2 figure of (title, samples in [-1, 1]) log-Mel panels on one colour scale."""
    fig, axes = plt.subplots(len(panels), 2, figsize=(9, 2.3 * len(panels)), sharex=True, sharey=True,
                             constrained_layout=True, squeeze=False)
    spectrograms = [[log_mel(waveform) for _, waveform in row] for row in panels]
    top = max(s.max() for row in spectrograms for s in row)  # one colour scale for all panels
    for row, titles in enumerate(panels):
        for col, (name, waveform) in enumerate(titles):
            image = axes[row, col].imshow(
                spectrograms[row][col], origin="lower", aspect="auto", cmap="magma",
                vmin=top - 80, vmax=top, interpolation="nearest",
                extent=(0, waveform.size / SAMPLE_RATE, 0, N_MELS))
            axes[row, col].set_title(name, fontsize=9)
            axes[row, col].tick_params(labelsize=8)
        axes[row, 0].set_ylabel("frequency (Hz, Mel scale)", fontsize=8)
    # Label the Mel bands by the frequency at their centre, so tones can be read off in Hz.
    centres = librosa.mel_frequencies(n_mels=N_MELS + 2, fmax=SAMPLE_RATE / 2)[1:-1]
    ticks_hz = [100, 250, 500, 1000, 2000, 4000, 7000]
    axes[0, 0].set_yticks([float(np.interp(hz, centres, np.arange(N_MELS))) for hz in ticks_hz],
                          [f"{hz:g}" if hz < 1000 else f"{hz // 1000}k" for hz in ticks_hz])
    for col in range(2):
        axes[-1, col].set_xlabel("time (s)", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label="dB")
    fig.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=80, format="png")
    plt.close(fig)
    # A 128-colour palette keeps the noisy spectrogram PNGs small (well under 200 KB).
    partial = path.with_name(path.name + ".partial")
    Image.open(buffer).convert("RGB").quantize(colors=128).save(partial, format="png",
                                                                optimize=True)
    os.replace(partial, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "images"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--section", type=int, default=0)
    parser.add_argument("--real", type=pathlib.Path, help="real DCASE dev_data folder")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for machine in synthetic.MIMII_DG_MACHINE_TYPES:
        path = out / f"synthetic_{machine}.png"
        draw_machine(machine, args.section, args.seed, path)
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
        path = out / f"real_vs_synthetic_{machine}.png"
        if args.real and draw_real(machine, args.real, args.seed, path):
            print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
