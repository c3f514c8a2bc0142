"""Tests of the classifier proxy of docs/synthetic_difficulty.py on constructed log-Mel features
whose answer is known: anomalies moved towards another section lower the classifier's confidence
(AUC near 1), anomalies moved away from every other section raise it (AUC below 0.5)."""

import dataclasses
import importlib.util
import pathlib

import numpy as np
import pytest

from mdg.data import synthetic

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
        count, values = difficulty.real_dynamics(root, machine)
        assert count == 1 and np.all(np.isfinite(values[:2])) and np.all(values[:2] > 0), machine
        assert np.isnan(values[2]), "one clip makes no pair"
    count, values = difficulty.real_dynamics(root, "bearing")
    assert count == 0 and np.all(np.isnan(values))


def test_pair_difference_of_clips_offset_by_known_levels():
    # Clip means 0, 3 and 9 dB in every band: pair differences 3, 9 and 6 dB, mean 6 dB.
    clips = [np.full((10, 128), level) for level in (0.0, 3.0, 9.0)]
    assert difficulty.pair_difference(clips) == pytest.approx(6.0)
    assert np.isnan(difficulty.pair_difference(clips[:1]))
