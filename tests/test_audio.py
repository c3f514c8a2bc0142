"""Tests for mdg.data.audio: real DCASE 2023 clips, generated bad files, length policy."""
import numpy as np
import pytest
import scipy.io.wavfile
import soundfile

from mdg.data import audio, layout
from mdg.data.audio import AudioError


def _real_clips(real_dataset):
    root = real_dataset.root / "dev_data"
    return [clip for machine in layout.list_machine_types(root) for split in ("train", "test")
            for clip in layout.scan_split(root, machine, split)]


def _reference(path):
    """Independent reader: scipy int16 PCM scaled by 1/32768 in float64."""
    rate, data = scipy.io.wavfile.read(path)
    assert rate == 16000 and data.dtype == np.int16
    return data.astype(np.float64) / 32768.0


def test_real_clips_match_an_independent_reader(real_dataset):
    clips = _real_clips(real_dataset)
    assert len(clips) == real_dataset.num_clips
    read = list(audio.read_clips(clips))
    assert [clip for clip, _ in read] == clips
    for clip, waveform in read:
        assert waveform.dtype == np.float32 and waveform.ndim == 1
        assert waveform.shape == (real_dataset.clip_lengths[clip.machine],), clip.path
        np.testing.assert_array_equal(waveform.astype(np.float64), _reference(clip.path))
        assert np.abs(waveform).max() <= 1.0 and np.abs(waveform).max() > 0.0


def test_real_clip_lengths_from_headers(real_dataset):
    clips = _real_clips(real_dataset)
    for machine, length in real_dataset.clip_lengths.items():
        machine_clips = [clip for clip in clips if clip.machine == machine]
        assert audio.clip_num_samples(machine_clips, 16000) == length
    with pytest.raises(ValueError, match="one machine type"):
        audio.clip_num_samples(clips, 16000)


def test_real_clip_wrong_expected_length_and_rate(real_dataset):
    toy_car = [clip for clip in _real_clips(real_dataset) if clip.machine == "ToyCar"]
    with pytest.raises(AudioError, match=r"192000 samples, expected 160000 \(num_samples"):
        list(audio.read_clips(toy_car, num_samples=160000))
    with pytest.raises(AudioError, match="sample rate 16000 Hz, expected 44100 Hz"):
        audio.read_wav(toy_car[0].path, sample_rate=44100)


# ---------------------------------------------------------------- generated files


def _tone(num_samples, rate=16000, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-0.9, 0.9, num_samples) * 32767).astype(np.int16)


def _write_wav(path, data, rate=16000, subtype="PCM_16"):
    soundfile.write(path, data, rate, subtype=subtype)
    return str(path)


def _clip(path, machine="fan", split="test", index=0):
    return layout.Clip(path=str(path), machine=machine, section=0, domain="source", split=split,
                       label=0, index=index)


def test_read_wav_scaling_and_extremes(tmp_path):
    data = np.array([-32768, -16384, -1, 0, 1, 16384, 32767], dtype=np.int16)
    path = _write_wav(tmp_path / "a.wav", data)
    waveform = audio.read_wav(path)
    assert waveform.dtype == np.float32
    np.testing.assert_array_equal(waveform, data.astype(np.float64) / 32768.0)
    np.testing.assert_array_equal(waveform, _reference(path))


def _bad_files(tmp_path):
    files = {}
    files["corrupt"] = tmp_path / "corrupt.wav"
    files["corrupt"].write_bytes(np.random.default_rng(1).bytes(2000))
    files["zero_bytes"] = tmp_path / "zero_bytes.wav"
    files["zero_bytes"].write_bytes(b"")
    files["empty"] = _write_wav(tmp_path / "empty.wav", np.zeros(0, np.int16))
    files["stereo"] = _write_wav(tmp_path / "stereo.wav", np.stack([_tone(800)] * 2, axis=1))
    files["44k"] = _write_wav(tmp_path / "44k.wav", _tone(4410), rate=44100)
    files["loud_float"] = _write_wav(tmp_path / "loud_float.wav",
                                     np.array([0.5, 1.5, -0.2], np.float32), subtype="FLOAT")
    files["nan_float"] = _write_wav(tmp_path / "nan_float.wav",
                                    np.array([0.5, np.nan], np.float32), subtype="FLOAT")
    files["missing"] = tmp_path / "missing.wav"
    return {key: str(path) for key, path in files.items()}


