"""Tests of mdg.data.tfds_builder: build, read back, reuse, rebuild, interruption, errors, no TensorFlow."""
import functools
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from mdg.data import audio, features, layout, tfds_builder

SAMPLE_RATE = 16000
NUM_SAMPLES = 4000  # 0.25 s keeps every build to a fraction of a second
FEATURES = {"n_fft": 256, "hop_length": 128, "n_mels": 16}
# Small batches and shards so a build has several shards and a zero-padded last batch.
LAYOUT = {"batch_size": 2, "clips_per_shard": 3}
TRAIN_NAMES = [
    "section_00_source_train_normal_0000_vel_1_loc_A.wav",
    "section_00_source_train_normal_0001_vel_2_loc_A.wav",
    "section_00_target_train_normal_0002_vel_3_loc_B.wav",
    "section_01_source_train_normal_0000_noAttribute.wav",
    "section_01_source_train_normal_0001_noAttribute.wav",
]
TEST_NAMES = [
    "section_00_source_test_anomaly_0000_vel_1_loc_A.wav",
    "section_00_target_test_normal_0001_vel_3_loc_B.wav",
    "section_01_source_test_normal_0000_noAttribute.wav",
]


def write_wav(path: pathlib.Path, seed: int) -> None:
    """Writes 16-bit PCM noise with a seed-dependent tone, so every clip's log-Mel differs."""
    rng = np.random.default_rng(seed)
    t = np.arange(NUM_SAMPLES) / SAMPLE_RATE
    waveform = 0.1 * rng.standard_normal(NUM_SAMPLES) + 0.5 * np.sin(2 * np.pi * (200 + 300 * seed) * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.clip(waveform, -1, 1), SAMPLE_RATE, subtype="PCM_16")


def write_tree(root: pathlib.Path, splits=("train", "test"), machine: str = "fan") -> pathlib.Path:
    names = {"train": TRAIN_NAMES, "test": TEST_NAMES}
    for split in splits:
        for seed, name in enumerate(names[split]):
            write_wav(root / machine / split / name, seed + 10 * (split == "test"))
    return root


def reference_log_mel(path: pathlib.Path) -> np.ndarray:
    """log-Mel of one WAV read by soundfile directly, computed alone (batch of one)."""
    waveform, rate = soundfile.read(path, dtype="float32")
    assert rate == SAMPLE_RATE
    return np.asarray(features.log_mel(waveform[None], sample_rate=SAMPLE_RATE, **FEATURES))[0]


