"""Deterministic synthetic MIMII DG dataset in the real DCASE 2022 / 2023 Task 2 layout (+ CLI).

The offline benchmark and the main job's default dataset: five machine types (fan, gearbox,
bearing, slider, valve), sections 00-02 each, every section with its own kind of domain shift as
in the MIMII DG paper (Dohi et al., 2022, Table 1), normal clips with clip-to-clip variation and
anomalies of several kinds that a log-Mel autoencoder can detect but not trivially.

Layout written (identical to the real development set)::

    <out>/<machine>/train/section_XX_<source|target>_train_normal_NNNN_<attributes>.wav
    <out>/<machine>/test/section_XX_<source|target>_test_<normal|anomaly>_NNNN_<attributes>.wav
    <out>/<machine>/attributes_XX.csv   header file_name,d1p,d1v[,d2p,d2v]; one row per clip,
                                        file_name = <machine>/<split>/<name>.wav
    <out>/<machine>/.synthetic.json     manifest (generator version and settings), written last

WAVs are 16-bit PCM mono at `sample_rate` (16 kHz by default). Numbering follows the real set:
train clips 0000.. per domain; test clips 0000.. per (domain, label), i.e. ``num_test`` clips each
of source/normal, source/anomaly, target/normal, target/anomaly. Attribute names and values follow
the real DCASE 2022 / 2023 files (``m-n_W``, ``f-n_A``, ``n-lv_L1``, ``volt_1.5``, ``wt_50``,
``id_01``, ``vel_8_loc_A``, ``vel_700``, ``ac_0.05``, ``pat_00``, ``pat_00_panel_bs-c``,
``v1pat_00_v2pat_02``); each clip draws its attribute values from its domain's list.

Determinism: every clip has its own random generator seeded from
``(seed, machine, section, domain, split, label, index)`` through `numpy.random.SeedSequence`, so a
clip's bytes never depend on which other clips, machine types or sizes are generated.

Interrupted runs: each machine type is written into a hidden temporary folder
``<out>/.<machine>.partial-<host>-<pid>-*`` that is renamed to ``<out>/<machine>`` only after every
WAV, CSV and the manifest (written last) are in place. A machine folder therefore exists only when
complete; a partial folder left by a killed process of this host is deleted by the next run. An
existing folder whose manifest matches the request is reused as it is.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import functools
import json
import multiprocessing
import os
import pathlib
import shutil
import socket
import sys
import tempfile
import zlib
from typing import Callable, Mapping, Sequence

import numpy as np
import scipy.fft
import scipy.signal
import soundfile
import tqdm

from mdg.data.layout import MIMII_DG_MACHINE_TYPES

# Bumped whenever the sound design changes, so that trees made by an older version are not reused.
GENERATOR_VERSION = 1
MANIFEST_NAME = ".synthetic.json"
DOMAINS = ("source", "target")
LABELS = ("normal", "anomaly")
MIN_DURATION_S = 0.1

# Output level: clip RMS in dBFS, drawn per clip from N(mean, std); peaks are kept below the limit.
OUTPUT_RMS_DBFS = (-26.0, 2.0)
PEAK_LIMIT = 0.9
# Machine-to-background power ratio (dB, mean and per-clip std) where a section does not shift it.
DEFAULT_SNR_DB = {"fan": (6.0, 1.5), "gearbox": (8.0, 1.5), "bearing": (6.0, 1.5),
                  "slider": (6.0, 1.5), "valve": (14.0, 1.5)}
# Fan section 02 ("n-lv"): SNR (dB) of each noise level; L1, L2 source, L3, L4 target.
NOISE_LEVEL_SNR_DB = {"L1": 9.0, "L2": 6.0, "L3": 2.0, "L4": -1.0}
# Level (dB, mean and std) of the mixed-in machine (fan "m-n") or second valve (valve "v2pat")
# relative to the recorded machine.
INTERFERER_DB = (-4.0, 1.5)
SECOND_VALVE_DB = (-3.0, 1.5)

# Anomaly kinds per machine type and the range their intensity is drawn from (uniform per clip).
# Units: "level" kinds are dB of the added component relative to the normal machine sound;
# "depth" kinds are modulation depths (0-1); "fraction" kinds are the share of valve events
# affected; "boost" kinds are dB added to existing components.
ANOMALY_LEVELS: dict[str, dict[str, tuple[float, float]]] = {
    "fan": {
        "imbalance": (0.25, 0.6),       # depth of once-per-revolution amplitude modulation
        "blade_damage": (18.0, 28.0),   # boost of the shaft harmonics between blade-pass ones
        "rub": (-20.0, -9.0),           # level of once-per-revolution rubbing bursts
    },
    "gearbox": {
        "tooth_damage": (-17.0, -8.0),  # level of once-per-revolution impacts
        "wear": (6.0, 12.0),            # boost of the mesh sidebands
        "ghost_tone": (-17.0, -8.0),    # level of a tone at half the mesh frequency
    },
    "bearing": {
        "outer_race": (-12.0, -4.0),    # level of the defect impulse train relative to the
        "inner_race": (-10.0, -2.0),    # rolling noise
        "ball": (-11.0, -3.0),
    },
    "slider": {
        "friction": (-9.0, 0.0),        # level of friction noise at rough spots of the rail
        "rail_damage": (-9.0, -1.0),    # level of the impact at one rail position
        "screw_defect": (-11.0, -2.0),  # level of a tone at 2.5 x the screw rotation rate
    },
    "valve": {
        "irregular": (0.3, 0.6),        # fraction of events dropped (and as many stutters)
        "leak": (-14.0, -4.0),          # level of flow noise while closed, re. flow when open
        "chatter": (-8.0, 0.0),         # level of seat rebound clicks after each closing
    },
}
ANOMALY_KINDS = {machine: tuple(kinds) for machine, kinds in ANOMALY_LEVELS.items()}


@dataclasses.dataclass(frozen=True)
class SectionSpec:
    """What varies in one section: its domain-shift kind and the attribute values per domain.

    Attributes:
      shift: the domain-shift kind, as in MIMII DG Table 1 (for docs and reports).
      attribute_names: attribute names in file-name order, e.g. ("vel", "loc").
      source: the attribute value tuples a source-domain clip draws from.
      target: the same for the target domain.
    """

    shift: str
    attribute_names: tuple[str, ...]
    source: tuple[tuple[str, ...], ...]
    target: tuple[tuple[str, ...], ...]

    def values(self, domain: str) -> tuple[tuple[str, ...], ...]:
        """The attribute value tuples of `domain` ("source" or "target")."""
        return self.source if domain == "source" else self.target


def _single(name: str, shift: str, source: Sequence[str], target: Sequence[str]) -> SectionSpec:
    return SectionSpec(shift, (name,), tuple((v,) for v in source), tuple((v,) for v in target))


def _product(names: tuple[str, str], shift: str, source: tuple[Sequence[str], Sequence[str]],
             target: tuple[Sequence[str], Sequence[str]]) -> SectionSpec:
    def combos(first, second):
        return tuple((a, b) for a in first for b in second)
    return SectionSpec(shift, names, combos(*source), combos(*target))


SECTIONS: dict[str, tuple[SectionSpec, SectionSpec, SectionSpec]] = {
    "fan": (
        _single("m-n", "mixing of a different machine sound", ("W", "X"), ("Y", "Z")),
        _single("f-n", "factory noise type", ("A", "B"), ("C", "D")),
        _single("n-lv", "background noise level (SNR)", ("L1", "L2"), ("L3", "L4")),
    ),
    "gearbox": (
        _single("volt", "motor voltage (speed)", ("1.0", "1.5", "2.0", "2.5", "3.0"),
                ("1.3", "1.8", "2.3", "2.8", "3.5")),
        _single("wt", "load weight (g)", ("0", "50", "100", "150", "200"),
                ("30", "80", "130", "180", "230", "250")),
        _single("id", "gearbox unit", ("01", "03", "05"), ("02", "04")),
    ),
    "bearing": (
        _single("vel", "rotation velocity", ("5", "9", "13", "17", "21"),
                ("3", "7", "11", "15", "19", "25")),
        _product(("vel", "loc"), "microphone location", (("8", "16"), ("A", "B", "C", "D")),
                 (("8", "16"), ("E", "F", "G", "H"))),
        _product(("vel", "f-n"), "factory noise type", (("6", "14"), ("A", "B")),
                 (("6", "14"), ("C", "D"))),
    ),
    "slider": (
        _single("vel", "velocity (mm/s)", ("300", "500", "700", "900", "1100"),
                ("400", "600", "800", "1000", "1300")),
        _single("ac", "acceleration (G)", ("0.03", "0.05", "0.07", "0.09", "0.11"),
                ("0.04", "0.06", "0.08", "0.10", "0.14")),
        _single("f-n", "factory noise type", ("A", "B"), ("C", "D")),
    ),
    "valve": (
        _single("pat", "open/close pattern", ("00", "01"), ("02", "03")),
        _product(("pat", "panel"), "acoustic panel around the valve",
                 (("00", "01"), ("open", "bs-c")), (("00", "01"), ("b-c", "s-c"))),
        _product(("v1pat", "v2pat"), "sound of a second valve", (("00", "01"), ("none",)),
                 (("00", "01"), ("02", "03"))),
    ),
}


@dataclasses.dataclass(frozen=True)
class SyntheticClip:
    """One generated clip.

    Attributes:
      file_name: the WAV base name, e.g. "section_00_source_train_normal_0000_m-n_W.wav".
      attributes: (name, value) pairs in file-name order.
      anomaly: the anomaly kind (a key of ANOMALY_LEVELS[machine]) or None for a normal clip.
      anomaly_intensity: the drawn intensity in the kind's unit, or None for a normal clip.
      pcm: int16 samples, shape (samples,), exactly what is written to the WAV file.
    """

    file_name: str
    attributes: tuple[tuple[str, str], ...]
    anomaly: str | None
    anomaly_intensity: float | None
    pcm: np.ndarray


# --------------------------------------------------------------------------------------------
# Signal helpers. All return float32 arrays of shape (n,) unless stated otherwise.
# --------------------------------------------------------------------------------------------

# Phase-table length of periodic sources (power of two: a bit mask wraps the phase index).
_TABLE_SIZE = 1 << 14
_TABLE_MASK = _TABLE_SIZE - 1
_SINE_TABLE = np.sin(2 * np.pi * np.arange(_TABLE_SIZE) / _TABLE_SIZE).astype(np.float32)
_SINE_TABLE.setflags(write=False)
_NYQUIST_MARGIN = 0.45  # harmonics are kept below this fraction of the sample rate
# Resonated events: up to this many, each event's ringing kernel is added where it starts;
# beyond, the impulse train runs through the resonators as IIR filters (cheaper when dense).
_SPARSE_EVENTS = 200
# Slow speed fluctuations are computed on a grid this many samples apart and held in between.
_FLUCTUATION_STEP = 64


@dataclasses.dataclass(frozen=True)
class _Ctx:
    """Per-clip synthesis context: the clip's generator, sample rate (Hz) and length (samples)."""

    rng: np.random.Generator
    sr: int
    n: int

    @property
    def freqs(self) -> np.ndarray:
        return _rfft_freqs(self.n, self.sr)

    @property
    def time(self) -> np.ndarray:
        return _time_axis(self.n, self.sr)

    @property
    def duration(self) -> float:
        return self.n / self.sr

    def normal(self, mean: float, std: float) -> float:
        return float(mean + std * self.rng.standard_normal())

    def db(self, mean_std: tuple[float, float]) -> np.float32:
        """A per-clip level in dB drawn from N(mean, std), returned as a linear amplitude."""
        return _db_to_amp(self.normal(*mean_std))


