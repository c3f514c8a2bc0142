"""DCASE 2022/2023 Task 2 metrics, vectorised: AUC, pAUC, harmonic means, jackknife interval.

One jit-compiled call computes every figure of every group (one group per machine type and
section) from flat per-clip arrays; a thin numpy-facing layer validates the input and forms
the harmonic means. The numbers equal the official evaluators' to rounding (~1e-15).

What the official evaluators compute (read from ``dcase2022_task2_evaluator.py``,
github.com/Kota-Dohi/dcase2022_evaluator, and ``dcase2023_task2_evaluator.py``,
github.com/nttcslab/dcase2023_task2_evaluator; pAUC per domain from the 2023 baseline,
github.com/nttcslab/dcase2023_task2_baseline_ae, ``networks/dcase2023t2_ae/dcase2023t2_ae.py``):

* AUC (source) / AUC (target) of a section: ``roc_auc_score`` over the clips with
  ``(domain == d) | (label != 0)``, i.e. that domain's normal clips against ALL anomalous clips
  of the section, both domains.
* pAUC of a section: ``roc_auc_score(y, s, max_fpr=0.1)`` over all clips of the section, both
  domains pooled. scikit-learn interpolates the ROC curve linearly at fpr = max_fpr and applies
  the McClish standardisation ``0.5 * (1 + (area - max_fpr**2 / 2) / (max_fpr - max_fpr**2 / 2))``.
* pAUC (source) / pAUC (target) (2023 baseline only, not in the official score): the same over
  the clips of that domain only.
* Official score: ``scipy.stats.hmean(numpy.maximum(v, sys.float_info.epsilon))`` over the
  vector ``v`` of every AUC (source), every AUC (target) and every pAUC of all sections of all
  machine types (each pAUC once). The per-machine "harmonic mean" rows of the evaluators and
  the 2023 baseline floor at epsilon the same way (the 2023 evaluator's per-machine-type table
  alone omits the floor; this only matters for a figure of exactly 0).
* "official score ci95" (both evaluators): the clips of ALL sections and machine types are
  pooled into one list (domains ignored), and ``jackknife_estimate`` runs leave-one-clip-out
  over it for the pooled AUC and for the pooled pAUC. With theta_i the leave-one-out values,
  N clips and theta_bar their mean: sigma = sqrt(sum((theta_i - theta_bar)**2) / (N (N - 1))),
  half-width = |t.ppf(0.025, N - 1)| * sigma, and the estimate is the mean of the
  pseudo-values ``N * theta - (N - 1) * theta_i``. The reported value is the mean of the AUC
  and pAUC half-widths. (Note: sigma uses theta_i, not the pseudo-values, so it is 1/(N - 1)
  of the textbook jackknife standard error; we reproduce it as published.)

How we compute it. Each clip becomes one int64 sort key ``group | descending score | domain |
label``; a single integer sort (much faster on XLA:CPU than a multi-operand sort) orders every
group by descending score. Runs of equal (group, score) keys are the tie blocks that
``roc_curve`` merges; cumulative counts of the four clip categories (source/target x
normal/anomalous) give each block's ROC vertex (false and true positive counts) for all five
figures at once, and the trapezoid areas, clipped at ``max_fpr * negatives`` with linear
interpolation inside the crossing block, are summed per group. This is exactly scikit-learn's curve (dropping collinear points does not change it), so
AUC equals the Mann-Whitney U with average ranks. Leave-one-out values for the jackknife come in
closed form from the same blocks (removing a clip shifts one block's vertex), O(N log N) instead
of N scikit-learn calls.

Precision: the kernels run under ``jax.enable_x64(True)`` (local to the call; the rest of the
program keeps float32) on the host CPU device whatever the default device: TPUs emulate float64
(and lack the 64-bit bitcast the sort key uses), so pinning the metrics to the CPU gives the same
figures on every machine, to the last bit, as ``python -m mdg.evaluate_csv`` computes there. Counts are integers, doubled trapezoid areas are integers held exactly
in float64 (up to 2**53), and only the final ratios and the one interpolated block are rounded,
so results agree with scikit-learn's float64 to ~1e-15. float32 scores enter the sort key as
their order-preserving bit pattern (no precision lost); float64 scores that are not exactly
float32 values are replaced by their exact dense rank first (one extra sort). -0.0 and 0.0 tie,
as in scikit-learn.

Undefined figures: a group with no normal or no anomalous clip in a figure's subset (e.g. a
section without target-domain clips) gets NaN for that figure, as current scikit-learn returns
(1.9.1, with a warning; older versions raise, which would stop the evaluators).
Harmonic means propagate NaN like ``scipy.stats.hmean``, so an official score over such a
figure is NaN: report it, do not hide it. Non-finite scores raise ``ValueError``.

Clip and group counts are padded to size buckets (at most 1/8 more), so each (bucket,
max_fpr, score dtype) compiles once and nearby sizes share the compilation.
"""
from __future__ import annotations

