"""Tests of mdg.data.features against librosa (the DCASE baselines' feature code)."""
import sys
import warnings

import jax.numpy as jnp
import librosa
import numpy as np
import pytest
import soundfile

from mdg.data import features

TOLERANCE_DB = 1e-3


def librosa_log_mel(waveform: np.ndarray, sample_rate=16000, n_fft=1024, hop_length=512, n_mels=128,
                    power=2.0, fmin=0.0, fmax=None) -> np.ndarray:
    """The DCASE baselines' features, float32 (frames, n_mels) dB, as our layout."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # librosa warns on clips shorter than n_fft
        mel = librosa.feature.melspectrogram(y=waveform, sr=sample_rate, n_fft=n_fft, hop_length=hop_length,
                                             n_mels=n_mels, power=power, fmin=fmin, fmax=fmax)
    return (20.0 / power * np.log10(np.maximum(mel, sys.float_info.epsilon))).T


@pytest.fixture(scope="module")
def real_clips(real_dataset):
    """Every real clip: (path, float32 waveform) in file order; of several lengths."""
    paths = sorted(real_dataset.root.glob("dev_data/*/*/*.wav"))
    assert len(paths) == real_dataset.num_clips
    return [(path, soundfile.read(path, dtype="float32")[0]) for path in paths]


@pytest.mark.parametrize("settings", [
    {},
    {"n_mels": 64},
    {"fmin": 50.0, "fmax": 7000.0},
    {"sample_rate": 22050, "n_fft": 2048},
    {"n_fft": 512, "n_mels": 40},
])
def test_filterbank_matches_librosa(settings):
    reference = librosa.filters.mel(sr=settings.get("sample_rate", 16000), n_fft=settings.get("n_fft", 1024),
                                    n_mels=settings.get("n_mels", 128), fmin=settings.get("fmin", 0.0),
                                    fmax=settings.get("fmax"), dtype=np.float64).T
    ours = features.mel_filterbank(**settings, dtype=np.float64)
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=0)
    default = features.mel_filterbank(**settings)
    assert default.dtype == np.float32
    np.testing.assert_array_equal(default, reference.astype(np.float32))


def test_filterbank_rejects_empty_bands_and_bad_ranges():
    with pytest.raises(ValueError, match="contain no FFT bin"):
        features.mel_filterbank(n_fft=128, n_mels=128)
    with pytest.raises(ValueError, match="fmin < fmax"):
        features.mel_filterbank(fmin=4000.0, fmax=2000.0)
    with pytest.raises(ValueError, match="sample_rate / 2"):
        features.mel_filterbank(fmax=9000.0)


def test_real_clips_match_librosa_batched(real_clips):
    lengths = sorted({len(waveform) for _, waveform in real_clips})
    assert len(lengths) >= 2 and 192000 in lengths and 160000 in lengths  # 12 s and 10 s clips
    for length in lengths:
        group = [waveform for _, waveform in real_clips if len(waveform) == length]
        ours = np.asarray(features.log_mel(np.stack(group)))
        reference = np.stack([librosa_log_mel(waveform) for waveform in group])
        assert ours.shape == reference.shape == (len(group), features.num_frames(length), 128)
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, reference, rtol=0, atol=TOLERANCE_DB)


def test_stream_of_mixed_lengths_matches_librosa(real_clips):
    # Batches of 3 mixing clips of several lengths (the shorter ones zero-padded), last batch partial.
    results = list(features.log_mel_stream(real_clips, batch_size=3))
    assert [path for path, _ in results] == [path for path, _ in real_clips]
    for (_, waveform), (_, ours) in zip(real_clips, results):
        np.testing.assert_allclose(ours, librosa_log_mel(waveform), rtol=0, atol=TOLERANCE_DB)


@pytest.mark.parametrize("settings", [
    {"n_mels": 64},
    {"hop_length": 256},
    {"fmax": 8000.0},
    {"fmin": 50.0, "fmax": 7000.0},
    {"power": 1.0},
    {"hop_length": 300},  # not a divisor of n_fft: frames built from 4 views, cut to n_fft
    {"sample_rate": 16000, "n_fft": 512, "hop_length": 160, "n_mels": 40},
])
def test_other_settings_match_librosa(real_clips, settings):
    waveforms = np.stack([real_clips[0][1][:32000], real_clips[-1][1][:32000]])  # 2 s of two clips
    ours = np.asarray(features.log_mel(waveforms, **settings))
    reference = np.stack([librosa_log_mel(waveform, **settings) for waveform in waveforms])
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=0, atol=TOLERANCE_DB)


@pytest.mark.parametrize("num_samples", [1, 511, 512, 513, 1023, 16001])
def test_odd_lengths_frames_and_values(num_samples):
    waveforms = np.random.default_rng(num_samples).uniform(-0.5, 0.5, (2, num_samples)).astype(np.float32)
    ours = np.asarray(features.log_mel(jnp.asarray(waveforms)))  # jax input
    assert features.num_frames(num_samples) == 1 + num_samples // 512
    assert ours.shape == (2, features.num_frames(num_samples), 128)
    reference = np.stack([librosa_log_mel(waveform) for waveform in waveforms])
    np.testing.assert_allclose(ours, reference, rtol=0, atol=TOLERANCE_DB)


def test_silence_gives_the_floor():
    ours = np.asarray(features.log_mel(np.zeros((3, 4000), np.float32)))
    assert ours.shape == (3, 8, 128)
    np.testing.assert_allclose(ours, 10 * np.log10(sys.float_info.epsilon), rtol=1e-6)


@pytest.mark.parametrize("shape", [(16000,), (1, 2, 16000), (0, 16000), (2, 0)])
def test_bad_shapes_raise(shape):
    with pytest.raises(ValueError, match="log_mel needs"):
        features.log_mel(np.zeros(shape, np.float32))


def test_bad_dtype_and_settings_raise():
    with pytest.raises(ValueError, match="float waveforms"):
        features.log_mel(np.zeros((1, 16000), np.int16))
    with pytest.raises(ValueError, match="n_fft must be positive and even"):
        features.log_mel(np.zeros((1, 16000), np.float32), n_fft=1023)
    with pytest.raises(ValueError, match="hop_length and power must be positive"):
        features.log_mel(np.zeros((1, 16000), np.float32), hop_length=0)


def test_stream_rejects_bad_waveforms_naming_the_key():
    clips = [("a.wav", np.zeros(1000, np.float32)), ("b.wav", np.zeros((2, 1000), np.float32))]
    with pytest.raises(ValueError, match="b.wav: need a non-empty 1-D waveform"):
        list(features.log_mel_stream(clips, batch_size=4))
    with pytest.raises(ValueError, match="b.wav: need a float waveform"):
        list(features.log_mel_stream([clips[0], ("b.wav", np.zeros(1000, np.int16))]))
    with pytest.raises(ValueError, match="batch_size must be positive"):
        list(features.log_mel_stream(clips, batch_size=0))