@functools.lru_cache(maxsize=4)
def _rfft_freqs(n: int, sr: int) -> np.ndarray:
    freqs = np.fft.rfftfreq(n, 1.0 / sr).astype(np.float32)
    freqs[0] = freqs[1] / 2  # avoids division by zero in 1/f shapes; the DC bin is zeroed anyway
    freqs.setflags(write=False)
    return freqs


@functools.lru_cache(maxsize=4)
def _time_axis(n: int, sr: int) -> np.ndarray:
    t = (np.arange(n, dtype=np.float64) / sr).astype(np.float32)
    t.setflags(write=False)
    return t


@functools.lru_cache(maxsize=4)
def _sample_numbers(n: int) -> np.ndarray:
    numbers = np.arange(n, dtype=np.int64)
    numbers.setflags(write=False)
    return numbers


def _db_to_amp(db: float) -> np.float32:
    return np.float32(10.0 ** (db / 20.0))


def _unit_rms(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x * np.float32(1.0 / (np.sqrt(np.dot(x, x) / x.size) + 1e-12))


def _mix_shapes(*parts: tuple[np.ndarray, float]) -> np.ndarray:
    """Amplitude spectrum of a sum of independent noises: (shape, RMS amplitude) pairs."""
    power = np.zeros_like(parts[0][0])
    for shape, amplitude in parts:
        power += np.float32(amplitude ** 2 / np.dot(shape, shape)) * np.square(shape)
    return np.sqrt(power)


def _shaped_noise(ctx: _Ctx, magnitude: np.ndarray) -> np.ndarray:
    """Noise with amplitude spectrum `magnitude` (shape (n // 2 + 1,)), random phases; unit RMS."""
    phase = ctx.rng.random(magnitude.shape[0], dtype=np.float32) * np.float32(2 * np.pi)
    spectrum = np.empty(magnitude.shape[0], np.complex64)
    spectrum.real = magnitude * np.cos(phase)
    spectrum.imag = magnitude * np.sin(phase)
    spectrum[0] = 0
    return _unit_rms(scipy.fft.irfft(spectrum, ctx.n))


def _band(freqs: np.ndarray, low: float | None, high: float | None, order: int = 1) -> np.ndarray:
    """Butterworth-like band-pass magnitude (1 in the pass band), shape of `freqs`."""
    magnitude = np.ones_like(freqs)
    if low:
        magnitude /= np.sqrt(1 + np.square(np.float32(low) / freqs) ** order)
    if high:
        magnitude /= np.sqrt(1 + np.square(freqs / np.float32(high)) ** order)
    return magnitude


def _resonance(freqs: np.ndarray, centre: float, q: float) -> np.ndarray:
    """Magnitude of a second-order resonance at `centre` Hz with quality factor `q` (peak 1)."""
    ratio = freqs / np.float32(centre)
    return 1 / np.sqrt(1 + np.float32(q * q) * (ratio - 1 / ratio) ** 2)


def _tilt(freqs: np.ndarray, db_per_octave: float) -> np.ndarray:
    """Spectral tilt in dB per octave, 0 dB at 1 kHz."""
    return (freqs / np.float32(1000.0)) ** np.float32(db_per_octave / 6.0206)


def _fluctuation(ctx: _Ctx, depth: float, max_hz: float = 1.0) -> np.ndarray:
    """Slow random relative deviation with std ~ `depth`: three sinusoids below `max_hz` Hz."""
    rates = ctx.rng.uniform(0.05, max_hz, 3)
    phases = ctx.rng.uniform(0, 2 * np.pi, 3)
    weights = ctx.rng.uniform(0.5, 1.0, 3)
    weights *= depth / np.sqrt(np.sum(weights ** 2) / 2)
    grid = np.arange(ctx.n // _FLUCTUATION_STEP + 1) * (_FLUCTUATION_STEP / ctx.sr)
    coarse = np.sin(2 * np.pi * rates[None, :] * grid[:, None] + phases[None, :]) @ weights
    return np.repeat(coarse.astype(np.float32), _FLUCTUATION_STEP)[:ctx.n]


def _cycles(ctx: _Ctx, freq_hz: float | np.ndarray, fluctuation: np.ndarray | float = 0.0
            ) -> np.ndarray:
    """Elapsed cycles (float64, shape (n,)) of a rotation at `freq_hz` * (1 + fluctuation)."""
    inst = np.asarray(freq_hz, np.float32) * (np.float32(1) + np.asarray(fluctuation, np.float32))
    return np.cumsum(np.broadcast_to(inst, (ctx.n,)), dtype=np.float64) / ctx.sr


def _phase_index(cycles: np.ndarray, multiple: float = 1.0) -> np.ndarray:
    """Phase-table index (int64, shape (n,)) of `multiple` x `cycles`."""
    return (cycles * (multiple * _TABLE_SIZE)).astype(np.int64) & _TABLE_MASK


def _tone_index(ctx: _Ctx, freq_hz: float) -> np.ndarray:
    """Phase-table index of a steady tone at `freq_hz` (to within sr / _TABLE_SIZE, ~1 Hz),
    starting at a random phase."""
    step = int(round(freq_hz * _TABLE_SIZE / ctx.sr))
    return (_sample_numbers(ctx.n) * step + int(ctx.rng.integers(_TABLE_SIZE))) & _TABLE_MASK


def _harmonic_table(amplitudes: Sequence[float], phases: Sequence[float]) -> np.ndarray:
    """One period of sum_k a_k cos(2 pi k x + phi_k), k = 1..K, at `_TABLE_SIZE` points."""
    spectrum = np.zeros(_TABLE_SIZE // 2 + 1, np.complex64)
    k = len(amplitudes)
    if k >= _TABLE_SIZE // 2:
        raise ValueError(f"{k} harmonics do not fit a phase table of {_TABLE_SIZE} points")
    spectrum[1:k + 1] = np.asarray(amplitudes) * np.exp(1j * np.asarray(phases)) * (_TABLE_SIZE / 2)
    return scipy.fft.irfft(spectrum, _TABLE_SIZE)


def _harmonics(ctx: _Ctx, index: np.ndarray, levels_db: np.ndarray) -> np.ndarray:
    """Harmonics k = 1..K at `levels_db` (dB, shape (K,)), random phases, at the phase `index`."""
    table = _harmonic_table(10 ** (np.asarray(levels_db) / 20),
                            ctx.rng.uniform(0, 2 * np.pi, len(levels_db)))
    return np.take(table, index)


def _sine(ctx: _Ctx, index: np.ndarray, harmonic: int = 1) -> np.ndarray:
    """sin(2 pi harmonic x + random phase) at the phase `index`."""
    return np.take(_SINE_TABLE,
                   (index * harmonic + int(ctx.rng.integers(_TABLE_SIZE))) & _TABLE_MASK)


def _ring_kernel(sr: int, modes: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """Impulse response of parallel two-pole resonators, cut at -60 dB; float32 (samples,).

    Modes are (frequency Hz, bandwidth Hz, gain); each rings as gain * r^k sin(w (k + 1)).
    """
    slowest = min(bandwidth for _, bandwidth, _ in modes)
    k = np.arange(int(np.ceil(6.91 * sr / (np.pi * slowest))))
    kernel = np.zeros(k.size)
    for freq, bandwidth, gain in modes:
        omega = 2 * np.pi * min(freq, _NYQUIST_MARGIN * sr) / sr
        kernel += gain * np.exp(-np.pi * bandwidth / sr * k) * np.sin(omega * (k + 1))
    return kernel.astype(np.float32)


def _resonate(ctx: _Ctx, times_s: np.ndarray, amplitudes: np.ndarray | float,
              modes: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """Resonators (see `_ring_kernel`) struck at `times_s` (s) with `amplitudes`."""
    positions = np.round(np.asarray(times_s, np.float64) * ctx.sr).astype(np.int64)
    amplitudes = np.broadcast_to(np.asarray(amplitudes, np.float32), positions.shape)
    inside = (positions >= 0) & (positions < ctx.n)
    positions, amplitudes = positions[inside], amplitudes[inside]
    if positions.size <= _SPARSE_EVENTS:
        kernel = _ring_kernel(ctx.sr, modes)
        out = np.zeros(ctx.n + kernel.size, np.float32)
        for position, amplitude in zip(positions, amplitudes):
            out[position:position + kernel.size] += amplitude * kernel
        return out[:ctx.n]
    strikes = np.zeros(ctx.n, np.float32)
    np.add.at(strikes, positions, amplitudes)
    out = np.zeros(ctx.n, np.float32)
    for freq, bandwidth, gain in modes:
        radius = np.exp(-np.pi * bandwidth / ctx.sr)
        omega = 2 * np.pi * min(freq, _NYQUIST_MARGIN * ctx.sr) / ctx.sr
        b = np.array([gain * np.sin(omega)], np.float32)
        a = np.array([1.0, -2 * radius * np.cos(omega), radius * radius], np.float32)
        out += scipy.signal.lfilter(b, a, strikes)
    return out


def _gate(ctx: _Ctx, starts_s: np.ndarray, stops_s: np.ndarray, smooth_s: float) -> np.ndarray:
    """Envelope that is 1 from each start to its stop (s), 0 elsewhere, edges smoothed over
    `smooth_s` by a moving average; float32 (n,)."""
    steps = np.zeros(ctx.n + 1, np.float32)
    for times, sign in ((starts_s, 1.0), (stops_s, -1.0)):
        np.add.at(steps, np.clip(np.round(np.asarray(times) * ctx.sr).astype(np.int64), 0, ctx.n),
                  sign)
    level = np.clip(np.cumsum(steps[:ctx.n]), 0, 1)  # overlapping openings stay at 1
    width = max(1, int(smooth_s * ctx.sr))
    total = np.cumsum(level, dtype=np.float64)
    total[width:] -= total[:-width].copy()
    return (total / width).astype(np.float32)


def _periodic_times(ctx: _Ctx, rate_hz: float, jitter: float) -> np.ndarray:
    """Event times (s) at `rate_hz` with relative interval jitter from a random phase."""
    count = int(np.ceil(ctx.duration * rate_hz)) + 2
    intervals = (1.0 + jitter * ctx.rng.standard_normal(count)) / rate_hz
    return ctx.rng.uniform(0, 1 / rate_hz) + np.concatenate([[0.0], np.cumsum(intervals)[:-1]])


def _biquad_peak(freq: float, gain_db: float, q: float, sr: int) -> np.ndarray:
    """Peaking-EQ biquad (audio-EQ-cookbook form) as one second-order section, shape (6,)."""
    amp = 10 ** (gain_db / 40)
    omega = 2 * np.pi * freq / sr
    alpha = np.sin(omega) / (2 * q)
    cos = np.cos(omega)
    b = np.array([1 + alpha * amp, -2 * cos, 1 - alpha * amp])
    a = np.array([1 + alpha / amp, -2 * cos, 1 - alpha / amp])
    return np.concatenate([b / a[0], a / a[0]])


def _biquad_high_shelf(freq: float, gain_db: float, sr: int) -> np.ndarray:
    """High-shelf biquad (audio-EQ-cookbook form, shelf slope 1) as one section, shape (6,)."""
    amp = 10 ** (gain_db / 40)
    omega = 2 * np.pi * freq / sr
    cos = np.cos(omega)
    two_sqrt_a_alpha = 2 * np.sqrt(amp) * np.sin(omega) / np.sqrt(2)
    b = amp * np.array([(amp + 1) + (amp - 1) * cos + two_sqrt_a_alpha,
                        -2 * ((amp - 1) + (amp + 1) * cos),
                        (amp + 1) + (amp - 1) * cos - two_sqrt_a_alpha])
    a = np.array([(amp + 1) - (amp - 1) * cos + two_sqrt_a_alpha,
                  2 * ((amp - 1) - (amp + 1) * cos),
                  (amp + 1) - (amp - 1) * cos - two_sqrt_a_alpha])
    return np.concatenate([b / a[0], a / a[0]])


# --------------------------------------------------------------------------------------------
# Machine sounds. Each returns the machine's own sound, unit RMS, before room and background.
# Arguments: context, section number, attribute dict, anomaly kind (or None), intensity.
# --------------------------------------------------------------------------------------------

# Fan units per section: blades, shaft rate (Hz) and flow-noise corner (Hz).
FAN_UNITS = ({"blades": 5, "shaft_hz": 26.0, "flow_hz": 900.0},
             {"blades": 6, "shaft_hz": 23.5, "flow_hz": 700.0},
             {"blades": 7, "shaft_hz": 21.0, "flow_hz": 1100.0})


def _fan(ctx: _Ctx, section: int, attrs: Mapping[str, str], anomaly: str | None,
         intensity: float) -> np.ndarray:
    """Blade-pass harmonics over broadband flow noise modulated at the blade-pass rate."""
    unit = FAN_UNITS[section]
    blades = unit["blades"]
    shaft = unit["shaft_hz"] * (1 + 0.012 * ctx.rng.standard_normal())
    index = _phase_index(_cycles(ctx, shaft, _fluctuation(ctx, 0.002)))

    k = np.arange(1, int(_NYQUIST_MARGIN * ctx.sr / 1.02 / shaft) + 1)
    blade_pass = k % blades == 0
    levels_db = np.where(blade_pass, -6.0 * (k / blades - 1), -34.0 - 4 * np.log2(k))
    if anomaly == "blade_damage":  # an uneven rotor: shaft harmonics between blade-pass ones
        levels_db = np.where(blade_pass, levels_db, levels_db + intensity)
    tonal = _harmonics(ctx, index, levels_db + 1.5 * ctx.rng.standard_normal(k.size))

    freqs = ctx.freqs
    flow = _shaped_noise(ctx, _band(freqs, 60.0, unit["flow_hz"] * ctx.rng.uniform(0.95, 1.05))
                         * _tilt(freqs, -1.0))
    flow *= np.float32(1) + np.float32(0.25) * _sine(ctx, index, blades)
    sound = ctx.db((2.0, 1.0)) * _unit_rms(tonal) + flow

    if anomaly == "imbalance":
        sound *= np.float32(1) + np.float32(intensity) * _sine(ctx, index, 1)
    elif anomaly == "rub":
        contact = np.maximum(_sine(ctx, index, 1), 0) ** 6
        band = _shaped_noise(ctx, _resonance(freqs, ctx.rng.uniform(2500, 4000), 6.0))
        sound += _db_to_amp(intensity) * _unit_rms(contact * band)
    return _unit_rms(sound)


# Gearbox units: pinion teeth and housing resonance (Hz) of sections 00 and 01, and of the
# units that section 02 ("id") switches between.
GEARBOX_UNITS = {0: (19, 1400.0), 1: (23, 1100.0)}
GEARBOX_ID_UNITS = {"01": (17, 1600.0), "03": (19, 1250.0), "05": (21, 1500.0),
                    "02": (18, 1350.0), "04": (25, 1000.0)}
# Operating point of the sections whose attribute does not set it.
GEARBOX_DEFAULTS = {"volt": "1.5", "wt": "0"}
# Shaft rate (Hz) per volt, and relative slow-down per gram of load.
GEARBOX_HZ_PER_VOLT = 9.0
GEARBOX_SLIP_PER_GRAM = 0.0005


def _gearbox(ctx: _Ctx, section: int, attrs: Mapping[str, str], anomaly: str | None,
             intensity: float) -> np.ndarray:
    """Mesh harmonics with shaft-rate sidebands, brush noise of the DC motor, housing resonance."""
    teeth, housing = GEARBOX_ID_UNITS[attrs["id"]] if "id" in attrs else GEARBOX_UNITS[section]
    settings = {**GEARBOX_DEFAULTS, **attrs}
    volt, weight = float(settings["volt"]), float(settings["wt"])
    shaft = GEARBOX_HZ_PER_VOLT * volt * (1 - GEARBOX_SLIP_PER_GRAM * weight) * (
        1 + 0.01 * ctx.rng.standard_normal())
    cycles = _cycles(ctx, shaft, _fluctuation(ctx, 0.003))
    index = _phase_index(cycles)

    count = int(_NYQUIST_MARGIN * ctx.sr / 1.02 / shaft)
    levels_db = np.full(count, -60.0)
    load_db = 20 * np.log10(1 + weight / 200)
    sideband_boost = intensity if anomaly == "wear" else 0.0
    for mesh in range(1, 5):
        centre = mesh * teeth
        for offset, level in ((0, -5.0 * (mesh - 1) + load_db), (1, -16.0 + sideband_boost),
                              (2, -24.0 + sideband_boost)):
            for harmonic in (centre - offset, centre + offset):
                if 1 <= harmonic <= count:
                    levels_db[harmonic - 1] = level - 2.0 * (mesh - 1)
    levels_db[:2] = (-20.0, -26.0)
    tonal = _unit_rms(_harmonics(ctx, index, levels_db + 2.0 * ctx.rng.standard_normal(count)))

    freqs = ctx.freqs
    brush = _shaped_noise(ctx, _band(freqs, 2500.0, 7000.0, 2))
    brush *= np.float32(1) + np.float32(0.6) * _sine(ctx, index, 6)
    body = _shaped_noise(ctx, _mix_shapes(
        (_resonance(freqs, housing * ctx.rng.uniform(0.97, 1.03), 4.0), 1.0),
        (_tilt(freqs, -3.0), 0.3)))
    sound = tonal + ctx.db((-9.0, 1.0)) * brush + ctx.db((-8.0, 1.0)) * body

    if anomaly == "tooth_damage":
        impact = _resonate(ctx, _periodic_times(ctx, shaft, 0.002), 1.0,
                           ((housing, 120.0, 1.0), (2.7 * housing, 300.0, 0.6)))
        sound += _db_to_amp(intensity) * _unit_rms(impact)
    elif anomaly == "ghost_tone":
        sound += _db_to_amp(intensity) * np.float32(np.sqrt(2)) * _sine(
            ctx, _phase_index(cycles, teeth / 2))
    return _unit_rms(sound)


# Bearing units per section: structural resonance (Hz); shared geometry below.
BEARING_RESONANCE_HZ = (3200.0, 2700.0, 3600.0)
BEARING_BALLS = 9
BEARING_BALL_RATIO = 0.25  # ball diameter / pitch diameter (contact angle 0)
# Shaft rate (Hz) per unit of the "vel" attribute.
BEARING_HZ_PER_VEL = 2.0


def _bearing_rates(shaft_hz: float) -> dict[str, float]:
    """Defect frequencies (Hz) of the bearing geometry at shaft rate `shaft_hz`."""
    ratio = BEARING_BALL_RATIO
    return {"outer_race": BEARING_BALLS / 2 * shaft_hz * (1 - ratio),
            "inner_race": BEARING_BALLS / 2 * shaft_hz * (1 + ratio),
            "ball": shaft_hz / (2 * ratio) * (1 - ratio ** 2),
            "cage": shaft_hz / 2 * (1 - ratio)}


def _bearing(ctx: _Ctx, section: int, attrs: Mapping[str, str], anomaly: str | None,
             intensity: float) -> np.ndarray:
    """Motor tones, resonance-coloured rolling noise, micro-impacts; defects add impulse trains."""
    vel = float(attrs["vel"])
    shaft = BEARING_HZ_PER_VEL * vel * (1 + 0.01 * ctx.rng.standard_normal())
    rates = _bearing_rates(shaft)
    resonance = BEARING_RESONANCE_HZ[section] * ctx.rng.uniform(0.98, 1.02)
    index = _phase_index(_cycles(ctx, shaft, _fluctuation(ctx, 0.003)))

    motor = _harmonics(ctx, index, np.array([-4.0, -10.0, -16.0, -20.0, -24.0, -28.0])
                       + 2 * ctx.rng.standard_normal(6))
    freqs = ctx.freqs
    rolling = _shaped_noise(ctx, _mix_shapes((_resonance(freqs, resonance, 3.0), 1.0),
                                             (_tilt(freqs, -3.0), 0.4)))
    rolling *= np.float32(1) + np.float32(0.15) * _sine(ctx, _tone_index(ctx, rates["cage"]))
    micro_times = ctx.rng.uniform(0, ctx.duration, int(150 * ctx.duration))
    micro = _resonate(ctx, micro_times, ctx.rng.exponential(1.0, micro_times.size),
                      ((resonance, 250.0, 1.0),))
    # Faster rotation: more rolling noise relative to the motor tones.
    rolling_db = 8 * np.log10(vel / 12.0) + ctx.normal(0.0, 1.0)
    sound = _unit_rms(motor) + _db_to_amp(rolling_db) * (
        rolling + np.float32(0.3) * _unit_rms(micro))

    if anomaly is not None:
        times = _periodic_times(ctx, rates[anomaly], 0.01)
        modulation = {"outer_race": None, "inner_race": shaft, "ball": rates["cage"]}[anomaly]
        amplitudes = 1.0 if modulation is None else \
            0.5 + 0.5 * np.cos(2 * np.pi * modulation * times + ctx.rng.uniform(0, 2 * np.pi))
        defect = _resonate(ctx, times, amplitudes,
                           ((resonance, 200.0, 1.0), (1.8 * resonance, 400.0, 0.5)))
        sound += _db_to_amp(intensity + rolling_db) * _unit_rms(defect)
    return _unit_rms(sound)


# Slide-rail units per section: stroke (m), ball-screw lead (m), carriage resonance (Hz).
SLIDER_UNITS = ({"stroke": 0.8, "lead": 0.010, "resonance": 2300.0},
                {"stroke": 0.6, "lead": 0.012, "resonance": 2800.0},
                {"stroke": 0.7, "lead": 0.008, "resonance": 2000.0})
# Operating point (vel in mm/s, ac in G) of the sections whose attribute does not set it.
SLIDER_DEFAULTS = ({"vel": "700", "ac": "0.30"}, {"vel": "700", "ac": "0.30"},
                   {"vel": "600", "ac": "0.20"})
SLIDER_DWELL_S = 0.25
_GRAVITY = 9.81


def _slider_motion(ctx: _Ctx, stroke: float, speed: float, accel: float
                   ) -> tuple[np.ndarray, float, np.ndarray]:
    """Back-and-forth trapezoidal speed profile |v(t)| (m/s, float32 (n,)), its peak speed (m/s)
    and the stroke start times (s).

    Each stroke accelerates at `accel` (m/s^2) to at most `speed` (m/s), cruises, decelerates to
    rest after `stroke` metres, then dwells for SLIDER_DWELL_S before the return stroke.
    """
    peak = min(speed, np.sqrt(accel * stroke))
    move_s = stroke / peak + peak / accel
    period = move_s + SLIDER_DWELL_S
    offset = ctx.rng.uniform(0, period)
    tau = np.fmod(ctx.time + np.float32(offset), np.float32(period))  # fmod: arguments are > 0
    velocity = np.minimum(np.minimum(np.float32(accel) * tau, np.float32(peak)),
                          np.float32(accel) * (np.float32(move_s) - tau))
    return np.maximum(velocity, 0), peak, np.arange(-offset, ctx.duration, period)


def _slider(ctx: _Ctx, section: int, attrs: Mapping[str, str], anomaly: str | None,
            intensity: float) -> np.ndarray:
    """Ball-screw tones sweeping with the carriage speed, rolling noise and reversal clunks."""
    unit = SLIDER_UNITS[section]
    settings = {**SLIDER_DEFAULTS[section], **attrs}
    speed = float(settings["vel"]) / 1000 * (1 + 0.02 * ctx.rng.standard_normal())
    accel = float(settings["ac"]) * _GRAVITY * (1 + 0.03 * ctx.rng.standard_normal())
    velocity, peak, stroke_starts = _slider_motion(ctx, unit["stroke"], speed, accel)
    moving = velocity / np.float32(peak)
    cycles = _cycles(ctx, velocity / np.float32(unit["lead"]))  # screw revolutions

    k = np.arange(1, int(_NYQUIST_MARGIN * ctx.sr * unit["lead"] / (1.05 * peak)) + 1)
    levels_db = -3 * np.log2(k) + 8 * np.exp(-0.5 * (k - 4.5) ** 2) \
        + 5 * np.exp(-0.5 * (k - 9.0) ** 2) + 2 * ctx.rng.standard_normal(k.size)
    tonal = _harmonics(ctx, _phase_index(cycles), levels_db) * moving
    freqs = ctx.freqs
    rolling = _shaped_noise(ctx, _band(freqs, 800.0, 5000.0) * _resonance(
        freqs, unit["resonance"] * ctx.rng.uniform(0.97, 1.03), 2.0)) * moving
    hum = _harmonics(ctx, _tone_index(ctx, 50.0), np.array([-60.0, 0.0, -60.0, -6.0]))
    clunk = _resonate(ctx, stroke_starts, 1.0, ((unit["resonance"] / 2, 150.0, 1.0),))
    sound = _unit_rms(tonal) + ctx.db((-3.0, 1.0)) * _unit_rms(rolling) \
        + ctx.db((-20.0, 1.0)) * _unit_rms(hum) + ctx.db((-10.0, 1.0)) * clunk

    if anomaly == "friction":
        # Rough spots of the rail: positions (fraction of the stroke) where friction squeals.
        position = np.mod(np.cumsum(velocity, dtype=np.float64) / (ctx.sr * unit["stroke"]), 1.0)
        width = ctx.rng.uniform(0.05, 0.12)
        rough = np.zeros(ctx.n, bool)
        for centre in ctx.rng.uniform(0.1, 0.9, 2):
            rough |= np.abs(position - centre) < width
        squeal = _shaped_noise(ctx, _band(freqs, 3000.0, 6500.0, 2)) * rough * moving
        sound += _db_to_amp(intensity) * _unit_rms(squeal)
    elif anomaly == "rail_damage":
        travelled = np.cumsum(velocity, dtype=np.float64) / (ctx.sr * unit["stroke"])
        crossings = np.arange(np.floor(travelled[-1]) + 1) + ctx.rng.uniform(0.1, 0.9)
        times = np.searchsorted(travelled, crossings) / ctx.sr
        impact = _resonate(ctx, times, 1.0,
                           ((unit["resonance"] * 1.3, 150.0, 1.0), (4100.0, 300.0, 0.5)))
        sound += _db_to_amp(intensity) * _unit_rms(impact)
    elif anomaly == "screw_defect":
        sound += _db_to_amp(intensity) * _unit_rms(_sine(ctx, _phase_index(cycles, 2.5)) * moving)
    return _unit_rms(sound)


# Valve open/close patterns: period (s) and (open, close) times (s) within one period.
VALVE_PATTERNS = {"00": (1.0, ((0.0, 0.25),)),
                  "01": (1.2, ((0.0, 0.12), (0.3, 0.42))),
                  "02": (1.6, ((0.0, 0.5),)),
                  "03": (2.0, ((0.0, 0.08), (0.2, 0.28), (0.4, 0.48)))}
# Click resonances (Hz) of the opening and closing click of the valve of each section, and of the
# second valve of section 02.
VALVE_CLICKS = ({"open": (2100.0, 5200.0), "close": (1700.0, 4300.0)},
                {"open": (2600.0, 6100.0), "close": (1900.0, 4800.0)},
                {"open": (2300.0, 5600.0), "close": (1800.0, 4500.0)})
SECOND_VALVE_CLICKS = {"open": (3100.0, 6800.0), "close": (2500.0, 5300.0)}


def _valve_events(ctx: _Ctx, pattern: str, jitter_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Open and close times (s) of `pattern` repeated over the clip from a random phase."""
    period, events = VALVE_PATTERNS[pattern]
    starts = np.arange(-ctx.rng.uniform(0, period), ctx.duration, period)
    opens = (starts[:, None] + np.array([e[0] for e in events])[None, :]).ravel()
    closes = (starts[:, None] + np.array([e[1] for e in events])[None, :]).ravel()
    return (opens + jitter_s * ctx.rng.standard_normal(opens.size),
            closes + jitter_s * ctx.rng.standard_normal(closes.size))


def _one_valve(ctx: _Ctx, pattern: str, clicks: Mapping[str, tuple[float, float]],
               anomaly: str | None, intensity: float) -> np.ndarray:
    """Opening/closing clicks of one solenoid valve plus the flow hiss while it is open."""
    opens, closes = _valve_events(ctx, pattern, 0.004)
    if anomaly == "irregular":
        keep = ctx.rng.random(opens.size) >= intensity
        extra_opens = ctx.rng.uniform(0, ctx.duration, int(round(intensity * opens.size)))
        extra_closes = extra_opens + ctx.rng.uniform(0.02, 0.06, extra_opens.size)  # stutter
        opens = np.concatenate([opens[keep], extra_opens])
        closes = np.concatenate([closes[keep], extra_closes])

    detune = ctx.rng.uniform(0.98, 1.02)

    def click(times: np.ndarray, modes: tuple[float, float], level: float) -> np.ndarray:
        amplitudes = level * 10 ** (1.5 * ctx.rng.standard_normal(times.size) / 20)
        return _resonate(ctx, times, amplitudes,
                         ((modes[0] * detune, 150.0, 1.0), (modes[1] * detune, 400.0, 0.6)))

    sound = click(opens, clicks["open"], 0.7) + click(closes, clicks["close"], 1.0)
    flow = _gate(ctx, opens, closes, 0.004)
    if anomaly == "leak":
        flow = np.maximum(flow, _db_to_amp(intensity))
    elif anomaly == "chatter":
        rebounds = closes[None, :] + ctx.rng.uniform(0.008, 0.035, (2, closes.size))
        sound += click(rebounds.ravel(), clicks["close"], _db_to_amp(intensity))
    hiss = _shaped_noise(ctx, _band(ctx.freqs, 1500.0, 6000.0, 2))
    return sound + np.float32(0.05) * ctx.db((0.0, 1.5)) * hiss * flow


def _valve(ctx: _Ctx, section: int, attrs: Mapping[str, str], anomaly: str | None,
           intensity: float) -> np.ndarray:
    """A solenoid valve's click pattern over air-supply hum; section 02 adds a second valve."""
    pattern = attrs.get("pat", attrs.get("v1pat"))
    sound = _unit_rms(_one_valve(ctx, pattern, VALVE_CLICKS[section], anomaly, intensity))
    second = attrs.get("v2pat", "none")
    if second != "none":
        sound += ctx.db(SECOND_VALVE_DB) * _unit_rms(
            _one_valve(ctx, second, SECOND_VALVE_CLICKS, None, 0.0))
    supply = _harmonics(ctx, _tone_index(ctx, 50.0), np.array([0.0, -4.0, -10.0, -14.0]))
    return _unit_rms(sound + ctx.db((-22.0, 1.0)) * _unit_rms(supply))


_MACHINE_SOUNDS: dict[str, Callable[..., np.ndarray]] = {
    "fan": _fan, "gearbox": _gearbox, "bearing": _bearing, "slider": _slider, "valve": _valve}


# --------------------------------------------------------------------------------------------
# Environment: background noise, other machines, microphone location / panel colouration.
# --------------------------------------------------------------------------------------------

# Background kinds: "ambient" everywhere a section does not shift the noise type; A, B are the
# source and C, D the target factory noises of the "f-n" sections.
BACKGROUND_KINDS = ("ambient", "A", "B", "C", "D")


def _hum(ctx: _Ctx, levels_db: Sequence[float]) -> np.ndarray:
    """50 Hz mains hum with harmonics at `levels_db`, unit RMS."""
    return _unit_rms(_harmonics(ctx, _tone_index(ctx, 50.0), np.asarray(levels_db)))


def _pulsing(ctx: _Ctx, rate_hz: float, depth: float) -> np.ndarray:
    """1 + depth * sin(2 pi rate t + random phase): a slow amplitude modulation."""
    return np.float32(1) + np.float32(depth) * _sine(ctx, _tone_index(ctx, rate_hz))


def _background(ctx: _Ctx, kind: str) -> np.ndarray:
    """Factory background of `kind` (see BACKGROUND_KINDS), unit RMS."""
    freqs = ctx.freqs
    slope = ctx.rng.uniform(-0.5, 0.5)
    if kind == "ambient":  # hall ambience: pink noise and a little mains hum
        return _unit_rms(_shaped_noise(ctx, _band(freqs, 30.0, 7000.0) * _tilt(freqs, -3.0 + slope))
                         + ctx.db((-18.0, 2.0)) * _hum(ctx, (0.0, -6.0, -10.0)))
    if kind == "A":  # air handling: low rumble, strong hum
        return _unit_rms(
            _shaped_noise(ctx, _mix_shapes((_band(freqs, 25.0, 300.0, 2), 1.0),
                                           (_tilt(freqs, -3.0 + slope), 0.3)))
            + ctx.db((-6.0, 1.5)) * _hum(ctx, (0.0, -2.0, -8.0, -10.0, -14.0)))
    if kind == "B":  # workshop: pink noise, voice-band babble, sporadic distant impacts
        babble = _shaped_noise(ctx, _band(freqs, 300.0, 3000.0, 2)) * _pulsing(
            ctx, ctx.rng.uniform(3, 6), 0.6)
        knocks = _resonate(ctx, ctx.rng.uniform(0, ctx.duration, int(0.8 * ctx.duration)),
                           ctx.rng.uniform(0.3, 1.0, int(0.8 * ctx.duration)),
                           ((ctx.rng.uniform(400, 900), 80.0, 1.0), (2200.0, 400.0, 0.3)))
        return _unit_rms(_shaped_noise(ctx, _band(freqs, 40.0, None) * _tilt(freqs, -3.0 + slope))
                         + np.float32(0.7) * babble + np.float32(2.0) * knocks)
    if kind == "C":  # compressor hall: brown noise and pulsating mid-band noise
        pulse = _shaped_noise(ctx, _band(freqs, 100.0, 800.0, 2)) * _pulsing(
            ctx, ctx.rng.uniform(10, 14), 0.8)
        return _unit_rms(_shaped_noise(ctx, _band(freqs, 20.0, None) * _tilt(freqs, -6.0 + slope))
                         + np.float32(0.8) * pulse)
    if kind == "D":  # compressed-air hiss over light pink noise
        return _unit_rms(_shaped_noise(ctx, _mix_shapes((_band(freqs, 2000.0, 7500.0, 2), 1.0),
                                                        (_tilt(freqs, -3.0 + slope), 0.6)))
                         + ctx.db((-16.0, 2.0)) * _hum(ctx, (0.0, -6.0)))
    raise ValueError(f"unknown background kind {kind!r}; expected one of {BACKGROUND_KINDS}")


def _interferer(ctx: _Ctx, kind: str) -> np.ndarray:
    """Another machine mixed into the fan recording (fan section 00, "m-n"), unit RMS."""
    freqs = ctx.freqs
    if kind == "W":  # pump: rich harmonics of 29 Hz with vane-pass pulsation
        index = _phase_index(_cycles(ctx, 29.0 * ctx.rng.uniform(0.98, 1.02),
                                     _fluctuation(ctx, 0.003)))
        k = np.arange(1, 60)
        pump = _harmonics(ctx, index, -2 * k ** 0.7 + 2 * ctx.rng.standard_normal(k.size))
        return _unit_rms(pump * (np.float32(1) + np.float32(0.4) * _sine(ctx, index, 3)))
    if kind == "X":  # reciprocating compressor: piston knocks at 14 Hz
        knocks = _resonate(ctx, _periodic_times(ctx, 14.0, 0.01), 1.0,
                           ((700.0, 90.0, 1.0), (1900.0, 250.0, 0.5)))
        return _unit_rms(_unit_rms(knocks)
                         + np.float32(0.3) * _shaped_noise(ctx, _band(freqs, 50.0, 400.0)))
    if kind == "Y":  # conveyor: rolling noise and periodic clanks
        clanks = _resonate(ctx, _periodic_times(ctx, 1 / 0.6, 0.05), 1.0,
                           ((1200.0, 60.0, 1.0), (3100.0, 150.0, 0.7)))
        return _unit_rms(_unit_rms(clanks)
                         + np.float32(0.8) * _shaped_noise(ctx, _band(freqs, 300.0, 1500.0, 2)))
    if kind == "Z":  # grinder: high whine with its octave and a hiss
        index = _phase_index(_cycles(ctx, 1575.0 * ctx.rng.uniform(0.99, 1.01),
                                     _fluctuation(ctx, 0.004, 2.0)))
        whine = _harmonics(ctx, index, np.array([0.0, -8.0]))
        return _unit_rms(_unit_rms(whine)
                         + np.float32(0.7) * _shaped_noise(ctx, _band(freqs, 4000.0, 7500.0, 2)))
    raise ValueError(f"unknown interfering machine {kind!r}; expected W, X, Y or Z")


# Microphone locations (bearing "loc") and panels around the valve ("panel"): broadband gain (dB),
# a peaking band (Hz, dB) and a high-shelf gain above 4 kHz (dB).
COLOURATIONS = {
    "A": (0.0, 1500.0, 3.0, -2.0), "B": (-2.0, 2500.0, 4.0, -4.0),
    "C": (-4.0, 900.0, 2.0, -1.0), "D": (-3.0, 3500.0, -3.0, 2.0),
    "E": (-6.0, 700.0, 5.0, -6.0), "F": (-1.0, 5000.0, 4.0, 3.0),
    "G": (-8.0, 1800.0, -5.0, -3.0), "H": (-5.0, 3000.0, 6.0, -8.0),
    "open": (0.0, 1000.0, 0.0, 0.0), "bs-c": (-4.0, 800.0, 4.0, -9.0),
    "b-c": (-2.0, 1200.0, 3.0, -5.0), "s-c": (-3.0, 600.0, 5.0, -7.0),
}


def _colour(ctx: _Ctx, x: np.ndarray, name: str) -> np.ndarray:
    gain_db, peak_hz, peak_db, shelf_db = COLOURATIONS[name]
    # Corner frequencies stay clear of the Nyquist frequency at low sample rates.
    sos = np.stack([
        _biquad_peak(min(peak_hz * ctx.rng.uniform(0.97, 1.03), _NYQUIST_MARGIN * ctx.sr),
                     peak_db, 1.5, ctx.sr),
        _biquad_high_shelf(min(4000.0, 0.4 * ctx.sr), shelf_db, ctx.sr)])
    return (scipy.signal.sosfilt(sos.astype(np.float32), x) * _db_to_amp(gain_db)).astype(
        np.float32)


def _render(ctx: _Ctx, machine: str, attrs: Mapping[str, str], sound: np.ndarray) -> np.ndarray:
    """Places the machine sound in its environment and returns int16 PCM samples (n,)."""
    snr_db = ctx.normal(*DEFAULT_SNR_DB[machine])
    if "n-lv" in attrs:
        snr_db = ctx.normal(NOISE_LEVEL_SNR_DB[attrs["n-lv"]], 0.5)
    scene = sound
    for key in ("loc", "panel"):
        if key in attrs:
            scene = _colour(ctx, scene, attrs[key])
    if "m-n" in attrs:
        scene = scene + ctx.db(INTERFERER_DB) * _interferer(ctx, attrs["m-n"])
    mix = scene + _db_to_amp(-snr_db) * _background(ctx, attrs.get("f-n", "ambient"))
    mix = _unit_rms(mix) * ctx.db(OUTPUT_RMS_DBFS)
    peak = float(np.max(np.abs(mix)))
    if peak > PEAK_LIMIT:
        mix *= np.float32(PEAK_LIMIT / peak)
    return np.rint(mix * np.float32(32767)).astype(np.int16)


# --------------------------------------------------------------------------------------------
# Clips, file names and the tree.
# --------------------------------------------------------------------------------------------

# Clips per unit of work (and per progress-bar step) when writing a machine type.
_CHUNK_CLIPS = 32


def clip_seed_sequence(seed: int, machine: str, section: int, domain: str, split: str,
                       label: str, index: int) -> np.random.SeedSequence:
    """The seed sequence of one clip; a stable function of all its coordinates."""
    spawn_key = (zlib.crc32(machine.encode()), section, DOMAINS.index(domain),
                 ("train", "test").index(split), LABELS.index(label), index)
    return np.random.SeedSequence(seed, spawn_key=spawn_key)


def clip_file_name(section: int, domain: str, split: str, label: str, index: int,
                   attributes: Sequence[tuple[str, str]]) -> str:
    """Real-layout WAV name, e.g. section_00_source_train_normal_0000_vel_8_loc_A.wav."""
    tail = "_".join(f"{name}_{value}" for name, value in attributes)
    return f"section_{section:02d}_{domain}_{split}_{label}_{index:04d}_{tail}.wav"


def _check_clip_args(machine: str, section: int, domain: str, split: str, label: str,
                     index: int) -> None:
    if machine not in SECTIONS:
        raise ValueError(f"unknown machine type {machine!r}; expected one of {tuple(SECTIONS)}")
    if section not in range(len(SECTIONS[machine])):
        raise ValueError(f"{machine}: section {section} does not exist; sections are 0-2")
    if domain not in DOMAINS or label not in LABELS or split not in ("train", "test"):
        raise ValueError(f"bad clip coordinates: domain={domain!r}, split={split!r}, "
                         f"label={label!r}")
    if split == "train" and label == "anomaly":
        raise ValueError("the train split holds normal clips only")
    if index < 0:
        raise ValueError(f"clip index must be >= 0, got {index}")


def _check_audio_args(sample_rate: int, duration_s: float) -> None:
    if int(sample_rate) != sample_rate or sample_rate < 8000 or not duration_s >= MIN_DURATION_S:
        raise ValueError(f"need an integer sample_rate >= 8000 Hz and duration_s >= "
                         f"{MIN_DURATION_S} s, got {sample_rate!r} Hz and {duration_s!r} s")


def synthesize_clip(machine: str, section: int, domain: str, split: str, label: str, index: int,
                    *, seed: int = 0, sample_rate: int = 16000, duration_s: float = 10.0
                    ) -> SyntheticClip:
    """Synthesizes one clip; the same arguments always give the same samples.

    Args:
      machine: one of MIMII_DG_MACHINE_TYPES.
      section: 0, 1 or 2.
      domain: "source" or "target".
      split: "train" or "test".
      label: "normal" or "anomaly" ("anomaly" only in the test split).
      index: the clip's number within its (section, domain, split, label) group.
      seed: dataset seed.
      sample_rate: Hz.
      duration_s: clip length in seconds.
    Returns:
      The clip: file name, attributes, anomaly kind and int16 samples of shape
      (round(duration_s * sample_rate),).
    """
    _check_clip_args(machine, section, domain, split, label, index)
    _check_audio_args(sample_rate, duration_s)
    rng = np.random.default_rng(
        clip_seed_sequence(seed, machine, section, domain, split, label, index))
    ctx = _Ctx(rng=rng, sr=int(sample_rate), n=int(round(duration_s * sample_rate)))
    spec = SECTIONS[machine][section]
    choices = spec.values(domain)
    attributes = tuple(zip(spec.attribute_names, choices[rng.integers(len(choices))]))
    anomaly, intensity = None, None
    if label == "anomaly":
        kinds = ANOMALY_KINDS[machine]
        anomaly = kinds[rng.integers(len(kinds))]
        intensity = float(rng.uniform(*ANOMALY_LEVELS[machine][anomaly]))
    attrs = dict(attributes)
    sound = _MACHINE_SOUNDS[machine](ctx, section, attrs, anomaly, intensity or 0.0)
    pcm = _render(ctx, machine, attrs, sound)
    return SyntheticClip(file_name=clip_file_name(section, domain, split, label, index, attributes),
                         attributes=attributes, anomaly=anomaly, anomaly_intensity=intensity,
                         pcm=pcm)


def _clip_plan(sections: Sequence[int], num_source_train: int, num_target_train: int,
               num_test: int) -> list[tuple[int, str, str, str, int]]:
    """(section, domain, split, label, index) of every clip of one machine type, in write order."""
    plan = []
    for section in sections:
        for domain, count in (("source", num_source_train), ("target", num_target_train)):
            plan += [(section, domain, "train", "normal", i) for i in range(count)]
        for domain in DOMAINS:
            for label in LABELS:
                plan += [(section, domain, "test", label, i) for i in range(num_test)]
    return plan


def _write_attribute_csvs(machine_dir: pathlib.Path, machine: str, sections: Sequence[int],
                          rows: Sequence[tuple[int, str, str, tuple[tuple[str, str], ...]]]
                          ) -> None:
    """attributes_XX.csv per section from (section, split, name, attributes) rows: the train
    rows, then the test rows, each in name order (as in the real files)."""
    for section in sections:
        entries = [row[1:] for row in rows if row[0] == section]
        names = SECTIONS[machine][section].attribute_names
        header = ["file_name"] + [f"d{i}{kind}" for i in range(1, len(names) + 1)
                                  for kind in ("p", "v")]
        ordered = sorted(entries, key=lambda e: (e[0] != "train", e[1]))
        with open(machine_dir / f"attributes_{section:02d}.csv", "w", newline="",
                  encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            for split, name, attributes in ordered:
                writer.writerow([f"{machine}/{split}/{name}"]
                                + [cell for pair in attributes for cell in pair])


def _write_clips(machine_dir: pathlib.Path, machine: str,
                 jobs: Sequence[tuple[int, str, str, str, int]], seed: int, sample_rate: int,
                 duration_s: float) -> list[tuple[int, str, str, tuple[tuple[str, str], ...]]]:
    """Synthesizes and writes the clips `jobs` (see `_clip_plan`); returns their CSV rows as
    (section, split, file name, attributes)."""
    rows = []
    for section, domain, split, label, index in jobs:
        clip = synthesize_clip(machine, section, domain, split, label, index, seed=seed,
                               sample_rate=sample_rate, duration_s=duration_s)
        soundfile.write(machine_dir / split / clip.file_name, clip.pcm, sample_rate,
                        subtype="PCM_16")
        rows.append((section, split, clip.file_name, clip.attributes))
    return rows


def _write_machine(machine_dir: pathlib.Path, machine: str, sections: Sequence[int],
                   seed: int, sample_rate: int, duration_s: float, sizes: Sequence[int],
                   progress: bool, workers: int) -> None:
    """Writes one machine type's WAVs and attribute CSVs into `machine_dir`."""
    plan = _clip_plan(sections, *sizes)
    for split in ("train", "test"):
        (machine_dir / split).mkdir()
    chunks = [plan[i:i + _CHUNK_CLIPS] for i in range(0, len(plan), _CHUNK_CLIPS)]
    args = (machine_dir, machine)
    settings = (seed, sample_rate, duration_s)
    rows = []
    with tqdm.tqdm(total=len(plan), desc=machine, unit="clip", disable=not progress,
                   dynamic_ncols=True) as bar:
        if workers <= 1:
            for chunk in chunks:
                rows += _write_clips(*args, chunk, *settings)
                bar.update(len(chunk))
        else:
            # "spawn": forking a process that has started JAX's threads is unsafe.
            pool = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"))
            try:
                futures = {pool.submit(_write_clips, *args, chunk, *settings): len(chunk)
                           for chunk in chunks}
                for future in concurrent.futures.as_completed(futures):
                    rows += future.result()
                    bar.update(futures[future])
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    _write_attribute_csvs(machine_dir, machine, sections, rows)


def _manifest(machine: str, sections: Sequence[int], num_source_train: int,
              num_target_train: int, num_test: int, seed: int, sample_rate: int,
              duration_s: float) -> dict:
    return {"generator": "mdg.data.synthetic", "version": GENERATOR_VERSION, "machine": machine,
            "sections": list(sections), "num_source_train": num_source_train,
            "num_target_train": num_target_train, "num_test": num_test, "seed": seed,
            "sample_rate": sample_rate, "duration_s": duration_s}


def read_manifest(machine_dir: str | os.PathLike) -> dict | None:
    """The manifest of a generated machine folder, or None if it has none (or an unreadable one)."""
    path = pathlib.Path(machine_dir) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _exists_error(final: pathlib.Path, existing: dict | None, manifest: dict) -> FileExistsError:
    what = ("was generated with other settings: " + json.dumps(existing) if existing
            else "has no synthetic-dataset manifest " + MANIFEST_NAME)
    return FileExistsError(
        f"{final} exists and {what}; requested {json.dumps(manifest)}. Pass overwrite=True "
        "(CLI: --overwrite) to replace it, or choose another folder.")


def _partial_prefix(machine: str) -> str:
    """Name prefix of this process's temporary folder for `machine`: host and PID tell whether
    a left-over folder's writer is still running."""
    return f".{machine}.partial-{socket.gethostname()}-{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _remove_stale_partials(out: pathlib.Path, machine: str) -> None:
    """Deletes the temporary folders of `machine` whose writer, a process of this host, is gone
    (killed runs). Folders of running processes, or of other hosts, are left alone."""
    host = socket.gethostname()
    for path in out.glob(f".{machine}.partial-*"):
        owner = path.name[len(f".{machine}.partial-"):].rsplit("-", 2)  # host, pid, random
        if (len(owner) == 3 and owner[0] == host and owner[1].isdigit()
                and not _process_alive(int(owner[1]))):
            shutil.rmtree(path, ignore_errors=True)


def _publish(partial: pathlib.Path, final: pathlib.Path, manifest: dict, overwrite: bool) -> None:
    """Renames the finished tree `partial` to `final` (atomic on one file system)."""
    if not final.exists():
        try:
            os.replace(partial, final)
            return
        except OSError:
            if not final.exists():
                raise
    # `final` exists: kept if another process has just written the same tree, else replaced.
    existing = read_manifest(final)
    if existing == manifest:
        return
    if not overwrite:
        raise _exists_error(final, existing, manifest)
    old = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    os.replace(final, old / final.name)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)


def generate(out_dir: str | os.PathLike, machines: Sequence[str] = MIMII_DG_MACHINE_TYPES,
             sections: Sequence[int] = (0, 1, 2), num_source_train: int = 990,
             num_target_train: int = 10, num_test: int = 50, seed: int = 0,
             sample_rate: int = 16000, duration_s: float = 10.0, *, overwrite: bool = False,
             progress: bool = True, workers: int = 1) -> pathlib.Path:
    """Writes the synthetic dataset in the real MIMII DG / DCASE dev layout under `out_dir`.

    Args:
      out_dir: root folder; gets one `<machine>/` folder per machine type.
      machines: machine types, a subset of MIMII_DG_MACHINE_TYPES.
      sections: section numbers (0-2).
      num_source_train: normal source-domain training clips per section.
      num_target_train: normal target-domain training clips per section.
      num_test: test clips per (domain, label) and section, so 4 * num_test per section.
      seed: dataset seed; clip bytes depend only on it and the clip's coordinates.
      sample_rate: Hz.
      duration_s: clip length in seconds.
      overwrite: replace machine folders made with other settings (or by something else);
        without it such a folder is an error.
      progress: show a tqdm progress bar per machine type.
      workers: processes writing clips in parallel (1: in this process). The output does not
        depend on it.
    Returns:
      `out_dir` as a path.
    Raises:
      ValueError: bad arguments.
      FileExistsError: `<out_dir>/<machine>` exists with other settings and not `overwrite`.
    """
    machines = tuple(machines)
    sections = tuple(int(s) for s in sections)
    unknown = [m for m in machines if m not in SECTIONS]
    if unknown or not machines:
        raise ValueError(f"unknown machine types {unknown} (or none given); expected a subset of "
                         f"{MIMII_DG_MACHINE_TYPES}")
    if not sections or any(s not in (0, 1, 2) for s in sections) or len(set(sections)) < len(
            sections):
        raise ValueError(f"sections must be distinct values of 0, 1, 2, got {sections}")
    for name, value in (("num_source_train", num_source_train),
                        ("num_target_train", num_target_train), ("num_test", num_test)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    _check_audio_args(sample_rate, duration_s)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for machine in machines:
        final = out / machine
        manifest = _manifest(machine, sections, int(num_source_train), int(num_target_train),
                             int(num_test), int(seed), int(sample_rate), float(duration_s))
        _remove_stale_partials(out, machine)
        if final.exists():
            existing = read_manifest(final)
            if existing == manifest:
                continue
            if not overwrite:
                raise _exists_error(final, existing, manifest)
        partial = pathlib.Path(tempfile.mkdtemp(prefix=_partial_prefix(machine), dir=out))
        try:
            _write_machine(partial, machine, sections, seed, sample_rate, duration_s,
                           (num_source_train, num_target_train, num_test), progress, workers)
            (partial / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n",
                                                 encoding="utf-8")
            _publish(partial, final, manifest, overwrite)
        finally:
            if partial.exists():
                shutil.rmtree(partial, ignore_errors=True)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: python -m mdg.data.synthetic --out DIR [--machines fan,valve] [--seed N] ..."""
    parser = argparse.ArgumentParser(
        prog="python -m mdg.data.synthetic",
        description="Write the deterministic synthetic MIMII DG dataset in the real DCASE layout.")
    parser.add_argument("--out", required=True, help="output root folder")
    parser.add_argument("--machines", default=",".join(MIMII_DG_MACHINE_TYPES),
                        help="comma-separated machine types (default: all five)")
    parser.add_argument("--sections", default="0,1,2", help="comma-separated sections (0-2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_source_train", type=int, default=990,
                        help="source-domain training clips per section")
    parser.add_argument("--num_target_train", type=int, default=10,
                        help="target-domain training clips per section")
    parser.add_argument("--num_test", type=int, default=50,
                        help="test clips per (domain, label) and section")
    parser.add_argument("--duration", type=float, default=10.0, help="clip length in seconds")
    parser.add_argument("--sample_rate", type=int, default=16000, help="Hz")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace machine folders generated with other settings")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes writing clips in parallel (output is identical)")
    args = parser.parse_args(argv)
    try:
        generate(args.out, machines=[m for m in args.machines.split(",") if m],
                 sections=[int(s) for s in args.sections.split(",") if s],
                 num_source_train=args.num_source_train, num_target_train=args.num_target_train,
                 num_test=args.num_test, seed=args.seed, sample_rate=args.sample_rate,
                 duration_s=args.duration, overwrite=args.overwrite, workers=args.workers)
    except (ValueError, FileExistsError) as error:
        parser.exit(2, f"error: {error}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
