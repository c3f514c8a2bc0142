"""mdg.metrics against the DCASE evaluators' way: scikit-learn per section and domain, scipy.

The reference functions below re-implement the loops of ``dcase2023_task2_evaluator.py`` and
the 2023 baseline with one ``roc_auc_score`` call per section and figure, in float64.
"""
import warnings

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

from mdg import metrics

TOLERANCE = 1e-6
MACHINES = ("fan", "gearbox", "valve")


# ---------------------------------------------------------------------------------------------
# References: the evaluators' loops
# ---------------------------------------------------------------------------------------------

def _sklearn_auc(y, s, max_fpr=None):
    """roc_auc_score in float64; NaN for a single class (newer scikit-learn; older raises)."""
    if y.all() or not y.any():
        return np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return roc_auc_score(y.astype(int), s.astype(np.float64), max_fpr=max_fpr)


def evaluator_section_metrics(scores, group, is_target, is_anomaly, num_groups, max_fpr=0.1):
    """One section at a time, as the evaluator (AUCs, pAUC) and the 2023 baseline (pAUC s/t)."""
    rows = []
    for g in range(num_groups):
        sel = group == g
        s, d, y = scores[sel], is_target[sel], is_anomaly[sel]
        rows.append([
            _sklearn_auc(y[~d | y], s[~d | y]),        # (domain == source) | (label != 0)
            _sklearn_auc(y[d | y], s[d | y]),          # (domain == target) | (label != 0)
            _sklearn_auc(y, s, max_fpr),               # all clips of the section
            _sklearn_auc(y[~d], s[~d], max_fpr),       # source clips only
            _sklearn_auc(y[d], s[d], max_fpr),         # target clips only
        ])
    return metrics.SectionMetrics(*np.array(rows, dtype=np.float64).T)


def evaluator_official_score(reference: metrics.SectionMetrics) -> float:
    all_perf = np.concatenate([reference.auc_source, reference.auc_target, reference.pauc])
    return float(scipy.stats.hmean(np.maximum(all_perf, np.finfo(float).eps), axis=None))


def evaluator_jackknife(y, s, fn):
    """The evaluator's jackknife_estimate: leave each clip out, N scikit-learn calls."""
    n = len(y)
    theta = fn(y, s)
    theta_i = np.array([fn(np.delete(y, i), np.delete(s, i)) for i in range(n)])
    estimate = np.mean(n * theta - (n - 1) * theta_i)
    sigma = np.sqrt(np.sum((theta_i - theta_i.mean())**2) / (n * (n - 1)))
    return estimate, abs(scipy.stats.t.ppf(0.025, n - 1)) * sigma


# ---------------------------------------------------------------------------------------------
# A zoo of groups, shuffled together so the groups interleave in the input
# ---------------------------------------------------------------------------------------------

HAND = 0          # hand-computed figures below
CONSTANT = 1      # all scores equal
SINGLE = 2        # one anomalous clip
UNEQUAL = 3       # 90 source clips, 10 target clips
SOURCE_ONLY = 4   # no target-domain clips
NORMAL_ONLY = 5   # no anomalous clip
VERTEX = 6        # 50 normals: max_fpr * 50 = 5 is a ROC vertex
SIGNED_ZERO = 7   # -0.0 and 0.0 must tie
INVERTED = 8      # every anomaly scores lower: AUC 0
EMPTY = 9         # no clips at all
FIRST_RANDOM = 10


