"""mdg.scoring against per-clip numpy float64 loops, scipy and scikit-learn."""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import cdist, mahalanobis
from scipy.special import softmax
from sklearn.neighbors import NearestNeighbors

from mdg import scoring

BLOCK = 8  # small block (mel) size keeps the tests fast; the code is block-size generic


def _clip_layout(rng: np.random.Generator, vectors_per_clip: list[int]) -> np.ndarray:
    """Shuffled clip ids, so the segment reductions cannot rely on sorted rows."""
    clip_id = np.repeat(np.arange(len(vectors_per_clip)), vectors_per_clip)
    return rng.permutation(clip_id)


def _clip_means(rows: np.ndarray, clip_id: np.ndarray, num_clips: int) -> np.ndarray:
    """Per-clip mean of rows (what mdg.clip_outputs computes on device; tested there)."""
    return np.stack([np.asarray(rows)[clip_id == c].mean(axis=0) for c in range(num_clips)])


def _numpy_precision(blocks: np.ndarray, ridge: float) -> np.ndarray:
    covariance = np.cov(blocks, rowvar=False)
    regulariser = ridge * np.trace(covariance) / covariance.shape[0]
    return np.linalg.inv(covariance + regulariser * np.eye(covariance.shape[0]))


def _moments_in_two_batches(x, r, is_target):
    half = x.shape[0] // 2
    first = scoring.residual_block_moments(x[:half] - r[:half], is_target[:half], block_size=BLOCK)
    second = scoring.residual_block_moments(x[half:] - r[half:], is_target[half:], block_size=BLOCK)
    return scoring.merge_block_moments(first, second)


def test_block_moments_merge_to_the_pooled_covariance():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 5 * BLOCK)).astype(np.float32)
    # Batches with different residual means: the merge must keep the between-batch spread.
    r = (x - rng.normal(size=x.shape) - np.arange(30)[:, None] / 10).astype(np.float32)
    is_target = rng.random(30) < 0.3
    merged = _moments_in_two_batches(x, r, is_target)
    residual = x.astype(np.float64) - r
    for domain, mask in ((0, ~is_target), (1, is_target)):
        blocks = residual[mask].reshape(-1, BLOCK)
        assert merged.count[domain] == blocks.shape[0]
        np.testing.assert_allclose(merged.mean[domain], blocks.mean(axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            merged.scatter[domain] / (blocks.shape[0] - 1),
            np.cov(blocks, rowvar=False), rtol=1e-4, atol=1e-4,
        )


def test_mahalanobis_scores_match_scipy_and_the_official_pairwise_mean():
    rng = np.random.default_rng(3)
    mixing = rng.normal(size=(BLOCK, BLOCK))
    train_x = rng.normal(size=(60, 5 * BLOCK)).astype(np.float32)
    train_noise = rng.normal(size=(60, 5, BLOCK)) @ mixing  # correlated residuals
    train_r = (train_x - train_noise.reshape(60, -1)).astype(np.float32)
    is_target = np.zeros(60, bool)
    is_target[:6] = True  # a small target set, like DCASE 2023's 10 clips
    ridge = 1e-4
    precisions = scoring.fit_mahalanobis(
        _moments_in_two_batches(train_x, train_r, is_target), ridge=ridge
    )
    residual = train_x.astype(np.float64) - train_r
    want_precisions = [
        _numpy_precision(residual[mask].reshape(-1, BLOCK), ridge)
        for mask in (~is_target, is_target)
    ]
    for got, want in zip(np.asarray(precisions), want_precisions):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())

    clip_id = _clip_layout(rng, [3, 1, 5])
    test_x = rng.normal(size=(clip_id.size, 5 * BLOCK)).astype(np.float32)
    test_r = (test_x - rng.normal(scale=1.5, size=test_x.shape)).astype(np.float32)
    mean_residual = _clip_means(test_x - test_r, clip_id, 3)
    got = scoring.mahalanobis_block_scores(scoring.mean_residual_blocks(mean_residual, BLOCK), precisions)
    test_residual = test_x.astype(np.float64) - test_r
    for clip in range(3):
        deltas = test_residual[clip_id == clip].reshape(-1, BLOCK)
        mean_block = deltas.mean(axis=0)
        per_domain = [mahalanobis(mean_block, np.zeros(BLOCK), vi) ** 2 for vi in want_precisions]
        np.testing.assert_allclose(got[clip], min(per_domain), rtol=2e-3)
        # The official code averages delta_i' P delta_j over all block pairs of the clip.
        official = [np.mean(np.mean(deltas @ vi @ deltas.T, axis=1)) for vi in want_precisions]
        np.testing.assert_allclose(got[clip], min(official), rtol=2e-3)


