"""Sound primitives of the synthetic generator: tones, harmonic series, shaped noise, resonances.

All synthesis is vectorized numpy in float32: periodic parts are looked up in one-period tables
built by an inverse FFT (a harmonic series at any speed profile costs one table lookup), noises are
shaped in the frequency domain with random phases, and struck resonances are IIR resonators or
ringing kernels added at each event. No per-sample Python loops. Every function that draws random
numbers takes the clip's `Ctx`, whose generator makes the clip deterministic. Arrays are float32 of
shape (n,) (n = samples of the clip) unless stated otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np
import scipy.fft
import scipy.signal

# Phase-table length of periodic sources (power of two: a bit mask wraps the phase index).
_TABLE_SIZE = 1 << 14
_TABLE_MASK = _TABLE_SIZE - 1
_SINE_TABLE = np.sin(2 * np.pi * np.arange(_TABLE_SIZE) / _TABLE_SIZE).astype(np.float32)
_SINE_TABLE.setflags(write=False)
NYQUIST_MARGIN = 0.45  # harmonics are kept below this fraction of the sample rate
# Resonated events: up to this many, each event's ringing kernel is added where it starts;
# beyond, the impulse train runs through the resonators as IIR filters (cheaper when dense).
_SPARSE_EVENTS = 200
# Slow speed fluctuations are computed on a grid this many samples apart and held in between.
_FLUCTUATION_STEP = 64


@dataclasses.dataclass(frozen=True)
class Ctx:
    """Per-clip synthesis context: the clip's generator, sample rate (Hz) and length (samples)."""

    rng: np.random.Generator
    sr: int
    n: int

    @property
    def freqs(self) -> np.ndarray:
        return rfft_freqs(self.n, self.sr)

    @property
    def time(self) -> np.ndarray:
        return time_axis(self.n, self.sr)

    @property
    def duration(self) -> float:
        return self.n / self.sr

    def normal(self, mean: float, std: float) -> float:
        return float(mean + std * self.rng.standard_normal())

    def db(self, mean_std: tuple[float, float]) -> np.float32:
        """A per-clip level in dB drawn from N(mean, std), returned as a linear amplitude."""
        return db_to_amp(self.normal(*mean_std))


@functools.lru_cache(maxsize=4)
def rfft_freqs(n: int, sr: int) -> np.ndarray:
    freqs = np.fft.rfftfreq(n, 1.0 / sr).astype(np.float32)
    freqs[0] = freqs[1] / 2  # avoids division by zero in 1/f shapes; the DC bin is zeroed anyway
    freqs.setflags(write=False)
    return freqs


@functools.lru_cache(maxsize=4)
def time_axis(n: int, sr: int) -> np.ndarray:
    t = (np.arange(n, dtype=np.float64) / sr).astype(np.float32)
    t.setflags(write=False)
    return t


@functools.lru_cache(maxsize=4)
def sample_numbers(n: int) -> np.ndarray:
    numbers = np.arange(n, dtype=np.int64)
    numbers.setflags(write=False)
    return numbers


def db_to_amp(db: float) -> np.float32:
    return np.float32(10.0 ** (db / 20.0))