import contextlib
import functools
import sys
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

EPSILON = sys.float_info.epsilon
"""Floor applied to every figure before a harmonic mean, as the evaluators do."""

_LABEL_BITS = 2       # domain bit, label bit
_SCORE_BITS = 32      # order-preserving score key
_GROUP_SHIFT = _LABEL_BITS + _SCORE_BITS
_MAX_GROUPS = 1 << (63 - _GROUP_SHIFT)


class SectionMetrics(NamedTuple):
    """Per-group figures; each a float64 array of shape (num_groups,), NaN where undefined."""

    auc_source: np.ndarray   # source normal clips vs all anomalous clips of the group
    auc_target: np.ndarray   # target normal clips vs all anomalous clips of the group
    pauc: np.ndarray         # all clips of the group, both domains, fpr <= max_fpr, McClish
    pauc_source: np.ndarray  # source-domain clips only (2023 baseline)
    pauc_target: np.ndarray  # target-domain clips only (2023 baseline)


class JackknifeInterval(NamedTuple):
    """The DCASE 2023 evaluator's leave-one-clip-out jackknife over the pooled clips."""

    auc: float              # AUC of all pooled clips
    pauc: float             # pAUC (McClish, max_fpr) of all pooled clips
    auc_jackknife: float    # mean of the AUC pseudo-values (bias-corrected estimate)
    pauc_jackknife: float   # mean of the pAUC pseudo-values
    auc_half_width: float   # t-quantile * sigma_jack of the AUC
    pauc_half_width: float  # t-quantile * sigma_jack of the pAUC
    half_width: float       # mean of the two half-widths: the evaluator's "official score ci95"


# ---------------------------------------------------------------------------------------------
# JAX kernels (run under x64)
# ---------------------------------------------------------------------------------------------

# Clip categories in order: source normal, source anomaly, target normal, target anomaly
# (category = 2 * is_target + is_anomaly). Which are positives / negatives of each figure:
_SECTION_POSITIVES = np.array([[0, 1, 0, 1],   # auc_source: all anomalies
                               [0, 1, 0, 1],   # auc_target: all anomalies
                               [0, 1, 0, 1],   # pauc: all anomalies
                               [0, 1, 0, 0],   # pauc_source: source anomalies
                               [0, 0, 0, 1]])  # pauc_target: target anomalies
_SECTION_NEGATIVES = np.array([[1, 0, 0, 0],   # auc_source: source normals
                               [0, 0, 1, 0],   # auc_target: target normals
                               [1, 0, 1, 0],   # pauc: all normals
                               [1, 0, 0, 0],   # pauc_source: source normals
                               [0, 0, 1, 0]])  # pauc_target: target normals
_POOLED_POSITIVES = np.array([[0, 1, 0, 1]])
_POOLED_NEGATIVES = np.array([[1, 0, 1, 0]])
_FIELD_BITS = 32  # two category counts share one int64: normal low, anomalous high