def test_mahalanobis_singular_covariance_and_missing_target():
    rng = np.random.default_rng(4)
    # Residuals live in a 3-d subspace of the 8-d blocks: the covariance is singular.
    basis = rng.normal(size=(3, BLOCK))
    x = rng.normal(size=(20, 5 * BLOCK)).astype(np.float32)
    r = (x - (rng.normal(size=(20, 5, 3)) @ basis).reshape(20, -1)).astype(np.float32)
    no_target = np.zeros(20, bool)
    moments = scoring.residual_block_moments(x - r, no_target, block_size=BLOCK)
    ridge = 1e-2
    precisions = np.asarray(scoring.fit_mahalanobis(moments, ridge=ridge))
    assert np.all(np.isfinite(precisions))
    np.testing.assert_array_equal(precisions[1], precisions[0])  # target falls back to source
    want = _numpy_precision((x.astype(np.float64) - r).reshape(-1, BLOCK), ridge)
    np.testing.assert_allclose(precisions[0], want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    # A test residual off the training subspace scores far higher than one inside it.
    off = np.linalg.svd(basis)[2][-1]  # unit vector orthogonal to the basis
    test_x = np.zeros((2, 5 * BLOCK), np.float32)
    test_r = -np.stack([np.tile(off, 5), np.tile(basis[0] / np.linalg.norm(basis[0]), 5)])
    scores = np.asarray(scoring.mahalanobis_block_scores(
        scoring.mean_residual_blocks(test_x - test_r.astype(np.float32), BLOCK), jnp.asarray(precisions)))
    assert np.all(np.isfinite(scores)) and scores[0] > 10 * scores[1]


def test_fit_mahalanobis_rejects_missing_source():
    x = np.ones((2, 5 * BLOCK), np.float32)
    moments = scoring.residual_block_moments(x - x * 0, np.ones(2, bool), block_size=BLOCK)
    with pytest.raises(ValueError, match="scoring.py.*source"):
        scoring.fit_mahalanobis(moments)


def test_negative_logit_matches_baseline_formula():
    rng = np.random.default_rng(5)
    clip_id = _clip_layout(rng, [2, 1, 4])
    logits = rng.normal(scale=3, size=(clip_id.size, 4)).astype(np.float32)
    logits[0, 1] = 60.0  # p ~ 1 for one patch: log(1 - p) hits the eps floor
    true_class = np.array([1, 3, 0])
    candidates = np.eye(4, dtype=bool)[true_class]
    got = _clip_means(scoring.negative_logit_rows(logits, candidates[clip_id]), clip_id, 3)
    eps = sys.float_info.epsilon
    p_all = softmax(logits.astype(np.float64), axis=1)
    for clip in range(3):
        p = p_all[clip_id == clip, true_class[clip]]
        want = np.mean(np.log(np.maximum(1 - p, eps)) - np.log(np.maximum(p, eps)))
        np.testing.assert_allclose(got[clip], want, rtol=1e-4, atol=1e-4)


def test_negative_logit_with_candidate_classes_uses_the_most_probable_candidate():
    rng = np.random.default_rng(8)
    clip_id = _clip_layout(rng, [3, 2])
    logits = rng.normal(scale=2, size=(clip_id.size, 5)).astype(np.float32)
    candidates = np.array([[True, False, True, False, False],    # unseen combo: classes 0, 2
                           [False, False, False, True, False]])  # seen: class 3 only
    got = _clip_means(scoring.negative_logit_rows(logits, candidates[clip_id]), clip_id, 2)
    eps = sys.float_info.epsilon
    p_all = softmax(logits.astype(np.float64), axis=1)
    for clip in range(2):
        p = p_all[clip_id == clip][:, candidates[clip]].max(axis=1)
        want = np.mean(np.log(np.maximum(1 - p, eps)) - np.log(np.maximum(p, eps)))
        np.testing.assert_allclose(got[clip], want, rtol=1e-4, atol=1e-4)
    one_hot = _clip_means(scoring.negative_logit_rows(logits, np.eye(5, dtype=bool)[np.array([0, 3])][clip_id]),
                          clip_id, 2)
    np.testing.assert_allclose(got[1], one_hot[1], rtol=1e-6)


def _knn_reference(test, train, train_is_target, k):
    scores = np.full(test.shape[0], np.inf)
    for mask in (~train_is_target, train_is_target):
        if not mask.any():
            continue
        neighbours = min(k, int(mask.sum()))
        nn = NearestNeighbors(n_neighbors=neighbours, metric="cosine", algorithm="brute")
        distances, _ = nn.fit(train[mask]).kneighbors(test)
        scores = np.minimum(scores, distances.mean(axis=1))
    return scores


@pytest.mark.parametrize("k", [1, 3, 5])
def test_knn_matches_sklearn_with_k_above_target_count(k):
    rng = np.random.default_rng(6)
    train = rng.normal(size=(23, 6))
    train_is_target = np.zeros(23, bool)
    train_is_target[[2, 9]] = True  # 2 target clips: k=3 and k=5 use both
    test = rng.normal(size=(11, 6))
    got = scoring.knn_clip_scores(
        jnp.asarray(test, jnp.float32), jnp.asarray(train, jnp.float32), train_is_target,
        k=k, chunk_size=4,  # 11 rows in chunks of 4 exercises the remainder
    )
    np.testing.assert_allclose(got, _knn_reference(test, train, train_is_target, k), atol=1e-5)


def test_knn_k1_equals_min_cdist_and_handles_no_target():
    rng = np.random.default_rng(7)
    train, test = rng.normal(size=(9, 5)), rng.normal(size=(4, 5))
    got = scoring.knn_clip_scores(
        jnp.asarray(test, jnp.float32), jnp.asarray(train, jnp.float32), np.zeros(9, bool), k=1
    )
    np.testing.assert_allclose(got, cdist(test, train, metric="cosine").min(axis=1), atol=1e-5)



def test_block_moments_leave_out_masked_rows():
    rng = np.random.default_rng(5)
    residual = rng.normal(size=(12, 5 * BLOCK)).astype(np.float32)
    is_target = rng.random(12) < 0.5
    mask = np.arange(12) < 9   # the last 3 rows are batch padding
    masked = scoring.residual_block_moments(residual, is_target, mask, block_size=BLOCK)
    for domain, rows in ((0, ~is_target & mask), (1, is_target & mask)):
        blocks = residual[rows].astype(np.float64).reshape(-1, BLOCK)
        assert masked.count[domain] == blocks.shape[0]
        np.testing.assert_allclose(masked.mean[domain], blocks.mean(axis=0), rtol=1e-4, atol=1e-5)
        centred = blocks - blocks.mean(axis=0)
        np.testing.assert_allclose(masked.scatter[domain], centred.T @ centred, rtol=1e-4, atol=1e-3)


def test_knn_leave_one_out_matches_sklearn_without_the_row_itself():
    rng = np.random.default_rng(9)
    train = rng.normal(size=(15, 6))
    train_is_target = np.zeros(15, bool)
    train_is_target[[1, 4, 7]] = True
    got = scoring.knn_clip_scores(train, train, train_is_target, k=2, exclude=np.arange(15))
    for i in range(15):
        keep = np.arange(15) != i
        want = _knn_reference(train[i:i + 1], train[keep], train_is_target[keep], 2)
        np.testing.assert_allclose(got[i], want[0], rtol=1e-4, atol=1e-5)


def _embedding_bank(rng, per_class=(7, 6, 8), target_per_class=(2, 1, 3), dim=5):
    """Training embeddings of 3 classes in 2 section groups (classes 0, 1 -> group 0; 2 -> 1)."""
    means = rng.normal(size=(3, dim)) * 3
    rows, classes, is_target = [], [], []
    for c in range(3):
        for domain, count in ((0, per_class[c]), (1, target_per_class[c])):
            rows.append(means[c] + rng.normal(size=(count, dim)) + domain * 2.0)
            classes += [c] * count
            is_target += [bool(domain)] * count
    return np.concatenate(rows), np.array(classes), np.array(is_target), np.array([0, 0, 1])


def _cos_distance(a, b):
    return cdist(np.atleast_2d(a), np.atleast_2d(b), metric="cosine")[0]


def test_centre_distance_matches_scipy():
    rng = np.random.default_rng(10)
    embeddings, centres = rng.normal(size=(6, 4)), rng.normal(size=(5, 4))
    allowed = rng.random((6, 5)) < 0.6
    allowed[0] = False
    got = scoring.centre_distance(embeddings, centres, allowed)
    assert np.isinf(got[0])
    for i in range(1, 6):
        if allowed[i].any():
            np.testing.assert_allclose(got[i], _cos_distance(embeddings[i], centres[allowed[i]]).min(), atol=1e-12)


def test_domain_centre_distance_matches_a_loop_and_leaves_one_out():
    rng = np.random.default_rng(11)
    bank, classes, is_target, class_group = _embedding_bank(rng)
    unit = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    queries, groups = rng.normal(size=(4, 5)), np.array([0, 1, 0, 1])

    def reference(query, group, exclude=None):
        best = np.inf
        for c in np.flatnonzero(class_group == group):
            for domain in (False, True):
                members = [i for i in np.flatnonzero((classes == c) & (is_target == domain)) if i != exclude]
                if members:
                    best = min(best, _cos_distance(query, unit[members].mean(axis=0))[0])
        return best

    got = scoring.domain_centre_distance(queries, groups, bank, classes, is_target, class_group)
    np.testing.assert_allclose(got, [reference(q, g) for q, g in zip(queries, groups)], atol=1e-12)
    bank_groups = class_group[classes]
    loo = scoring.domain_centre_distance(bank, bank_groups, bank, classes, is_target, class_group,
                                         leave_one_out=True)
    np.testing.assert_allclose(loo, [reference(bank[i], bank_groups[i], exclude=i) for i in range(len(bank))],
                               atol=1e-12)


def test_embedding_mahalanobis_matches_scipy_with_ledoit_wolf():
    from sklearn.covariance import LedoitWolf
    rng = np.random.default_rng(12)
    bank, classes, is_target, class_group = _embedding_bank(rng)
    bank_groups = class_group[classes]
    queries, groups = rng.normal(size=(5, 5)), np.array([0, 1, 1, 0, 1])
    got = scoring.embedding_mahalanobis(queries, groups, bank, bank_groups, is_target)
    for query, group, score in zip(queries, groups, got):
        source = bank[(bank_groups == group) & ~is_target]
        target = bank[(bank_groups == group) & is_target]
        source_precision = LedoitWolf().fit(source).precision_
        target_precision = LedoitWolf().fit(target).precision_ if len(target) >= 2 else source_precision
        want = min(mahalanobis(query, source.mean(axis=0), source_precision) ** 2,
                   mahalanobis(query, target.mean(axis=0), target_precision) ** 2)
        np.testing.assert_allclose(score, want, rtol=1e-7)
    with pytest.raises(ValueError, match="source training clips"):
        scoring.embedding_mahalanobis(queries, groups, bank[:1], bank_groups[:1], is_target[:1])


def test_embedding_mahalanobis_is_finite_with_two_target_clips():
    # Two clips give a Ledoit-Wolf shrinkage estimate of exactly 0, i.e. their singular sample
    # covariance (the default synthetic data has 2 target training clips per section).
    rng = np.random.default_rng(14)
    bank = rng.normal(size=(12, 256))
    scores = scoring.embedding_mahalanobis(rng.normal(size=(5, 256)), np.zeros(5, int), bank,
                                           np.zeros(12, int), np.arange(12) >= 10)
    assert np.all(np.isfinite(scores)) and np.all(scores >= 0)
