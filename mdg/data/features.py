"""Log-Mel spectrograms in JAX: batched, jit-compiled, numerically compatible with librosa.

`log_mel` reproduces the DCASE Task 2 baselines' features,

    librosa.feature.melspectrogram(y, sr, n_fft, hop_length, n_mels, power)    # center=True, zero pad
    20 / power * log10(max(mel, sys.float_info.epsilon))                        # dB (10 log10 for power 2)

for a whole batch of waveforms in one XLA computation, to within 1e-3 dB in float32 on real clips.
`mel_filterbank` is our own Slaney mel filter bank (librosa's default: `htk=False`, `norm="slaney"`),
so librosa is needed only by the tests and benchmarks. `log_mel_stream` feeds a stream of clips
through `log_mel` in fixed-shape batches (one compilation) and overlaps reading with computing.

How the computation is laid out, and why:
  * Framing reshapes the padded signal into hop-sized blocks and stacks `ceil(n_fft / hop)` shifted
    views of them; with n_fft = 2 * hop that is two half-overlapping views. Reshapes and slices copy
    samples exactly, need no index array, and on a CPU XLA fuses them with the window into one pass
    (as fast as a gather there; framing by a strided identity convolution measured ~5x slower).
  * The spectrum is an `rfft` of the windowed frames: a DFT matmul would take two orders of
    magnitude more flops.
  * The power spectrum is `re**2 + im**2` (power 2), otherwise `|X| ** power`. librosa windows
    and transforms in float64 (rounding only the spectrum to complex64); our float32 FFT still
    stays within 1e-4 dB of it on the 28 real DCASE 2023 clips, the quietest bands included.
  * The mel projection is a float32 matmul at `Precision.HIGHEST`: the default precision rounds
    its inputs to bfloat16 on TPU (errors up to ~3e-2 dB on a real clip) or TF32 on recent NVIDIA
    GPUs (~3e-3 dB). It skips the filter bank's zeros (`_banded_matmul`), a quarter of the dense
    flops.
"""

from __future__ import annotations

import functools
import itertools
import math
import sys
from typing import Iterable, Iterator, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import DTypeLike
import scipy.signal

# The DCASE baselines' floor before the logarithm (float64 machine epsilon, ~2.2e-16).
LOG_FLOOR = sys.float_info.epsilon

# Slaney's mel scale (Auditory Toolbox; librosa's htk=False): linear below 1 kHz, logarithmic above.
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0  # log(Hz ratio) per mel above the break

Key = TypeVar("Key")


def hz_to_mel(frequencies_hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: float64 frequencies in Hz -> float64 mels (same shape)."""
    frequencies_hz = np.asarray(frequencies_hz, np.float64)
    linear = frequencies_hz / _SLANEY_HZ_PER_MEL
    above = frequencies_hz > _SLANEY_BREAK_HZ
    ratio = np.where(above, frequencies_hz, _SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ
    return np.where(above, _SLANEY_BREAK_MEL + np.log(ratio) / _SLANEY_LOG_STEP, linear)


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of `hz_to_mel`: float64 mels -> float64 frequencies in Hz (same shape)."""
    mels = np.asarray(mels, np.float64)
    linear = mels * _SLANEY_HZ_PER_MEL
    above = mels > _SLANEY_BREAK_MEL
    return np.where(above, _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (mels - _SLANEY_BREAK_MEL)), linear)


def _check_filterbank_settings(sample_rate: int, n_fft: int, n_mels: int, fmin: float,
                               fmax: float | None) -> float:
    """Validates the filter bank settings; returns fmax with None resolved to the Nyquist frequency."""
    problems = []
    if sample_rate <= 0:
        problems.append(f"sample_rate must be positive, got {sample_rate}")
    if n_fft <= 0 or n_fft % 2:
        problems.append(f"n_fft must be positive and even, got {n_fft}")
    if n_mels <= 0:
        problems.append(f"n_mels must be positive, got {n_mels}")
    nyquist = sample_rate / 2
    fmax = nyquist if fmax is None else fmax
    if not 0 <= fmin < fmax <= nyquist:
        problems.append(f"need 0 <= fmin < fmax <= sample_rate / 2 = {nyquist} Hz, got fmin={fmin}, "
                        f"fmax={fmax}")
    if problems:
        raise ValueError("bad log-Mel settings: " + "; ".join(problems))
    return fmax