class _BlockRoc(NamedTuple):
    """Each tie block's ROC segment, after sorting all clips by (group, descending score).

    Values are float64 (S, n) for S figures and meaningful only where ``last_in_block``: the
    false/true positive counts of the ROC vertex before the block (``fp_prev, tp_prev``) and
    after it (``fp, tp``), counted within the block's group. ``negatives, positives`` are the
    per-group totals, float64 (S, num_groups).
    """

    group: jax.Array          # (n,) int32 group of each sorted clip
    last_in_block: jax.Array  # (n,) bool
    fp_prev: jax.Array
    fp: jax.Array
    tp_prev: jax.Array
    tp: jax.Array
    negatives: jax.Array
    positives: jax.Array


def _descending_score_key(scores: jax.Array) -> jax.Array:
    """int64 (n,) in [0, 2**32): equal iff scores are equal, smaller for higher scores."""
    scores = jnp.where(scores == 0, jnp.zeros_like(scores), scores)  # -0.0 ties with 0.0
    if scores.dtype == jnp.float32:
        bits = jax.lax.bitcast_convert_type(scores, jnp.int32)
        ascending = jnp.where(bits < 0, bits ^ 0x7FFFFFFF, bits).astype(jnp.int64) + 2**31
    else:
        bits = jax.lax.bitcast_convert_type(scores.astype(jnp.float64), jnp.int64)
        ordered = jnp.where(bits < 0, bits ^ 0x7FFFFFFFFFFFFFFF, bits)
        # Equal scores share the rank of their first occurrence; order is kept.
        ascending = jnp.searchsorted(jnp.sort(ordered), ordered, side="left").astype(jnp.int64)
    return (2**_SCORE_BITS - 1) - ascending


def _block_roc(scores: jax.Array, group: jax.Array, is_target: jax.Array, is_anomaly: jax.Array,
               num_groups: int, positives: np.ndarray, negatives: np.ndarray) -> _BlockRoc:
    """Sort all clips once and read every group's ROC segments for S figures.

    ``positives`` and ``negatives`` are 0/1 (S, 4) matrices selecting, per figure, which clip
    categories (source normal, source anomaly, target normal, target anomaly) count.
    """
    key = ((group.astype(jnp.int64) << _GROUP_SHIFT)
           | (_descending_score_key(scores) << _LABEL_BITS)
           | (is_target.astype(jnp.int64) << 1)
           | is_anomaly.astype(jnp.int64))
    key = jnp.sort(key)
    sorted_group = (key >> _GROUP_SHIFT).astype(jnp.int32)
    tie = key >> _LABEL_BITS

    block_change = tie[1:] != tie[:-1]
    first_in_block = jnp.concatenate([jnp.ones(1, bool), block_change])
    last_in_block = jnp.concatenate([block_change, jnp.ones(1, bool)])

    # Cumulative category counts, two per int64 (columns: source, target; low field: normal,
    # high field: anomalous). Fields never carry (counts < 2**31), so sums, differences and
    # gathers act on both fields at once, halving the dominant scan.
    domain = ((key >> 1) & 1).astype(jnp.int32)
    one = jnp.where((key & 1) == 1, jnp.int64(1) << _FIELD_BITS, jnp.int64(1))
    counts = jnp.where(domain[:, None] == jnp.arange(2, dtype=jnp.int32), one[:, None], 0)
    inclusive = jnp.cumsum(counts, axis=0)
    totals = jax.ops.segment_sum(counts, sorted_group, num_groups, indices_are_sorted=True)
    group_base = jnp.take(jnp.cumsum(totals, axis=0) - totals, sorted_group, axis=0)
    index = jnp.arange(key.shape[0], dtype=jnp.int32)
    block_start = jax.lax.cummax(jnp.where(first_in_block, index, 0))
    before = jnp.take(inclusive - counts, block_start, axis=0) - group_base
    after = inclusive - group_base

    def select(matrix, packed):  # (S, 4) 0/1, packed (m, 2) -> float64 (S, m)
        # Through int32: XLA:CPU converts int32, not int64, to float64 with vector code.
        low = (packed & ((1 << _FIELD_BITS) - 1)).astype(jnp.int32)
        high = (packed >> _FIELD_BITS).astype(jnp.int32)
        per_category = (low[:, 0], high[:, 0], low[:, 1], high[:, 1])
        return jnp.stack([sum(per_category[j] for j in np.flatnonzero(row))
                          for row in matrix]).astype(jnp.float64)

    return _BlockRoc(group=sorted_group, last_in_block=last_in_block,
                     fp_prev=select(negatives, before), fp=select(negatives, after),
                     tp_prev=select(positives, before), tp=select(positives, after),
                     negatives=select(negatives, totals), positives=select(positives, totals))