def _zoo(seed=0, num_random=60):
    rng = np.random.default_rng(seed)
    groups = {
        # source normals 0.1, 0.2; target normal 0.9; source anomaly 0.15, target anomaly 0.95
        HAND: ([0.1, 0.2, 0.9, 0.15, 0.95], [0, 0, 1, 0, 1], [0, 0, 0, 1, 1]),
        CONSTANT: (np.full(40, 0.7), rng.random(40) < 0.5, np.arange(40) % 2 == 0),
        SINGLE: (rng.normal(size=60), rng.random(60) < 0.5, np.arange(60) == 7),
        UNEQUAL: (rng.normal(size=100), np.arange(100) >= 90, rng.random(100) < 0.3),
        SOURCE_ONLY: (rng.normal(size=50), np.zeros(50), rng.random(50) < 0.5),
        NORMAL_ONLY: (rng.normal(size=30), rng.random(30) < 0.5, np.zeros(30)),
        VERTEX: (np.round(rng.normal(size=100), 1), np.arange(100) % 2, np.arange(100) >= 50),
        SIGNED_ZERO: (rng.choice([-0.0, 0.0, 1.0, -1.0], 80), rng.random(80) < 0.5,
                      rng.random(80) < 0.5),
        INVERTED: (np.arange(20.0), np.arange(20) % 2, np.arange(20) < 10),
        EMPTY: ([], [], []),
    }
    for g in range(FIRST_RANDOM, FIRST_RANDOM + num_random):
        n = int(rng.integers(2, 300))
        s = rng.normal(size=n) * rng.uniform(0.1, 10.0)
        if g % 3 == 0:  # heavy ties
            s = np.round(s * rng.uniform(0.5, 3.0))
        target_rate, anomaly_rate = rng.uniform(0.1, 0.9, 2)
        groups[g] = (s, rng.random(n) < target_rate, rng.random(n) < anomaly_rate)
    scores, group, is_target, is_anomaly = [], [], [], []
    for g, (s, d, y) in groups.items():
        scores.append(np.asarray(s, np.float64))
        group.append(np.full(len(s), g))
        is_target.append(np.asarray(d, bool))
        is_anomaly.append(np.asarray(y, bool))
    order = rng.permutation(sum(len(s) for s in scores))
    columns = [np.concatenate(c)[order] for c in (scores, group, is_target, is_anomaly)]
    return (*columns, len(groups))


@pytest.fixture(scope="module", params=[np.float64, np.float32], ids=["float64", "float32"])
def zoo(request):
    """Zoo clips, our metrics and the evaluator loop's, with float64 or float32 scores."""
    scores, group, is_target, is_anomaly, num_groups = _zoo()
    scores = scores.astype(request.param)
    ours = metrics.section_metrics(scores, group, is_target, is_anomaly, num_groups=num_groups)
    reference = evaluator_section_metrics(scores, group, is_target, is_anomaly, num_groups)
    return scores, group, is_target, is_anomaly, ours, reference


# ---------------------------------------------------------------------------------------------
# Section metrics
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field", metrics.SectionMetrics._fields)
def test_section_metrics_match_evaluator_loop(zoo, field):
    *_, ours, reference = zoo
    got, want = getattr(ours, field), getattr(reference, field)
    assert got.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE, equal_nan=True)


def test_float64_scores_are_not_rounded_to_float32():
    # 1 + 1e-12 and 1 are distinct in float64 but equal in float32.
    scores = np.array([1.0, 1.0 + 1e-12, 0.5, 2.0])
    ours = metrics.section_metrics(scores, np.zeros(4, int), np.zeros(4, bool),
                                   np.array([0, 1, 0, 1], bool))
    assert ours.auc_source[0] == pytest.approx(1.0, abs=TOLERANCE)


def test_hand_computed_group(zoo):
    ours = zoo[4]
    # AUC (source): normals {0.1, 0.2} against BOTH anomalies {0.15, 0.95}: 3 of 4 pairs.
    assert ours.auc_source[HAND] == pytest.approx(0.75, abs=TOLERANCE)
    assert ours.auc_target[HAND] == pytest.approx(0.5, abs=TOLERANCE)
    # pAUC: tpr = 1/2 on [0, 0.1] -> area 0.05; McClish 0.5 * (1 + 0.045 / 0.095) = 14/19.
    assert ours.pauc[HAND] == pytest.approx(14 / 19, abs=TOLERANCE)


def test_degenerate_groups(zoo):
    ours = zoo[4]
    for field in ("auc_source", "auc_target", "pauc", "pauc_source", "pauc_target"):
        assert getattr(ours, field)[CONSTANT] == pytest.approx(0.5, abs=TOLERANCE)
        assert np.isnan(getattr(ours, field)[NORMAL_ONLY])
        assert np.isnan(getattr(ours, field)[EMPTY])
    assert np.isnan(ours.auc_target[SOURCE_ONLY]) and np.isnan(ours.pauc_target[SOURCE_ONLY])
    assert np.isfinite([ours.auc_source[SOURCE_ONLY], ours.pauc[SOURCE_ONLY]]).all()
    assert ours.auc_source[INVERTED] == 0.0 and ours.auc_target[INVERTED] == 0.0