def mel_filterbank(sample_rate: int = 16000, n_fft: int = 1024, n_mels: int = 128, fmin: float = 0.0,
                   fmax: float | None = None, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Triangular filters on the Slaney mel scale with Slaney area normalisation.

    Equal to `librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)`
    (htk=False, norm="slaney"), transposed so that `power_spectrum @ filterbank` gives mel energies.
    The filter edges are `n_mels + 2` points equally spaced in mels from fmin to fmax; each filter
    is scaled by 2 / (its width in Hz), so all filters have the same area.

    Args:
      sample_rate: Hz.
      n_fft: FFT size (even); the bank covers its `n_fft // 2 + 1` frequency bins.
      n_mels: number of mel bands.
      fmin, fmax: lowest and highest edge in Hz; fmax None means sample_rate / 2.
      dtype: of the result.
    Returns:
      (n_fft // 2 + 1, n_mels) of `dtype`; computed in float64, then rounded.
    Raises:
      ValueError: bad settings, or a mel band without any FFT bin (n_mels too large for n_fft).
    """
    fmax = _check_filterbank_settings(sample_rate, n_fft, n_mels, fmin, fmax)
    bin_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)  # (bins,)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, center, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz - lower) / (center - lower)
    falling = (upper - bin_hz) / (upper - center)
    triangles = np.maximum(0.0, np.minimum(rising, falling))  # (n_mels, bins)
    weights = triangles * (2.0 / (upper - lower))
    empty = np.flatnonzero(~np.any(weights > 0, axis=1))
    if empty.size:
        raise ValueError(f"mel bands {empty.tolist()} contain no FFT bin: n_mels={n_mels} is too many for "
                         f"n_fft={n_fft} between {fmin} and {fmax} Hz")
    return weights.T.astype(dtype)


def num_frames(num_samples: int, hop_length: int = 512) -> int:
    """Frames of a centred STFT (`center=True`, padded by n_fft // 2 on both sides, n_fft even)."""
    return 1 + num_samples // hop_length


def _frames(waveforms: jax.Array, n_fft: int, hop_length: int) -> jax.Array:
    """float32 (batch, samples) -> centred, zero-padded frames float32 (batch, frames, n_fft)."""
    batch, num_samples = waveforms.shape
    frames = num_frames(num_samples, hop_length)
    # Frame t is blocks t .. t + views - 1 of the padded signal cut into hops, truncated to n_fft.
    views = -(-n_fft // hop_length)
    padded_length = (frames + views - 1) * hop_length
    # lax.pad takes a negative right padding (possible when hop_length > n_fft / 2) as a cut.
    padded = jax.lax.pad(waveforms, jnp.zeros((), waveforms.dtype),
                         ((0, 0, 0), (n_fft // 2, padded_length - num_samples - n_fft // 2, 0)))
    blocks = padded.reshape(batch, frames + views - 1, hop_length)
    stacked = jnp.stack([blocks[:, view:view + frames] for view in range(views)], axis=2)
    return stacked.reshape(batch, frames, views * hop_length)[..., :n_fft]


def _banded_matmul(power_spectrum: jax.Array, filterbank: np.ndarray, groups: int = 4) -> jax.Array:
    """`power_spectrum @ filterbank`, skipping the filter bank's zeros.

    A mel band is nonzero on a narrow range of bins only, so the bands are split into a few groups
    and each group is multiplied by the range of bins holding its nonzeros. The sums are the same
    (the skipped products are exact zeros); for 128 bands of a 1024-point FFT 4 groups do a quarter
    of the dense flops, and measured fastest on a CPU.

    Args:
      power_spectrum: float32 (..., bins).
      filterbank: float32 (bins, bands); correct for any bank, fast for banded ones.
      groups: number of band groups.
    Returns:
      float32 (..., bands).
    """
    nonzero = filterbank != 0
    first_bin = nonzero.argmax(axis=0)
    end_bin = nonzero.shape[0] - nonzero[::-1].argmax(axis=0)
    products = []
    for bands in np.array_split(np.arange(filterbank.shape[1]), min(groups, filterbank.shape[1])):
        bins = slice(first_bin[bands].min(), end_bin[bands].max())
        products.append(jnp.matmul(power_spectrum[..., bins], filterbank[bins, bands[0]:bands[-1] + 1],
                                   precision=jax.lax.Precision.HIGHEST))
    return jnp.concatenate(products, axis=-1)


@functools.partial(jax.jit, static_argnames=("sample_rate", "n_fft", "hop_length", "n_mels", "power",
                                             "fmin", "fmax"))
def _log_mel(waveforms: jax.Array, sample_rate: int, n_fft: int, hop_length: int, n_mels: int,
             power: float, fmin: float, fmax: float) -> jax.Array:
    window = scipy.signal.get_window("hann", n_fft, fftbins=True).astype(np.float32)  # periodic Hann
    spectrum = jnp.fft.rfft(_frames(waveforms, n_fft, hop_length) * window, axis=-1)
    if power == 2.0:
        power_spectrum = jnp.square(spectrum.real) + jnp.square(spectrum.imag)
    else:
        power_spectrum = jnp.abs(spectrum) ** power
    mel = _banded_matmul(power_spectrum, mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax))
    return (20.0 / power) * jnp.log10(jnp.maximum(mel, np.float32(LOG_FLOOR)))


def log_mel(waveforms: jax.typing.ArrayLike, sample_rate: int = 16000, n_fft: int = 1024,
            hop_length: int = 512, n_mels: int = 128, power: float = 2.0, fmin: float = 0.0,
            fmax: float | None = None) -> jax.Array:
    """Log-Mel spectrograms of a batch of waveforms, as the DCASE Task 2 baselines compute them.

    Per waveform: periodic Hann window of n_fft samples, frames every hop_length samples, centred
    (zero padding of n_fft // 2 on both sides, librosa >= 0.10's default), |STFT| ** power,
    projected on `mel_filterbank`, then 20 / power * log10(max(mel, LOG_FLOOR)) -- dB, i.e.
    10 log10 for the power spectrum. Jit-compiled once per input shape and settings.

    Args:
      waveforms: float (batch, samples), numpy or jax; computed in float32. Waveforms of different
        lengths may be zero-padded to a common length: the first `num_frames(length, hop_length)`
        frames of each do not change.
      sample_rate: Hz.
      n_fft: FFT and window size in samples (even).
      hop_length: samples between frames.
      n_mels: mel bands.
      power: exponent of the magnitude spectrum (2: power, 1: magnitude).
      fmin, fmax: mel filter bank range in Hz; fmax None means sample_rate / 2.
    Returns:
      float32 (batch, num_frames(samples, hop_length), n_mels), dB.
    Raises:
      ValueError: waveforms not 2-D, empty or not floating point, or bad settings.
    """
    waveforms = jnp.asarray(waveforms)
    shape, dtype = waveforms.shape, waveforms.dtype
    if len(shape) != 2:
        raise ValueError(f"log_mel needs waveforms of shape (batch, samples), got shape {shape}")
    if 0 in shape:
        raise ValueError(f"log_mel needs at least one waveform of at least one sample, got shape {shape}")
    if not np.issubdtype(dtype, np.floating):
        # Integer PCM would silently come out ~90 dB too loud; make the caller scale it.
        raise ValueError(f"log_mel needs float waveforms (scaled to [-1, 1]), got dtype {dtype}")
    if hop_length <= 0 or not power > 0:
        raise ValueError(f"bad log-Mel settings: hop_length and power must be positive, got "
                         f"hop_length={hop_length}, power={power}")
    fmax = _check_filterbank_settings(sample_rate, n_fft, n_mels, fmin, fmax)
    return _log_mel(waveforms.astype(jnp.float32), sample_rate=int(sample_rate), n_fft=int(n_fft),
                    hop_length=int(hop_length), n_mels=int(n_mels), power=float(power),
                    fmin=float(fmin), fmax=float(fmax))


def log_mel_stream(keyed_waveforms: Iterable[tuple[Key, np.ndarray]], batch_size: int = 8,
                   **feature_kwargs) -> Iterator[tuple[Key, np.ndarray]]:
    """`log_mel` of a stream of clips, in fixed-shape batches, reading ahead while XLA computes.

    Clips are grouped into batches of `batch_size` rows (the last one padded with silent rows)
    and zero-padded to the longest clip seen so far, so `log_mel` compiles once per new longest
    length (once for clips of equal length); zero padding leaves each clip's own frames unchanged.
    A batch is dispatched asynchronously and the next one is read before its result is fetched,
    so reading and decoding (the iterator's work) overlap the computation.

    Args:
      keyed_waveforms: (key, waveform) pairs; waveform float (samples,); the key is any value
        passed through (a path, a clip record).
      batch_size: clips per `log_mel` call. On a 2-core CPU 4 to 8 ten-second clips were
        fastest; larger batches spill the frames and spectra out of the caches.
      **feature_kwargs: settings of `log_mel` (sample_rate, n_fft, hop_length, ...).
    Yields:
      (key, features) in input order; features float32 numpy (num_frames(samples), n_mels), dB.
    Raises:
      ValueError: a waveform is not 1-D, empty or not floating point (the message gives its key),
        or bad settings.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    hop_length = feature_kwargs.get("hop_length", 512)
    iterator = iter(keyed_waveforms)
    padded_length = 0
    in_flight = None  # (keys, lengths, features being computed) of the previous batch
    while chunk := list(itertools.islice(iterator, batch_size)):
        chunk = [(key, np.asarray(waveform)) for key, waveform in chunk]
        for key, waveform in chunk:
            if waveform.ndim != 1 or waveform.size == 0:
                raise ValueError(f"{key}: need a non-empty 1-D waveform, got shape {waveform.shape}")
            if not np.issubdtype(waveform.dtype, np.floating):
                raise ValueError(f"{key}: need a float waveform (scaled to [-1, 1]), got dtype "
                                 f"{waveform.dtype}")
        lengths = [len(waveform) for _, waveform in chunk]
        padded_length = max(padded_length, *lengths)
        batch = np.zeros((batch_size, padded_length), np.float32)
        for row, (_, waveform) in enumerate(chunk):
            batch[row, :len(waveform)] = waveform
        features = log_mel(batch, **feature_kwargs)
        if in_flight is not None:
            yield from _unbatch(*in_flight, hop_length)
        in_flight = ([key for key, _ in chunk], lengths, features)
    if in_flight is not None:
        yield from _unbatch(*in_flight, hop_length)


def _unbatch(keys: list[Key], lengths: list[int], features: jax.Array,
             hop_length: int) -> Iterator[tuple[Key, np.ndarray]]:
    """Splits a batch result into (key, features of the clip's own frames) pairs."""
    features = np.asarray(features)
    for row, (key, length) in enumerate(zip(keys, lengths)):
        yield key, features[row, :num_frames(length, hop_length)]