def _doubled_area_left_of(x, fp_prev, fp, tp_prev, tp):
    """Twice the ROC area (in count units) of a tie block's segment left of fp = x.

    The segment runs linearly from (fp_prev, tp_prev) to (fp, tp); scikit-learn interpolates
    the same way at max_fpr. Whole segments give exact integers.
    """
    width = fp - fp_prev
    covered = jnp.clip(x - fp_prev, 0.0, width)
    tp_at_x = tp_prev + (tp - tp_prev) * covered / jnp.maximum(width, 1.0)
    return jnp.where(x >= fp, width * (tp + tp_prev), covered * (tp_prev + tp_at_x))


def _standardize(area: jax.Array, max_fpr: jax.Array) -> jax.Array:
    """McClish standardisation of a partial area, as scikit-learn (plain AUC at max_fpr = 1)."""
    min_area = 0.5 * max_fpr**2
    mcclish = 0.5 * (1.0 + (area - min_area) / (max_fpr - min_area))
    return jnp.where(max_fpr >= 1.0, area, mcclish)


@functools.partial(jax.jit, static_argnames=("num_groups", "max_fpr"))
def _section_kernel(scores, group, is_target, is_anomaly, *, num_groups: int, max_fpr: float):
    """(5, num_groups) float64 rows in SectionMetrics order."""
    roc = _block_roc(scores, group, is_target, is_anomaly, num_groups,
                     _SECTION_POSITIVES, _SECTION_NEGATIVES)
    limit = jnp.array([1.0, 1.0, max_fpr, max_fpr, max_fpr])[:, None]
    x = limit * jnp.take(roc.negatives, roc.group, axis=1)
    area = _doubled_area_left_of(x, roc.fp_prev, roc.fp, roc.tp_prev, roc.tp)
    area = jnp.where(roc.last_in_block, area, 0.0)
    area = jax.ops.segment_sum(area.T, roc.group, num_groups, indices_are_sorted=True).T
    # 0 / 0 -> NaN where a figure lacks normal or anomalous clips.
    return _standardize(area / (2.0 * roc.positives * roc.negatives), limit)