@pytest.mark.parametrize("max_fpr", [0.3, 1.0])
def test_other_max_fpr(max_fpr):
    scores, group, is_target, is_anomaly, num_groups = _zoo(seed=1, num_random=20)
    ours = metrics.section_metrics(scores, group, is_target, is_anomaly, num_groups, max_fpr)
    reference = evaluator_section_metrics(scores, group, is_target, is_anomaly, num_groups,
                                          max_fpr)
    for got, want in zip(ours, reference):
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE, equal_nan=True)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_raise(bad_value):
    scores = np.linspace(0.0, 1.0, 12)
    scores[[3, 10]] = bad_value
    group = np.arange(12) // 4
    expected = r"2 non-finite .* indices \[3, 10\] in group\(s\) \[0, 2\]"
    with pytest.raises(ValueError, match=expected):
        metrics.section_metrics(scores, group, np.zeros(12), np.arange(12) % 2)
    with pytest.raises(ValueError, match="2 non-finite"):
        metrics.jackknife_interval(scores, np.arange(12) % 2)


@pytest.mark.parametrize("change, message", [
    (dict(group=np.array([0, 1, 2, 3])), "group indices must lie in"),
    (dict(group=np.array([0, 1, 0])), "group must be an integer array of shape"),
    (dict(group=np.array([0.0, 1.0, 0.0, 1.0])), "group must be an integer array"),
    (dict(is_anomaly=np.array([0, 2, 0, 1])), "is_anomaly must be bool or 0/1"),
    (dict(is_target=np.array([True, False])), "is_target must have shape"),
    (dict(max_fpr=0.0), "max_fpr must lie in"),
    (dict(scores=np.zeros((2, 2))), "scores must be a 1-D array"),
    (dict(scores=np.array(["a", "b", "c", "d"])), "scores must be real numbers"),
])
def test_bad_input_raises(change, message):
    arguments = dict(scores=np.array([0.1, 0.4, 0.35, 0.8]), group=np.array([0, 0, 1, 1]),
                     is_target=np.array([0, 1, 0, 1]), is_anomaly=np.array([0, 1, 0, 1]),
                     num_groups=2)
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        metrics.section_metrics(**arguments)


# ---------------------------------------------------------------------------------------------
# Harmonic means and the official score
# ---------------------------------------------------------------------------------------------

def test_harmonic_mean_matches_scipy_with_epsilon_floor():
    rng = np.random.default_rng(2)
    values = rng.uniform(0.0, 1.0, (4, 7))
    values[1, 3] = 0.0
    floored = np.maximum(values, np.finfo(float).eps)
    assert metrics.harmonic_mean(values) == pytest.approx(
        scipy.stats.hmean(floored, axis=None), rel=1e-12)
    np.testing.assert_allclose(metrics.harmonic_mean(values, axis=1),
                               scipy.stats.hmean(floored, axis=1), rtol=1e-12)
    assert np.isnan(metrics.harmonic_mean([0.5, np.nan]))


def _defined_groups(zoo):
    """The zoo restricted to groups where every figure is defined, as a real dataset."""
    scores, group, is_target, is_anomaly, ours, reference = zoo
    keep = np.flatnonzero(np.all(np.isfinite(np.array(reference)), axis=0))
    return keep, metrics.SectionMetrics(*(f[keep] for f in ours)), \
        metrics.SectionMetrics(*(f[keep] for f in reference))


def test_official_score_matches_evaluator(zoo):
    keep, ours, reference = _defined_groups(zoo)
    assert INVERTED in keep  # AUC 0 exercises the epsilon floor
    want = evaluator_official_score(reference)
    assert metrics.official_score(ours) == pytest.approx(want, abs=TOLERANCE, rel=1e-9)
    without_zero = keep != INVERTED
    ours = metrics.SectionMetrics(*(f[without_zero] for f in ours))
    reference = metrics.SectionMetrics(*(f[without_zero] for f in reference))
    assert metrics.official_score(ours) == pytest.approx(evaluator_official_score(reference),
                                                         abs=TOLERANCE)


def test_official_score_is_nan_when_a_figure_is_undefined(zoo):
    assert np.isnan(metrics.official_score(zoo[4]))


