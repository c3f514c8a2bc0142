"""Throughput of the feature-preparation path: mdg's batched jit log-Mel vs the DCASE baseline's librosa.

Both paths turn WAV files into log-Mel spectrograms (n_fft 1024, hop 512, 128 mels, power 2, dB):

  mdg      `mdg.data.audio.read_wav` per file (the shard builder's validating reader) ->
           `mdg.data.features.log_mel_stream` (batched, jit)
  librosa  librosa.load(path, sr=None, mono=False) -> librosa.feature.melspectrogram -> 10 log10,
           clip by clip, as the DCASE 2022/2023 Task 2 baselines do

on the same clips in the same run. Passes of the two paths alternate and each path's fastest pass
counts, which damps the noise of a shared machine. mdg's compilation is excluded from its passes (a
warm-up pass compiles every batch shape) and reported on its own; librosa is warmed on one clip. The
largest absolute difference between the two paths' dB values is reported too.

    python benchmarks/features.py                       # the 28 real DCASE 2023 dev clips
    python benchmarks/features.py --clips DIR --repeat 3 --batch_size 8

Prints a small table, then exactly one JSON line (the last line of stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import jax
import librosa
import numpy as np

from mdg.data import audio, features

# The real DCASE 2023 dev slice beside the project, as in tests/conftest.py.
DEFAULT_CLIPS = (pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "dcase2023_dev_slice"
                 / "dev_data")
COMPILE_EVENTS = "/jax/core/compile/"  # tracing, lowering and XLA compilation
SETTINGS = {"sample_rate": 16000, "n_fft": 1024, "hop_length": 512, "n_mels": 128, "power": 2.0}


def mdg_features(paths: list[pathlib.Path], batch_size: int) -> list[np.ndarray]:
    """mdg's prepare path: float32 (frames, n_mels) dB per file, in order."""
    keyed = ((path, audio.read_wav(path, SETTINGS["sample_rate"])) for path in paths)
    return [log_mel for _, log_mel in features.log_mel_stream(keyed, batch_size=batch_size, **SETTINGS)]


def librosa_features(paths: list[pathlib.Path]) -> list[np.ndarray]:
    """The baselines' way: float32 (frames, n_mels) dB per file (transposed to mdg's layout), in order."""
    result = []
    for path in paths:
        waveform, sample_rate = librosa.load(path, sr=None, mono=False)
        mel = librosa.feature.melspectrogram(y=waveform, sr=sample_rate, n_fft=SETTINGS["n_fft"],
                                             hop_length=SETTINGS["hop_length"], n_mels=SETTINGS["n_mels"],
                                             power=SETTINGS["power"])
        result.append((10.0 * np.log10(np.maximum(mel, sys.float_info.epsilon))).T)
    return result


def timed(function, *args) -> tuple[float, float, list[np.ndarray]]:
    """(wall seconds, CPU seconds of all the process's threads, result) of `function(*args)`."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=pathlib.Path, default=DEFAULT_CLIPS,
                        help="folder searched recursively for *.wav (default: the real DCASE 2023 dev "
                             "slice)")
    parser.add_argument("--repeat", type=int, default=4, help="times each pass loops over the clips")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating passes per path; the fastest counts")
    parser.add_argument("--batch_size", type=int, default=8, help="clips per log_mel call")
    args = parser.parse_args()

    files = sorted(args.clips.rglob("*.wav"))
    if not files:
        raise SystemExit(f"{args.clips}: no .wav files found")
    paths = files * args.repeat

    # Warm-up pass: compiles every batch shape the stream uses (timed through JAX's own compile
    # events); librosa's first call imports and caches lazily.
    compile_seconds = []

    def record_compile(event: str, seconds: float, **_) -> None:
        if event.startswith(COMPILE_EVENTS):
            compile_seconds.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(record_compile)
    mdg_features(files, args.batch_size)
    compile_s = sum(compile_seconds)
    librosa_features(files[:1])

    load_average = os.getloadavg()[0]
    mdg_seconds, librosa_seconds = [], []  # (wall, cpu) per pass
    for _ in range(args.rounds):
        *seconds, mdg_result = timed(mdg_features, paths, args.batch_size)
        mdg_seconds.append(seconds)
        *seconds, librosa_result = timed(librosa_features, paths)
        librosa_seconds.append(seconds)
    max_abs_diff_db = max(float(np.max(np.abs(ours - theirs)))
                          for ours, theirs in zip(mdg_result, librosa_result, strict=True))

    mdg_wall, mdg_cpu = min(mdg_seconds)
    librosa_wall, librosa_cpu = min(librosa_seconds)
    mdg_rate, librosa_rate = len(paths) / mdg_wall, len(paths) / librosa_wall
    print(f"{len(files)} WAV files x {args.repeat} = {len(paths)} clips per pass, {args.rounds} rounds, "
          f"batch size {args.batch_size}, from {args.clips}; {os.cpu_count()} CPUs, load average "
          f"{load_average:.1f}")
    print(f"{'path':<10}{'best pass s':>12}{'clips/s':>10}{'CPU ms/clip':>13}")
    print(f"{'mdg':<10}{mdg_wall:>12.3f}{mdg_rate:>10.1f}{1e3 * mdg_cpu / len(paths):>13.2f}")
    print(f"{'librosa':<10}{librosa_wall:>12.3f}{librosa_rate:>10.1f}{1e3 * librosa_cpu / len(paths):>13.2f}")
    print(f"speed-up {mdg_rate / librosa_rate:.1f}x; mdg compile {compile_s:.2f} s (excluded); "
          f"max |mdg - librosa| {max_abs_diff_db:.2e} dB")
    print(json.dumps({"benchmark": "features", "clips": len(paths), "mdg_clips_per_s": round(mdg_rate, 1),
                      "librosa_clips_per_s": round(librosa_rate, 1),
                      "ratio": round(mdg_rate / librosa_rate, 2),
                      "compile_s": round(compile_s, 3), "max_abs_diff_db": max_abs_diff_db}))


if __name__ == "__main__":
    main()