@functools.partial(jax.jit, static_argnames=("max_fpr",))
def _jackknife_kernel(scores, is_padding, is_anomaly, *, max_fpr: float):
    """Pooled AUC/pAUC, mean pseudo-value and sigma_jack; each float64 (2,) = (AUC, pAUC).

    Padding clips form their own group and are left out of every sum. Every clip of a tie
    block has the same leave-one-out value per class, so sums over clips are sums over blocks
    weighted by the block's normal / anomalous counts.
    """
    roc = _block_roc(scores, is_padding.astype(jnp.int32), jnp.zeros_like(is_padding),
                     is_anomaly, 2, _POOLED_POSITIVES, _POOLED_NEGATIVES)
    fp_prev, fp, tp_prev, tp = roc.fp_prev, roc.fp, roc.tp_prev, roc.tp  # (1, n)
    negatives, positives = roc.negatives[0, 0], roc.positives[0, 0]
    n = negatives + positives
    block = roc.last_in_block & (roc.group == 0)
    limit = jnp.array([1.0, max_fpr])[:, None]
    width = fp - fp_prev
    whole = jnp.where(block, width * (tp + tp_prev), 0.0)
    area_before_block = jnp.cumsum(whole, axis=1) - whole

    def total_area(x):  # (2, 1) -> (2, 1)
        area = _doubled_area_left_of(x, fp_prev, fp, tp_prev, tp)
        return jnp.sum(jnp.where(block, area, 0.0), axis=1, keepdims=True)

    # Removing an anomalous clip lowers tp by one from its block on; the limit
    # max_fpr * negatives stays.
    x = limit * negatives
    lost = jnp.where(x <= fp_prev, 0.0,
                     jnp.where(x >= fp, width + 2.0 * (x - fp),
                               (x - fp_prev)**2 / jnp.maximum(width, 1.0)))
    without_anomaly = _standardize(
        (total_area(x) - lost) / (2.0 * negatives * (positives - 1.0)), limit)
    # Removing a normal clip narrows its block by one and shifts the later curve left by one;
    # the limit becomes max_fpr * (negatives - 1).
    x = limit * (negatives - 1.0)
    covered = x - fp_prev
    inside = (area_before_block + 2.0 * covered * tp_prev
              + (tp - tp_prev) * covered**2 / jnp.maximum(width - 1.0, 1.0))
    area = jnp.where(x <= fp_prev, total_area(x),
                     jnp.where(x >= fp - 1.0, total_area(x + 1.0) - (tp_prev + tp), inside))
    without_normal = _standardize(area / (2.0 * (negatives - 1.0) * positives), limit)

    full = _standardize(total_area(limit * negatives) / (2.0 * negatives * positives), limit)
    anomalous_in_block = jnp.where(block, tp - tp_prev, 0.0)
    normal_in_block = jnp.where(block, width, 0.0)

    def clip_sum(per_anomaly, per_normal):  # sum over clips; NaN where a class is absent
        return jnp.sum(jnp.where(anomalous_in_block > 0, anomalous_in_block * per_anomaly, 0.0)
                       + jnp.where(normal_in_block > 0, normal_in_block * per_normal, 0.0),
                       axis=1, keepdims=True)

    mean_left_out = clip_sum(without_anomaly, without_normal) / n
    spread = clip_sum((without_anomaly - mean_left_out)**2, (without_normal - mean_left_out)**2)
    pseudo_mean = n * full - (n - 1) * mean_left_out
    sigma = jnp.sqrt(spread / (n * (n - 1)))
    return full[:, 0], pseudo_mean[:, 0], sigma[:, 0]


# ---------------------------------------------------------------------------------------------
# numpy-facing API
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _exact_on_host_cpu():
    """Run the kernels on the host CPU device in float64, whatever the default device."""
    with jax.enable_x64(True), jax.default_device(jax.devices("cpu")[0]):
        yield


def _bucket(size: int) -> int:
    """Smallest m * 2**k >= size with m < 16: at most 1/8 padding, few distinct shapes."""
    shift = max(size.bit_length() - 4, 0)
    return -(-size >> shift) << shift


def _padded(array: np.ndarray, size: int, fill) -> np.ndarray:
    return np.concatenate([array, np.full(size - array.shape[0], fill, array.dtype)])


def _as_scores(values) -> np.ndarray:
    """1-D finite float32 or float64 scores; float64 values that are exact float32 -> float32."""
    scores = np.asarray(values)
    if scores.ndim != 1 or not 0 < scores.size < 2**31:
        raise ValueError(f"scores must be a 1-D array of 1 to 2**31 - 1 clips, "
                         f"got shape {scores.shape}")
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)
            or scores.dtype == bool):
        raise ValueError(f"scores must be real numbers, got dtype {scores.dtype}")
    if scores.dtype.itemsize <= 2 or scores.dtype == np.float32:
        return scores.astype(np.float32)
    scores = scores.astype(np.float64)
    with np.errstate(over="ignore"):
        as_float32 = scores.astype(np.float32)
    # The float32 key needs one sort instead of two, and is exact when no value changes.
    return as_float32 if np.array_equal(as_float32, scores) else scores