def test_machine_scores_match_per_machine_hmeans(zoo):
    keep, ours, reference = _defined_groups(zoo)
    group_machine = [MACHINES[g % len(MACHINES)] for g in keep]
    result = metrics.machine_scores(ours, group_machine)
    assert list(result) == list(dict.fromkeys(group_machine))
    eps = np.finfo(float).eps
    for machine, scores in result.items():
        mine = np.array(group_machine) == machine
        for field in metrics.SectionMetrics._fields:
            want = scipy.stats.hmean(np.maximum(getattr(reference, field)[mine], eps))
            assert scores[field] == pytest.approx(want, abs=TOLERANCE), (machine, field)
        subset = metrics.SectionMetrics(*(f[mine] for f in reference))
        assert scores["official_score"] == pytest.approx(evaluator_official_score(subset),
                                                         abs=TOLERANCE)
    with pytest.raises(ValueError, match="entries for"):
        metrics.machine_scores(ours, group_machine[:-1])


# ---------------------------------------------------------------------------------------------
# Jackknife interval
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("quantize", [False, True], ids=["continuous", "ties"])
def test_jackknife_matches_evaluator(quantize):
    rng = np.random.default_rng(3)
    n = 90 if quantize else 95  # same size bucket: one compilation
    is_anomaly = rng.random(n) < 0.4
    scores = rng.normal(size=n) + is_anomaly
    if quantize:
        scores = np.round(scores, 1)
    ours = metrics.jackknife_interval(scores, is_anomaly)
    auc = evaluator_jackknife(is_anomaly, scores, lambda y, s: roc_auc_score(y, s))
    pauc = evaluator_jackknife(is_anomaly, scores, lambda y, s: roc_auc_score(y, s, max_fpr=0.1))
    assert ours.auc == pytest.approx(roc_auc_score(is_anomaly, scores), abs=TOLERANCE)
    assert ours.pauc == pytest.approx(roc_auc_score(is_anomaly, scores, max_fpr=0.1),
                                      abs=TOLERANCE)
    assert ours.auc_jackknife == pytest.approx(auc[0], abs=TOLERANCE)
    assert ours.pauc_jackknife == pytest.approx(pauc[0], abs=TOLERANCE)
    assert ours.auc_half_width == pytest.approx(auc[1], abs=TOLERANCE, rel=1e-6)
    assert ours.pauc_half_width == pytest.approx(pauc[1], abs=TOLERANCE, rel=1e-6)
    assert ours.half_width == pytest.approx(np.mean([auc[1], pauc[1]]), rel=1e-6)


def test_jackknife_needs_two_clips_per_class():
    with pytest.raises(ValueError, match="1 anomalous"):
        metrics.jackknife_interval(np.arange(5.0), [0, 0, 0, 0, 1])


# ---------------------------------------------------------------------------------------------
# Device placement
# ---------------------------------------------------------------------------------------------

def test_metrics_run_on_the_host_cpu_whatever_the_default_device(monkeypatch):
    """Under another default device (an accelerator on a real machine; here another of the 8
    fake CPU devices), the kernels' arrays live on the host CPU device and the figures still
    equal scikit-learn's to 1e-12."""
    import jax  # noqa: PLC0415 (this test alone handles devices)

    host, other = jax.devices("cpu")[0], jax.devices()[-1]
    assert other != host
    kernel_outputs = []
    for name in ("_section_kernel", "_jackknife_kernel"):
        kernel = getattr(metrics, name)
        monkeypatch.setattr(metrics, name, lambda *args, kernel=kernel, **kwargs:
                            kernel_outputs.append(kernel(*args, **kwargs)) or kernel_outputs[-1])
    scores, group, is_target, is_anomaly, num_groups = _zoo(seed=5, num_random=10)
    rng = np.random.default_rng(6)
    pooled_scores, pooled_anomaly = rng.normal(size=60), rng.random(60) < 0.5
    with jax.default_device(other):
        ours = metrics.section_metrics(scores, group, is_target, is_anomaly, num_groups)
        interval = metrics.jackknife_interval(pooled_scores, pooled_anomaly)
    reference = evaluator_section_metrics(scores, group, is_target, is_anomaly, num_groups)
    for got, want in zip(ours, reference):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, equal_nan=True)
    assert interval.auc == pytest.approx(roc_auc_score(pooled_anomaly, pooled_scores), abs=1e-12)
    assert len(kernel_outputs) == 2
    for array in jax.tree.leaves(kernel_outputs):
        assert array.devices() == {host} and array.dtype == np.float64