def unit_rms(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x * np.float32(1.0 / (np.sqrt(np.dot(x, x) / x.size) + 1e-12))


def mix_shapes(*parts: tuple[np.ndarray, float]) -> np.ndarray:
    """Amplitude spectrum of a sum of independent noises: (shape, RMS amplitude) pairs."""
    power = np.zeros_like(parts[0][0])
    for shape, amplitude in parts:
        power += np.float32(amplitude ** 2 / np.dot(shape, shape)) * np.square(shape)
    return np.sqrt(power)


def shaped_noise(ctx: Ctx, magnitude: np.ndarray) -> np.ndarray:
    """Noise with amplitude spectrum `magnitude` (shape (n // 2 + 1,)), random phases; unit RMS."""
    phase = ctx.rng.random(magnitude.shape[0], dtype=np.float32) * np.float32(2 * np.pi)
    spectrum = np.empty(magnitude.shape[0], np.complex64)
    spectrum.real = magnitude * np.cos(phase)
    spectrum.imag = magnitude * np.sin(phase)
    spectrum[0] = 0
    return unit_rms(scipy.fft.irfft(spectrum, ctx.n))


def band(freqs: np.ndarray, low: float | None, high: float | None, order: int = 1) -> np.ndarray:
    """Butterworth-like band-pass magnitude (1 in the pass band), shape of `freqs`."""
    magnitude = np.ones_like(freqs)
    if low:
        magnitude /= np.sqrt(1 + np.square(np.float32(low) / freqs) ** order)
    if high:
        magnitude /= np.sqrt(1 + np.square(freqs / np.float32(high)) ** order)
    return magnitude


def resonance(freqs: np.ndarray, centre: float, q: float) -> np.ndarray:
    """Magnitude of a second-order resonance at `centre` Hz with quality factor `q` (peak 1)."""
    ratio = freqs / np.float32(centre)
    return 1 / np.sqrt(1 + np.float32(q * q) * (ratio - 1 / ratio) ** 2)


def tilt(freqs: np.ndarray, db_per_octave: float) -> np.ndarray:
    """Spectral tilt in dB per octave, 0 dB at 1 kHz."""
    return (freqs / np.float32(1000.0)) ** np.float32(db_per_octave / 6.0206)


def fluctuation(ctx: Ctx, depth: float, max_hz: float = 1.0) -> np.ndarray:
    """Slow random relative deviation with std ~ `depth`: three sinusoids below `max_hz` Hz."""
    rates = ctx.rng.uniform(0.05, max_hz, 3)
    phases = ctx.rng.uniform(0, 2 * np.pi, 3)
    weights = ctx.rng.uniform(0.5, 1.0, 3)
    weights *= depth / np.sqrt(np.sum(weights ** 2) / 2)
    grid = np.arange(ctx.n // _FLUCTUATION_STEP + 1) * (_FLUCTUATION_STEP / ctx.sr)
    coarse = np.sin(2 * np.pi * rates[None, :] * grid[:, None] + phases[None, :]) @ weights
    return np.repeat(coarse.astype(np.float32), _FLUCTUATION_STEP)[:ctx.n]


def cycles(ctx: Ctx, freq_hz: float | np.ndarray, fluctuation: np.ndarray | float = 0.0
            ) -> np.ndarray:
    """Elapsed cycles (float64, shape (n,)) of a rotation at `freq_hz` * (1 + fluctuation)."""
    inst = np.asarray(freq_hz, np.float32) * (np.float32(1) + np.asarray(fluctuation, np.float32))
    return np.cumsum(np.broadcast_to(inst, (ctx.n,)), dtype=np.float64) / ctx.sr


def phase_index(cycles: np.ndarray, multiple: float = 1.0) -> np.ndarray:
    """Phase-table index (int64, shape (n,)) of `multiple` x `cycles`."""
    return (cycles * (multiple * _TABLE_SIZE)).astype(np.int64) & _TABLE_MASK


def tone_index(ctx: Ctx, freq_hz: float) -> np.ndarray:
    """Phase-table index of a steady tone at `freq_hz` (to within sr / _TABLE_SIZE, ~1 Hz),
    starting at a random phase."""
    step = int(round(freq_hz * _TABLE_SIZE / ctx.sr))
    return (sample_numbers(ctx.n) * step + int(ctx.rng.integers(_TABLE_SIZE))) & _TABLE_MASK


def harmonic_table(amplitudes: Sequence[float], phases: Sequence[float]) -> np.ndarray:
    """One period of sum_k a_k cos(2 pi k x + phi_k), k = 1..K, at `_TABLE_SIZE` points."""
    spectrum = np.zeros(_TABLE_SIZE // 2 + 1, np.complex64)
    k = len(amplitudes)
    if k >= _TABLE_SIZE // 2:
        raise ValueError(f"{k} harmonics do not fit a phase table of {_TABLE_SIZE} points")
    spectrum[1:k + 1] = np.asarray(amplitudes) * np.exp(1j * np.asarray(phases)) * (_TABLE_SIZE / 2)
    return scipy.fft.irfft(spectrum, _TABLE_SIZE)


def harmonic_count(ctx: Ctx, fundamental_hz: float) -> int:
    """How many harmonics of `fundamental_hz` (Hz) stay below NYQUIST_MARGIN x the sample rate,
    with 2 % headroom for the speed fluctuation."""
    return int(NYQUIST_MARGIN * ctx.sr / 1.02 / fundamental_hz)


def drawn_for(draw, count: int, draws: int | None) -> np.ndarray:
    """`count` values of ``draw(size)`` (a method of ctx.rng) from `draws` draws (default `count`),
    repeated cyclically beyond them: the random stream advances by `draws` whatever `count` is.
    A fault that changes a machine's harmonic count (its speed) draws for the count at full fault
    severity, so that the clip makes the same draws at every severity."""
    return np.resize(draw(count if draws is None else draws), count)


def harmonics(ctx: Ctx, index: np.ndarray, levels_db: np.ndarray, draws: int | None = None
              ) -> np.ndarray:
    """Harmonics k = 1..K at `levels_db` (dB, shape (K,)), random phases (`draws` of them, see
    `drawn_for`), at the phase `index`."""
    phases = drawn_for(lambda size: ctx.rng.uniform(0, 2 * np.pi, size), len(levels_db), draws)
    return np.take(harmonic_table(10 ** (np.asarray(levels_db) / 20), phases), index)


def sine(ctx: Ctx, index: np.ndarray, harmonic: int = 1) -> np.ndarray:
    """sin(2 pi harmonic x + random phase) at the phase `index`."""
    return np.take(_SINE_TABLE,
                   (index * harmonic + int(ctx.rng.integers(_TABLE_SIZE))) & _TABLE_MASK)


def ring_kernel(sr: int, modes: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """Impulse response of parallel two-pole resonators, cut at -60 dB; float32 (samples,).

    Modes are (frequency Hz, bandwidth Hz, gain); each rings as gain * r^k sin(w (k + 1)).
    """
    slowest = min(bandwidth for _, bandwidth, _ in modes)
    k = np.arange(int(np.ceil(6.91 * sr / (np.pi * slowest))))
    kernel = np.zeros(k.size)
    for freq, bandwidth, gain in modes:
        omega = 2 * np.pi * min(freq, NYQUIST_MARGIN * sr) / sr
        kernel += gain * np.exp(-np.pi * bandwidth / sr * k) * np.sin(omega * (k + 1))
    return kernel.astype(np.float32)


def resonate(ctx: Ctx, times_s: np.ndarray, amplitudes: np.ndarray | float,
              modes: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """Resonators (see `ring_kernel`) struck at `times_s` (s) with `amplitudes`."""
    positions = np.round(np.asarray(times_s, np.float64) * ctx.sr).astype(np.int64)
    amplitudes = np.broadcast_to(np.asarray(amplitudes, np.float32), positions.shape)
    inside = (positions >= 0) & (positions < ctx.n)
    positions, amplitudes = positions[inside], amplitudes[inside]
    if positions.size <= _SPARSE_EVENTS:
        kernel = ring_kernel(ctx.sr, modes)
        out = np.zeros(ctx.n + kernel.size, np.float32)
        for position, amplitude in zip(positions, amplitudes):
            out[position:position + kernel.size] += amplitude * kernel
        return out[:ctx.n]
    strikes = np.zeros(ctx.n, np.float32)
    np.add.at(strikes, positions, amplitudes)
    out = np.zeros(ctx.n, np.float32)
    for freq, bandwidth, gain in modes:
        radius = np.exp(-np.pi * bandwidth / ctx.sr)
        omega = 2 * np.pi * min(freq, NYQUIST_MARGIN * ctx.sr) / ctx.sr
        b = np.array([gain * np.sin(omega)], np.float32)
        a = np.array([1.0, -2 * radius * np.cos(omega), radius * radius], np.float32)
        out += scipy.signal.lfilter(b, a, strikes)
    return out


def gate(ctx: Ctx, starts_s: np.ndarray, stops_s: np.ndarray, smooth_s: float) -> np.ndarray:
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


def periodic_times(ctx: Ctx, rate_hz: float, jitter: float) -> np.ndarray:
    """Event times (s) at `rate_hz` with relative interval jitter from a random phase."""
    count = int(np.ceil(ctx.duration * rate_hz)) + 2
    intervals = (1.0 + jitter * ctx.rng.standard_normal(count)) / rate_hz
    return ctx.rng.uniform(0, 1 / rate_hz) + np.concatenate([[0.0], np.cumsum(intervals)[:-1]])


def biquad_peak(freq: float, gain_db: float, q: float, sr: int) -> np.ndarray:
    """Peaking-EQ biquad (audio-EQ-cookbook form) as one second-order section, shape (6,)."""
    amp = 10 ** (gain_db / 40)
    omega = 2 * np.pi * freq / sr
    alpha = np.sin(omega) / (2 * q)
    cos = np.cos(omega)
    b = np.array([1 + alpha * amp, -2 * cos, 1 - alpha * amp])
    a = np.array([1 + alpha / amp, -2 * cos, 1 - alpha / amp])
    return np.concatenate([b / a[0], a / a[0]])


def biquad_high_shelf(freq: float, gain_db: float, sr: int) -> np.ndarray:
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