def shard_mtimes(builder) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in pathlib.Path(builder.data_dir).iterdir()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(root, data_dir, builder) of the tree above, built once for the read-back tests."""
    base = tmp_path_factory.mktemp("built")
    root = write_tree(base / "wavs")
    builder = tfds_builder.prepare(root, "fan", base / "tfds", FEATURES, **LAYOUT)
    return root, base / "tfds", builder


@pytest.mark.parametrize("split", ["train", "test"])
def test_records_match_layout_and_direct_log_mel(built, split):
    root, _, builder = built
    clips = layout.scan_split(root, "fan", split)
    arrays = tfds_builder.load_split(builder, split)

    assert list(arrays["file_name"]) == sorted(c.file_name for c in clips)
    by_name = {c.file_name: c for c in clips}
    for row, name in enumerate(arrays["file_name"]):
        clip = by_name[name]
        assert arrays["machine"][row] == "fan"
        assert arrays["section"][row] == clip.section
        assert arrays["domain"][row] == {"source": 0, "target": 1}[clip.domain]
        assert arrays["label"][row] == clip.label
        assert arrays["index"][row] == clip.index
        assert arrays["attribute_names"][row] == tuple(n for n, _ in clip.attributes)
        assert arrays["attribute_values"][row] == tuple(v for _, v in clip.attributes)
        np.testing.assert_allclose(arrays["log_mel"][row], reference_log_mel(pathlib.Path(clip.path)),
                                   rtol=1e-5, atol=1e-3)
    frames = features.num_frames(NUM_SAMPLES, FEATURES["hop_length"])
    assert arrays["log_mel"].shape == (len(clips), frames, FEATURES["n_mels"])
    assert arrays["log_mel"].dtype == np.float32
    for name in tfds_builder.INT_FIELDS:
        assert arrays[name].dtype == np.int32
    assert builder.info.splits[split].num_shards == -(-len(clips) // LAYOUT["clips_per_shard"])


def test_anomaly_and_target_metadata_present(built):
    arrays = tfds_builder.load_split(built[2], "test")
    assert sorted(arrays["label"]) == [0, 0, 1]
    assert sorted(arrays["domain"]) == [0, 0, 1]
    assert arrays["attribute_names"][0] == ("vel", "loc")


def test_data_source_gives_python_values(built):
    builder = built[2]
    arrays = tfds_builder.load_split(builder, "train")
    source = tfds_builder.data_source(builder, "train")
    assert len(source) == len(TRAIN_NAMES)
    record = source[3]
    assert record["file_name"] == arrays["file_name"][3] and isinstance(record["file_name"], str)
    assert isinstance(record["attribute_values"], tuple)
    np.testing.assert_array_equal(record["log_mel"], arrays["log_mel"][3])
    picked = source.__getitems__([4, 0])
    assert [r["file_name"] for r in picked] == [arrays["file_name"][4], arrays["file_name"][0]]
    assert builder.info.metadata["features"] == tfds_builder.feature_settings(FEATURES)


def test_second_prepare_reuses_without_computing(built, monkeypatch):
    root, data_dir, builder = built
    before = shard_mtimes(builder)

    @functools.wraps(features.log_mel)
    def must_not_run(*args, **kwargs):
        raise AssertionError("log_mel called on a reuse")

    monkeypatch.setattr(features, "log_mel", must_not_run)
    again = tfds_builder.prepare(root, "fan", data_dir, dict(FEATURES), **LAYOUT)
    assert again.data_dir == builder.data_dir
    assert shard_mtimes(again) == before
    assert again.info.metadata["features"]["n_mels"] == FEATURES["n_mels"]
    # Settings spelled out with their defaults are the same settings.
    spelled_out = tfds_builder.prepare(root, "fan", data_dir, {**FEATURES, "power": 2.0}, **LAYOUT)
    assert spelled_out.data_dir == builder.data_dir


def test_changed_feature_settings_build_a_new_version(tmp_path):
    root = write_tree(tmp_path / "wavs")
    first = tfds_builder.prepare(root, "fan", tmp_path / "tfds", FEATURES, **LAYOUT)
    second = tfds_builder.prepare(root, "fan", tmp_path / "tfds", {**FEATURES, "n_mels": 8}, **LAYOUT)
    assert second.data_dir != first.data_dir
    assert first.is_prepared() and second.is_prepared()  # old builds are kept
    assert tfds_builder.load_split(second, "test")["log_mel"].shape[-1] == 8


def test_changed_file_builds_a_new_version(tmp_path):
    root = write_tree(tmp_path / "wavs")
    first = tfds_builder.prepare(root, "fan", tmp_path / "tfds", FEATURES, **LAYOUT)
    changed = root / "fan" / "train" / TRAIN_NAMES[2]
    old_mtime = changed.stat().st_mtime_ns
    write_wav(changed, seed=99)  # same size, other content
    os.utime(changed, ns=(old_mtime + 10**9, old_mtime + 10**9))  # coarse-clock file systems

    second = tfds_builder.prepare(root, "fan", tmp_path / "tfds", FEATURES, **LAYOUT)
    assert second.data_dir != first.data_dir
    stored = tfds_builder.load_split(second, "train")
    row = list(stored["file_name"]).index(TRAIN_NAMES[2])
    np.testing.assert_allclose(stored["log_mel"][row], reference_log_mel(changed), rtol=1e-5, atol=1e-3)
    old = tfds_builder.load_split(first, "train")["log_mel"][row]
    assert np.abs(old - stored["log_mel"][row]).max() > 1.0


def test_interrupted_build_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    root = write_tree(tmp_path / "wavs")
    data_dir = tmp_path / "tfds"
    real_log_mel = features.log_mel
    calls = []

    # Batches of 2 in shards of 3: calls 1-2 make the first train shard, which TFDS writes before
    # call 3 (the second shard) fails.
    @functools.wraps(real_log_mel)
    def fails_in_second_shard(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("interrupted")
        return real_log_mel(*args, **kwargs)

    monkeypatch.setattr(features, "log_mel", fails_in_second_shard)
    with pytest.raises(RuntimeError, match="interrupted"):
        tfds_builder.prepare(root, "fan", data_dir, FEATURES, **LAYOUT)
    leftovers = [p for p in data_dir.rglob("*") if p.name != "downloads" and "downloads" not in p.parts
                 and p.suffix != ".lock"]  # the build's lock file stays (see cache_lock)
    assert all(p.is_dir() for p in leftovers), leftovers  # no record files, no dataset_info.json
    assert not any("incomplete" in p.name or p.name == str(tfds_builder.MdgLogMel.VERSION) for p in leftovers), leftovers

    monkeypatch.setattr(features, "log_mel", real_log_mel)
    builder = tfds_builder.prepare(root, "fan", data_dir, FEATURES, **LAYOUT)
    assert builder.is_prepared()
    assert len(tfds_builder.load_split(builder, "train")["file_name"]) == len(TRAIN_NAMES)


def test_version_folder_without_completion_marker_is_rebuilt(tmp_path):
    root = write_tree(tmp_path / "wavs")
    builder = tfds_builder.prepare(root, "fan", tmp_path / "tfds", FEATURES, **LAYOUT)
    (pathlib.Path(builder.data_dir) / "dataset_info.json").unlink()
    rebuilt = tfds_builder.prepare(root, "fan", tmp_path / "tfds", FEATURES, **LAYOUT)
    assert rebuilt.data_dir == builder.data_dir and rebuilt.is_prepared()
    assert len(tfds_builder.load_split(rebuilt, "test")["file_name"]) == len(TEST_NAMES)


def test_bad_wav_error_names_the_file_and_skip_leaves_it_out(tmp_path):
    root = write_tree(tmp_path / "wavs")
    bad = root / "fan" / "test" / "section_00_source_test_normal_0005_vel_1_loc_A.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    with pytest.raises(audio.AudioError, match=bad.name):
        tfds_builder.prepare(root, "fan", tmp_path / "tfds", FEATURES, **LAYOUT)
    builder = tfds_builder.prepare(root, "fan", tmp_path / "tfds", FEATURES, on_error="skip", **LAYOUT)
    assert list(tfds_builder.load_split(builder, "test")["file_name"]) == sorted(TEST_NAMES)


def test_wrong_length_wav_error_names_the_file(tmp_path):
    root = write_tree(tmp_path / "wavs")
    short = root / "fan" / "train" / TRAIN_NAMES[1]
    soundfile.write(short, np.zeros(NUM_SAMPLES // 2), SAMPLE_RATE, subtype="PCM_16")
    with pytest.raises(audio.AudioError, match=short.name):
        tfds_builder.prepare(root, "fan", tmp_path / "tfds", FEATURES, **LAYOUT)


def test_unparsable_name_error_names_the_file_and_skip_leaves_it_out(tmp_path):
    root = write_tree(tmp_path / "wavs")
    odd = root / "fan" / "train" / "recording_0001.wav"
    write_wav(odd, seed=3)
    with pytest.raises(layout.LayoutError, match=odd.name):
        tfds_builder.prepare(root, "fan", tmp_path / "tfds", FEATURES, **LAYOUT)
    builder = tfds_builder.prepare(root, "fan", tmp_path / "tfds", FEATURES, on_error="skip", **LAYOUT)
    assert list(tfds_builder.load_split(builder, "train")["file_name"]) == sorted(TRAIN_NAMES)


def test_split_without_clips_is_omitted(tmp_path):
    root = write_tree(tmp_path / "wavs", splits=("train",))
    builder = tfds_builder.prepare(root, "fan", tmp_path / "tfds", FEATURES, **LAYOUT)
    assert list(builder.info.splits) == ["train"]
    with pytest.raises(KeyError, match="no split 'test'"):
        tfds_builder.data_source(builder, "test")
    with pytest.raises(layout.LayoutError, match="no clips"):
        tfds_builder.prepare(root, "valve", tmp_path / "tfds", FEATURES, **LAYOUT)


def test_unknown_feature_setting_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="n_mel"):
        tfds_builder.prepare(tmp_path, "fan", tmp_path / "tfds", {"n_mel": 64})


def test_real_dcase_clips(real_dataset, tmp_path):
    builder = tfds_builder.prepare(real_dataset.root / "dev_data", "ToyCar", tmp_path / "tfds")
    arrays = tfds_builder.load_split(builder, "test")
    test_folder = real_dataset.root / "dev_data" / "ToyCar" / "test"
    names = sorted(p.name for p in test_folder.glob("*.wav"))
    assert list(arrays["file_name"]) == names
    assert arrays["log_mel"].shape == (len(names), features.num_frames(12 * SAMPLE_RATE, 512), 128)
    assert arrays["attribute_names"][0] == ("car", "spd", "mic")
    waveform, _ = soundfile.read(test_folder / names[0], dtype="float32")
    expected = np.asarray(features.log_mel(waveform[None]))[0]
    np.testing.assert_allclose(arrays["log_mel"][0], expected, rtol=1e-5, atol=1e-3)


def test_no_tensorflow_import(built, tmp_path):
    root = built[0]
    script = f"""