def _as_labels(values, name: str, n: int) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) like scores, got {array.shape}")
    if array.dtype != bool:
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must be bool or 0/1, got values {np.unique(array)[:10]}")
        array = array.astype(bool)
    return array


def _check_finite(scores: np.ndarray, group: np.ndarray | None = None) -> None:
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size == 0:
        return
    message = (f"scores contain {bad.size} non-finite value(s) "
               f"({int(np.isnan(scores[bad]).sum())} NaN, {int(np.isinf(scores[bad]).sum())} inf) "
               f"at clip indices {bad[:10].tolist()}{' ...' if bad.size > 10 else ''}")
    if group is not None:
        message += f" in group(s) {np.unique(group[bad]).tolist()}"
    raise ValueError(message)


def section_metrics(scores, group, is_target, is_anomaly, num_groups: int | None = None,
                    max_fpr: float = 0.1) -> SectionMetrics:
    """AUC (source/target) and pAUC (all/source/target) of every group in one compiled call.

    Args:
      scores: (n,) anomaly scores, higher = more anomalous; any real dtype, used exactly.
      group: (n,) int group index in [0, num_groups), one group per (machine type, section).
      is_target: (n,) bool (or 0/1), True for target-domain clips.
      is_anomaly: (n,) bool (or 0/1), True for anomalous clips.
      num_groups: number of groups; default max(group) + 1. Groups without clips give NaN.
      max_fpr: pAUC limit in (0, 1]; 0.1 in DCASE.

    Returns:
      SectionMetrics of float64 (num_groups,) arrays; NaN where a figure's clips lack a normal
      or an anomalous clip.

    Raises:
      ValueError: on non-finite scores (naming how many, their clip indices and groups), shape
        mismatches, labels other than 0/1, or group indices out of range.
    """
    scores = _as_scores(scores)
    n = scores.shape[0]
    group = np.asarray(group)
    if group.shape != (n,) or not np.issubdtype(group.dtype, np.integer):
        raise ValueError(f"group must be an integer array of shape ({n},) like scores, "
                         f"got {group.dtype} {group.shape}")
    _check_finite(scores, group)
    is_target = _as_labels(is_target, "is_target", n)
    is_anomaly = _as_labels(is_anomaly, "is_anomaly", n)
    low, high = int(group.min()), int(group.max())
    num_groups = high + 1 if num_groups is None else int(num_groups)
    if low < 0 or high >= num_groups or num_groups >= _MAX_GROUPS:
        raise ValueError(f"group indices must lie in [0, num_groups) with num_groups < "
                         f"{_MAX_GROUPS}; got indices in [{low}, {high}], num_groups={num_groups}")
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must lie in (0, 1], got {max_fpr}")
    # Padding clips go to an extra group that is sliced away; sizes are bucketed so that
    # nearby sizes share one compilation.
    size = _bucket(n)
    with _exact_on_host_cpu():
        rows = _section_kernel(
            _padded(scores, size, 0), _padded(group.astype(np.int32), size, num_groups),
            _padded(is_target, size, False), _padded(is_anomaly, size, False),
            num_groups=_bucket(num_groups + 1), max_fpr=float(max_fpr))
        rows = np.asarray(jax.block_until_ready(rows))[:, :num_groups]
    return SectionMetrics(*rows)


