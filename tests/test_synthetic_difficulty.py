"""Tests of the classifier proxy of docs/synthetic_difficulty.py on constructed log-Mel features
whose answer is known: anomalies moved towards another section lower the classifier's confidence
(AUC near 1), anomalies moved away from every other section raise it (AUC below 0.5)."""

import dataclasses
import importlib.util
import pathlib

import numpy as np
import pytest
import soundfile

from mdg.data import synthetic

DEV_SLICE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "dcase2023_dev_slice"
_PATH = pathlib.Path(__file__).resolve().parents[1] / "docs" / "synthetic_difficulty.py"
_SPEC = importlib.util.spec_from_file_location("synthetic_difficulty", _PATH)
difficulty = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(difficulty)


@dataclasses.dataclass(frozen=True)
class FakeClip:
    attributes: tuple[tuple[str, str], ...]
    anomaly: str | None


def _groups(shift: str, seed: int = 0):
    """train/test dicts as `classifier_proxy` takes them: (frames, 128) log-Mel per clip, each
    section a mean spectrum; anomalies shifted `towards` section (s + 1) % 3 or `away` from the
    others; attribute values A, B (source) add their own offset, C (target, absent from training:
    the candidate rule) none."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, (3, 128))
    offsets = {"A": rng.normal(0, 0.5, 128), "B": rng.normal(0, 0.5, 128), "C": np.zeros(128)}
    kinds = synthetic.ANOMALY_KINDS["fan"]

    def clip(section, domain, label, i):
        centre = centres[section]
        if label == "anomaly":
            other = centres[(section + 1) % 3] if shift == "towards" else (
                centre + (centre - np.delete(centres, section, axis=0).mean(axis=0)))
            centre = centre + 0.6 * (other - centre)
        value = ("A" if i % 2 else "B") if domain == "source" else "C"
        frames = centre + offsets[value] + rng.normal(0, 1.0, (40, 128))
        return FakeClip((("x", value),), kinds[i % 3] if label == "anomaly" else None), frames

    train = {(s, d): [clip(s, d, "normal", i) for i in range(n)]
             for s in range(3) for d, n in (("source", 10), ("target", 2))}
    test = {(s, d, lab): [clip(s, d, lab, i) for i in range(12)]
            for s in range(3) for d in synthetic.DOMAINS for lab in synthetic.LABELS}
    return train, test


@pytest.mark.parametrize("shift, above_chance", [("towards", True), ("away", False)])
def test_classifier_proxy_direction(shift, above_chance):
    results = difficulty.classifier_proxy("fan", *_groups(shift))
    assert set(results) == {"section", "section_attribute"}
    for target, aucs in results.items():
        assert len(aucs) == 6 + 3 and np.all(np.isfinite(aucs)), target
        # section x attribute: the source cells, whose classes were seen in training
        mean = np.mean(aucs[:6] if target == "section" else aucs[0:6:2])
        assert (mean > 0.8) if above_chance else (mean < 0.3), (target, aucs)


def test_dynamics_of_a_clip_whose_frames_alternate_between_two_levels():
    # 50 frames at 0 dB and 50 at 20 dB in every band: frame energies 10 log10(128) and 20 dB above
    # it, so the spread p90 - p10 is 20 dB; each band's standard deviation over time is 10 dB.
    frames = np.repeat(np.array([0.0, 20.0]), 50)[:, None] * np.ones((1, 128))
    spread, band_std = difficulty.dynamics(frames)
    assert spread == pytest.approx(20.0) and band_std == pytest.approx(10.0)


def test_real_dynamics_of_the_projects_fixture():
    # The fixture's normal clips: fan (10 s) and valve (2 s); bearing has only an anomalous one.
    root = pathlib.Path(__file__).resolve().parent / "data" / "dcase2023" / "dev_data"
    for machine in ("fan", "valve"):
        count, values = difficulty.real_dynamics(difficulty.read_real_clips(root, machine))
        assert count == 1 and np.all(np.isfinite(values[:2])) and np.all(values[:2] > 0), machine
        assert np.isnan(values[2]), "one clip makes no pair"
        assert 0 < values[3] < 1, machine
    count, values = difficulty.real_dynamics(difficulty.read_real_clips(root, "bearing"))
    assert count == 0 and np.all(np.isnan(values))


def test_pair_difference_of_clips_offset_by_known_levels():
    # Clip means 0, 3 and 9 dB in every band: pair differences 3, 9 and 6 dB, mean 6 dB.
    clips = [np.full((10, 128), level) for level in (0.0, 3.0, 9.0)]
    assert difficulty.pair_difference(clips) == pytest.approx(6.0)
    assert np.isnan(difficulty.pair_difference(clips[:1]))


def test_fault_change_and_normal_spread_of_clips_at_known_levels():
    # Normal clip means 0 and 2 dB (mean 1 dB, each 1 dB from it); an anomalous clip at 1, 4, 1 and
    # -2 dB in the four quarters of the bands: changes 0, +3, 0, -3 dB, mean absolute change 1.5 dB.
    normals = [np.zeros((10, 128)), np.full((10, 128), 2.0)]
    anomalous = np.repeat(np.array([1.0, 4.0, 1.0, -2.0]), 32)[None, :] * np.ones((10, 1))
    np.testing.assert_allclose(difficulty.fault_change(anomalous, normals), [0.0, 3.0, 0.0, -3.0, 1.5])
    assert difficulty.normal_spread(normals) == pytest.approx(1.0)
    assert np.isnan(difficulty.normal_spread(normals[:1]))


def _write_wav(path, samples):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, 16000, subtype="PCM_16")


def test_real_fault_changes_of_a_clip_twice_as_loud_as_its_domains_normal(tmp_path):
    # The anomalous clip is the normal one at twice the amplitude: +6.02 dB in every Mel band. A
    # source anomaly has no source normal clip to compare with and is left out.
    noise = np.random.default_rng(0).normal(0, 0.05, 16000 * 2)
    valve = tmp_path / "valve"
    _write_wav(valve / "test" / "section_00_target_test_normal_0000_pat_03.wav", noise)
    _write_wav(valve / "test" / "section_00_target_test_anomaly_0000_pat_03.wav", 2 * noise)
    _write_wav(valve / "test" / "section_00_source_test_anomaly_0001_pat_00.wav", noise)
    (name, change, count, spread, basis), = difficulty.real_fault_changes(difficulty.read_real_clips(tmp_path, "valve"))
    assert name == "section_00_target_test_anomaly_0000_pat_03.wav" and count == 1 and np.isnan(spread)
    assert basis == "attributes"
    np.testing.assert_allclose(change, [20 * np.log10(2)] * 5, atol=0.01)
    # A normal clip of another pattern in the same domain is left out while one of the same pattern
    # is there, and used when it is the only one.
    _write_wav(valve / "train" / "section_00_target_train_normal_0000_pat_02.wav", 4 * noise)
    (_, change, count, _, basis), = difficulty.real_fault_changes(difficulty.read_real_clips(tmp_path, "valve"))
    assert count == 1 and basis == "attributes"
    np.testing.assert_allclose(change, [20 * np.log10(2)] * 5, atol=0.01)
    (valve / "test" / "section_00_target_test_normal_0000_pat_03.wav").unlink()
    (_, change, count, _, basis), = difficulty.real_fault_changes(difficulty.read_real_clips(tmp_path, "valve"))
    assert count == 1 and basis == "domain"
    np.testing.assert_allclose(change, [20 * np.log10(2 / 4)] * 4 + [20 * np.log10(4 / 2)], atol=0.01)


def test_real_fault_changes_names_an_unreadable_clip(tmp_path):
    bad = tmp_path / "valve" / "test" / "section_00_target_test_normal_0000_pat_03.wav"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"RIFF not a wav")
    with pytest.raises(SystemExit, match="section_00_target_test_normal_0000_pat_03.wav"):
        difficulty.real_fault_changes(difficulty.read_real_clips(tmp_path, "valve"))


def test_residual_share_of_rank_five_and_of_white_frames():
    # Every frame a multiple of one spectrum: the 5-frame vectors span 5 dimensions, which 8
    # components hold entirely. White frames spread over all 640: 8 components hold ~1/80 of them.
    rng = np.random.default_rng(0)
    shape = rng.normal(0, 1, 128)
    one_spectrum = [rng.normal(0, 3, (300, 1)) * shape for _ in range(3)]
    assert difficulty.residual_share(one_spectrum) == pytest.approx(0.0, abs=1e-9)
    assert difficulty.residual_share([rng.normal(0, 1, (300, 128)) for _ in range(3)]) > 0.9
    assert np.isnan(difficulty.residual_share([]))


def test_synthetic_valve_contamination_is_as_strong_as_the_real_one():
    # Generator version 6 calibrates the contaminated valve's leak to the real contaminated valve of
    # the DCASE 2023 slice (item 6): per quarter of the Mel bands and overall, the median synthetic
    # change from its section's normal clips is within 1.5 dB of the real clip's change from its
    # same-pattern normal (version 5's leak, 10 dB louder, was 4-6 dB above it in the upper half).
    root = DEV_SLICE / "dev_data"
    if not root.is_dir():
        pytest.skip(f"DCASE 2023 development slice not found at {root}: the real contaminated valve "
                    "is only there")
    (_, real, _, _, basis), = difficulty.real_fault_changes(difficulty.read_real_clips(root, "valve"))
    assert basis == "attributes"
    changes = []
    for section in range(3):
        for domain in synthetic.DOMAINS:
            normals = [difficulty.log_mel(synthetic.synthesize_clip("valve", section, domain, "test", "normal",
                                                                    i).pcm / 32768) for i in range(8)]
            for i in range(12):
                clip = synthetic.synthesize_clip("valve", section, domain, "test", "anomaly", i)
                if clip.anomaly == "contamination":
                    changes.append(difficulty.fault_change(difficulty.log_mel(clip.pcm / 32768), normals))
    np.testing.assert_allclose(np.median(changes, axis=0), real, atol=1.5)