import sys
from mdg.data import tfds_builder
builder = tfds_builder.prepare({str(root)!r}, "fan", {str(tmp_path / "tfds")!r}, {FEATURES!r})
tfds_builder.load_split(builder, "train")
tfds_builder.data_source(builder, "test")[0]
assert "tensorflow" not in sys.modules, [m for m in sys.modules if m.startswith("tensorflow.")][:5]
"""
    project_root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(project_root)}
    result = subprocess.run([sys.executable, "-c", script], cwd=project_root, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


# Golden log-Mel statistics (dB) of `_golden_input` with the default settings: mean, std and the
# means of 8 groups of 16 bands. Shards are keyed by FEATURES_VERSION, not by the feature code's
# source: a change of what log_mel computes must come with a version bump.
GOLDEN_FEATURES_VERSION = 1
GOLDEN_LOG_MEL_STATS = [-6.4446, 5.1202, -7.1779, -2.0211, -7.4756, -7.6328, -6.8289, -7.1374,
                        -6.7343, -6.5489]


def _golden_input() -> np.ndarray:
    """0.5 s at 16 kHz: white noise (std 0.1, seed 0) plus a 440 Hz sine of amplitude 0.3."""
    t = np.arange(8000) / 16000
    return (0.1 * np.random.default_rng(0).standard_normal(8000)
            + 0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_log_mel_matches_the_golden_of_this_features_version():
    mel = np.asarray(features.log_mel(_golden_input()[None]))[0].astype(np.float64)
    stats = [mel.mean(), mel.std()] + list(mel.reshape(mel.shape[0], 8, 16).mean(axis=(0, 2)))
    changed = tfds_builder.FEATURES_VERSION != GOLDEN_FEATURES_VERSION or not np.allclose(
        stats, GOLDEN_LOG_MEL_STATS, rtol=0, atol=2e-3)
    assert not changed, (
        f"the log-Mel features changed (stats {np.round(stats, 4).tolist()}): bump FEATURES_VERSION "
        "in mdg/data/tfds_builder.py and update GOLDEN_FEATURES_VERSION / GOLDEN_LOG_MEL_STATS in "
        "tests/test_tfds_builder.py")


def test_build_hash_follows_features_version_not_source(tmp_path, monkeypatch):
    """The manifest (hence the build's folder) holds FEATURES_VERSION and no digest of source files,
    so a comment edit reuses the shards and a version bump builds new ones."""
    root = write_tree(tmp_path / "wavs")
    clips = {split: sorted(layout.scan_split(root, "fan", split), key=lambda c: c.file_name)
             for split in tfds_builder.SPLITS}
    settings = tfds_builder.feature_settings(FEATURES)
    before = tfds_builder.manifest(root, "fan", clips, settings, "raise")
    assert before["features_version"] == tfds_builder.FEATURES_VERSION and "code" not in before
    monkeypatch.setattr(tfds_builder, "FEATURES_VERSION", tfds_builder.FEATURES_VERSION + 1)
    after = tfds_builder.manifest(root, "fan", clips, settings, "raise")
    assert tfds_builder.config_name("fan", after) != tfds_builder.config_name("fan", before)