@pytest.mark.parametrize("kind, problem", [
    ("corrupt", "unreadable or corrupt"),
    ("zero_bytes", "unreadable or corrupt"),
    ("empty", r"empty \(0 samples\)"),
    ("stereo", r"2 channels, expected 1 \(mono\)"),
    ("44k", "sample rate 44100 Hz, expected 16000 Hz"),
    ("loud_float", r"outside \[-1, 1\]"),
    ("nan_float", "not finite"),
    ("missing", "file missing"),
])
def test_read_wav_errors_name_file_and_problem(tmp_path, kind, problem):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(AudioError, match=problem) as error:
        audio.read_wav(path)
    assert path in str(error.value)


def test_float_wav_within_range_is_read(tmp_path):
    data = np.array([0.5, -1.0, 0.25, 1.0], np.float32)
    np.testing.assert_array_equal(
        audio.read_wav(_write_wav(tmp_path / "f.wav", data, subtype="FLOAT")), data)


def test_truncated_file_is_caught_by_length_check(tmp_path):
    good = _write_wav(tmp_path / "good.wav", _tone(1600))
    content = (tmp_path / "good.wav").read_bytes()
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(content[:len(content) - 1000])
    clips = [_clip(good, index=0), _clip(truncated, index=1)]
    with pytest.raises(AudioError, match=r"truncated\.wav: 1100 samples, expected 1600"):
        list(audio.read_clips(clips))


def test_length_policy_and_skip(tmp_path, caplog):
    paths = [_write_wav(tmp_path / f"fan_{i}.wav", _tone(n, seed=i))
             for i, n in enumerate([1600, 1600, 1200, 1600])]
    toy = [_write_wav(tmp_path / f"toy_{i}.wav", _tone(1920, seed=10 + i)) for i in range(2)]
    bad = _bad_files(tmp_path)
    clips = ([_clip(path, index=i) for i, path in enumerate(paths)]
             + [_clip(path, machine="ToyCar", index=i) for i, path in enumerate(toy)]
             + [_clip(bad["stereo"], index=9)])

    with pytest.raises(AudioError, match=r"fan_2\.wav: 1200 samples, expected 1600 \(the first "
                                         r"clip of machine type 'fan'\)"):
        list(audio.read_clips(clips))

    read = list(audio.read_clips(clips, on_error="skip"))
    assert [clip.path for clip, _ in read] == [paths[0], paths[1], paths[3]] + toy
    assert [waveform.shape[0] for _, waveform in read] == [1600] * 3 + [1920] * 2
    for clip, waveform in read:
        np.testing.assert_array_equal(waveform, _reference(clip.path))
    assert "fan_2.wav: 1200 samples" in caplog.text
    assert "stereo.wav: 2 channels" in caplog.text

    # num_samples applies to every clip; the first clip no longer sets the length.
    read = list(audio.read_clips(clips, num_samples=1200, on_error="skip"))
    assert [clip.path for clip, _ in read] == [paths[2]]


def test_first_readable_clip_sets_the_length(tmp_path):
    bad = _bad_files(tmp_path)
    short = _write_wav(tmp_path / "short.wav", _tone(800))
    long = _write_wav(tmp_path / "long.wav", _tone(1600))
    read = list(audio.read_clips([_clip(bad["corrupt"]), _clip(short), _clip(long)],
                                 on_error="skip"))
    assert [clip.path for clip, _ in read] == [short]


def test_read_clips_argument_errors():
    with pytest.raises(ValueError, match="on_error"):
        audio.read_clips([], on_error="ignore")
    with pytest.raises(ValueError, match="num_samples"):
        audio.read_clips([], num_samples=0)
    assert list(audio.read_clips([])) == []


def test_clip_num_samples_majority_and_bad_headers(tmp_path):
    bad = _bad_files(tmp_path)
    lengths = [1200, 1600, 1600, 1200, 1600]
    clips = [_clip(_write_wav(tmp_path / f"c{i}.wav", _tone(n)), index=i)
             for i, n in enumerate(lengths)]
    clips += [_clip(bad[kind]) for kind in ("corrupt", "stereo", "44k", "empty", "missing")]
    assert audio.clip_num_samples(clips, 16000) == 1600
    assert audio.clip_num_samples(clips[:2], 16000) == 1200  # tie: the first length seen
    with pytest.raises(AudioError, match="no clip of machine type 'fan' has a readable"):
        audio.clip_num_samples(clips[5:], 16000)
    with pytest.raises(AudioError, match="no clip has a readable"):
        audio.clip_num_samples([], 16000)