def harmonic_mean(values, axis: int | None = None):
    """Harmonic mean of ``values`` floored at float64 epsilon, as the evaluators do.

    NaN propagates. Returns a float64 scalar for ``axis=None``, else an array.
    """
    floored = np.maximum(np.asarray(values, dtype=np.float64), EPSILON)
    # scipy.stats.hmean's formula, 1 / mean(1 / x), without its ~0.2 ms of call overhead
    # (more than the whole metric kernel for a DCASE-sized set).
    return 1.0 / np.mean(1.0 / floored, axis=axis)


def official_score(metrics: SectionMetrics) -> float:
    """DCASE official score: harmonic mean over every AUC (source), AUC (target) and pAUC."""
    return float(harmonic_mean(np.concatenate(
        [metrics.auc_source, metrics.auc_target, metrics.pauc])))


def machine_scores(metrics: SectionMetrics,
                   group_machine: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per machine type: harmonic mean of each figure over its sections, and its own score.

    Args:
      metrics: per-group figures from ``section_metrics``.
      group_machine: machine type name of each group, length num_groups.

    Returns:
      ``{machine: {"auc_source", "auc_target", "pauc", "pauc_source", "pauc_target",
      "official_score"}}`` in order of first appearance; each a harmonic mean over the
      machine's groups (floored at epsilon), ``official_score`` over its AUCs and pAUCs.
    """
    names = np.asarray(list(group_machine), dtype=object)
    if names.shape != metrics.auc_source.shape:
        raise ValueError(f"group_machine has {names.size} entries for "
                         f"{metrics.auc_source.size} groups")
    result = {}
    for machine in dict.fromkeys(names):
        selected = SectionMetrics(*(figure[names == machine] for figure in metrics))
        scores = {field: float(harmonic_mean(figure))
                  for field, figure in zip(SectionMetrics._fields, selected)}
        scores["official_score"] = official_score(selected)
        result[machine] = scores
    return result


def jackknife_interval(scores, is_anomaly, max_fpr: float = 0.1,
                       confidence: float = 0.95) -> JackknifeInterval:
    """The DCASE 2023 evaluator's jackknife interval ("official score ci95").

    Args:
      scores: (n,) anomaly scores of ALL clips of all sections and machine types, pooled.
      is_anomaly: (n,) bool (or 0/1) labels; domains play no part, as in the evaluator.
      max_fpr: pAUC limit in (0, 1]; 0.1 in DCASE.
      confidence: two-sided level of the Student-t quantile.

    Returns:
      JackknifeInterval; ``half_width`` is what the evaluator writes as "official score ci95".

    Raises:
      ValueError: on non-finite scores, fewer than two normal or two anomalous clips (a
        leave-one-out set would lack a class), or bad shapes.
    """
    scores = _as_scores(scores)
    n = scores.shape[0]
    _check_finite(scores)
    is_anomaly = _as_labels(is_anomaly, "is_anomaly", n)
    anomalies = int(is_anomaly.sum())
    if min(anomalies, n - anomalies) < 2:
        raise ValueError(f"the jackknife needs >= 2 normal and >= 2 anomalous clips, got "
                         f"{n - anomalies} normal and {anomalies} anomalous")
    if not 0.0 < max_fpr <= 1.0 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need max_fpr in (0, 1] and confidence in (0, 1), "
                         f"got {max_fpr}, {confidence}")
    size = _bucket(n)
    with _exact_on_host_cpu():
        full, pseudo_mean, sigma = (np.asarray(v) for v in jax.block_until_ready(
            _jackknife_kernel(_padded(scores, size, 0), np.arange(size) >= n,
                              _padded(is_anomaly, size, False), max_fpr=float(max_fpr))))
    half_widths = abs(scipy.stats.t.ppf((1.0 - confidence) / 2.0, n - 1)) * sigma
    return JackknifeInterval(
        auc=float(full[0]), pauc=float(full[1]),
        auc_jackknife=float(pseudo_mean[0]), pauc_jackknife=float(pseudo_mean[1]),
        auc_half_width=float(half_widths[0]), pauc_half_width=float(half_widths[1]),
        half_width=float(np.mean(half_widths)))
