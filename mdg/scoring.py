"""Anomaly-score numerics: AE MSE and Mahalanobis, negative logit, kNN, centre distances, embedding
Mahalanobis, local outlier factor.

Pure functions on clip-level model outputs (the per-clip means of per-window outputs that
:mod:`mdg.clip_outputs` computes on device) or, for the two per-window pieces, on rows
(:func:`negative_logit_rows`, :func:`residual_block_moments`). Which method uses what, and the
dispatch by name, are in :mod:`mdg.score_methods`. Larger scores mean "more anomalous" throughout.
Embedding scores fitted on training clips are computed in numpy float64 on the host (small
matrices, exact on every backend).

MSE (DCASE 2022/2023 autoencoder baseline)
    score = mean over the clip's vectors of the mean squared error over the vector's dims; with a
    fixed vector length this is the mean over all the clip's elements, as in the 2023 baseline's
    ``self.loss_fn(recon_x=..., x=data).mean()`` (networks/dcase2023t2_ae/dcase2023t2_ae.py).

Mahalanobis (the 2023 autoencoder baseline's ``--score MAHALA``)
    What the official code does (nttcslab/dcase2023_task2_baseline_ae, files
    networks/criterion/mahala.py and networks/dcase2023t2_ae/dcase2023t2_ae.py):

    * Blocks: the residual ``x - recon`` of each 640-d vector is viewed as 5 blocks of 128 values
      (``view(-1, block_size)``, ``block_size = n_mels``), one per frame; blocks from all frame
      positions are pooled into one 128-d sample set.
    * Covariance: fitted after training on the training vectors, separately for source and target
      clips (``"target" in file name``). Per loader batch, blocks are centred on that batch's mean
      (``cov_v_diff``) and ``diff.T @ diff`` is summed over batches; the sum is divided by
      (number of 640-d *vectors* - 1). If there are no target vectors, the target covariance is a
      copy of the source one.
    * Inverse: plain ``torch.inverse`` of the float32 covariance (``calc_inv_cov``), no
      regularisation.
    * Test score: ``mahalanobis(..., reduction=False)`` forms the full matrix
      ``delta @ inv_cov @ delta.T`` over all blocks of the clip (``delta = recon - x``) and the
      caller averages it over both axes (``loss_reduction_1d`` then ``loss_reduction``). The mean of
      ``delta_i' P delta_j`` over all pairs equals ``mean(delta)' P mean(delta)``: the score is the
      *squared* Mahalanobis norm of the clip's mean residual block (mean over all its vectors and
      all 5 frame positions), measured from zero (no mean is subtracted at test time), not a mean
      of per-vector distances. The clip score is ``min(source score, target score)``.

    What we do: the same blocks, the same test score (squared norm of the mean residual block under
    each domain's precision, minimum over domains) and the same target-falls-back-to-source rule.
    Two deliberate differences, neither of which changes the ranking of clips in practice:

    * The covariance is the exact pooled sample covariance of the blocks: centred on the domain's
      global block mean (``merge_block_moments`` combines batches exactly, Chan et al.'s pairwise
      update, so the between-batch spread is kept), divided by (number of blocks - 1). The official
      divisor, (vectors - 1), makes its covariance ``(5n - 1) / (n - 1)`` times ours (n vectors in
      the domain; ~5 for both domains), so its scores are ~1/5 of ours.
    * The inverse is regularised so a tiny target set (10 clips, or a rank-deficient synthetic set)
      still gives finite, stable scores: ``P = V diag(1 / (max(lambda, 0) + r)) V'`` from the
      symmetric eigendecomposition ``C = V diag(lambda) V'``, with ridge
      ``r = ridge * trace(C) / block_size`` (relative to the mean variance, so it is unit-free;
      default 1e-4). This is ``inv(C + r I)`` computed stably in float32: directions never seen in
      training get a large but finite weight (unlike a pseudo-inverse, which would ignore them).
      Along an eigendirection of variance ``lambda`` the weight is ``lambda / (lambda + r)`` of
      the unregularised one, i.e. it changes by ``ridge * mean variance / lambda`` (1e-4 for a
      direction of average variance).

Negative logit (DCASE 2022 MobileNetV2 baseline, 01_test.py of its repository)
    ``mean over patches of log(max(1 - p, eps)) - log(max(p, eps))`` with ``p`` the softmax
    probability of the clip's section (true class) and ``eps = sys.float_info.epsilon``. We compute
    ``log p`` and ``log(1 - p)`` from log-softmax / log-sum-exp of the logits, which equals the
    formula but does not lose ``1 - p`` to float32 rounding when ``p`` is close to 1. (The baseline
    used column -1 for a section unseen in training; here ``true_class`` must be a valid class.)

Centre distance (cosine-head systems, e.g. Wilkinghoff's sub-cluster AdaCos, DCASE 2021/2022)
    ``min`` over the class (or sub-cluster) centres of the clip's section of ``1 - cos(e, c)``,
    ``e`` the clip embedding, ``c`` the head's learned centres (a linear head's class weight
    vectors stand in for them).

Per-domain centre distance (DCASE 2022/2023 top systems' domain-wise scoring)
    Centres estimated from the training clips instead: the mean unit-length embedding of each
    (class, domain), source and target separately; the score is the smallest ``1 - cos`` to any
    centre of the clip's section in either domain, i.e. the minimum over domains. Training clips
    are scored leave-one-out (their own contribution removed from their centre), like kNN.

Mahalanobis on embeddings (per-domain Gaussians, minimum over domains)
    Per (section, domain): mean and Ledoit-Wolf shrunk covariance of the training embeddings
    (shrinkage makes a 1280-d covariance from tens of clips invertible; the shrinkage from
    scikit-learn's ``ledoit_wolf_shrinkage``, applied through the Woodbury identity so that no
    d x d matrix is formed; the shrinkage is floored at 1e-3 so the covariance stays invertible). Score: the smallest squared Mahalanobis distance over the two domains. A domain
    with fewer than two clips uses its own mean with the source covariance (as the AE Mahalanobis
    score's target-falls-back-to-source rule); one with no clips is left out. Training clips are
    scored in-sample.

Local outlier factor (``lof``)
    scikit-learn's ``LocalOutlierFactor`` (novelty mode, cosine metric, ``min(20, n - 1)``
    neighbours) fitted on the training clips' embeddings; score ``-score_samples`` (the LOF, ~1
    for inliers). Training clips get their own LOF from the fit (``-negative_outlier_factor_``),
    which leaves each clip out of its own neighbourhood.

kNN on embeddings (the usual domain-generalisation scorer of DCASE 2022/2023 top systems)
    Cosine distance to the k nearest training clips (mean over the k), computed separately against
    source and against target training clips, and the smaller of the two is the score. When a
    domain has fewer than k clips, all of its clips are used (``min(k, count)`` neighbours); a
    domain with no clips is ignored. Test rows are processed in chunks (``jax.lax.map`` with
    ``batch_size``), so memory is ``chunk_size x n_train`` rather than ``n_test x n_train``.
"""
import functools
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.neighbors import LocalOutlierFactor

# Index of each domain along the leading axis of BlockMoments and of the precision stack.
SOURCE, TARGET = 0, 1


def _check_rows(name: str, array: jax.Array, rows: int, ndim: int) -> None:
    if array.ndim != ndim or array.shape[0] != rows:
        raise ValueError(
            f"mdg/scoring.py: `{name}` must have {ndim} dims and {rows} rows, "
            f"got shape {array.shape}"
        )


class BlockMoments(NamedTuple):
    """Per-domain sufficient statistics of residual blocks (index 0 source, 1 target).

    Attributes:
      count: ``(2,)`` float, number of blocks.
      mean: ``(2, block_size)`` float, block mean (0 for an empty domain).
      scatter: ``(2, block_size, block_size)`` float, sum of outer products of centred blocks.
    """

    count: jax.Array
    mean: jax.Array
    scatter: jax.Array


@functools.partial(jax.jit, static_argnames="block_size")
def residual_block_moments(
    residuals: jax.Array, is_target: jax.Array, mask: jax.Array | None = None, block_size: int = 128
) -> BlockMoments:
    """Moments of the residual blocks of one batch of training vectors, per domain.

    Args:
      residuals: ``(rows, dim)`` float training vectors minus their reconstructions.
      is_target: ``(rows,)`` bool, True for vectors of target-domain clips.
      mask: ``(rows,)`` bool, False for rows to leave out (batch padding); default all rows.
      block_size: block length (static).

    Returns:
      BlockMoments of this batch; combine batches with ``merge_block_moments``.
    """
    rows, dim = residuals.shape
    _check_rows("is_target", is_target, rows, 1)
    if dim % block_size:
        raise ValueError(
            f"mdg/scoring.py: vector length {dim} is not a multiple of block_size {block_size}"
        )
    blocks_per_row = dim // block_size
    blocks = residuals.reshape(-1, block_size)
    domain = jnp.repeat(is_target.astype(jnp.int32), blocks_per_row)
    weights = jax.nn.one_hot(domain, 2, dtype=blocks.dtype)  # (n_blocks, 2)
    if mask is not None:
        _check_rows("mask", mask, rows, 1)
        weights = weights * jnp.repeat(mask, blocks_per_row)[:, None].astype(blocks.dtype)
    count = weights.sum(axis=0)
    mean = (weights.T @ blocks) / jnp.maximum(count, 1.0)[:, None]
    centred = blocks[None] - mean[:, None]  # (2, n_blocks, block_size)
    scatter = jnp.einsum("dn,dni,dnj->dij", weights.T, centred, centred)
    return BlockMoments(count, mean, scatter)


@jax.jit
def merge_block_moments(a: BlockMoments, b: BlockMoments) -> BlockMoments:
    """Exact moments of the union of two block sets (pairwise update of Chan, Golub & LeVeque)."""
    count = a.count + b.count
    safe_count = jnp.maximum(count, 1.0)
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / safe_count)[:, None]
    between = (a.count * b.count / safe_count)[:, None, None] * (
        delta[:, :, None] * delta[:, None, :]
    )
    return BlockMoments(count, mean, a.scatter + b.scatter + between)


def fit_mahalanobis(moments: BlockMoments, ridge: float = 1e-4) -> jax.Array:
    """Regularised precision matrices of the residual blocks, source and target.

    Runs eagerly (once per model) so it can check the data; the work is jnp on device.

    Args:
      moments: BlockMoments of all training vectors (``merge_block_moments`` over batches).
      ridge: ridge relative to the mean variance, see the module docstring.

    Returns:
      ``(2, block_size, block_size)`` float: precision for source (0) and target (1). With fewer
      than 2 target blocks the target precision is the source one, as in the official baseline.

    Raises:
      ValueError: fewer than 2 source blocks, or a negative ridge.
    """
    if ridge < 0:
        raise ValueError(f"mdg/scoring.py: ridge must be >= 0, got {ridge}")
    if float(moments.count[SOURCE]) < 2:
        raise ValueError(
            "mdg/scoring.py: fit_mahalanobis needs residuals of at least one source vector, "
            f"got {float(moments.count[SOURCE]):g} source blocks"
        )
    return _precisions(moments, ridge)


@jax.jit
def _precisions(moments: BlockMoments, ridge: float) -> jax.Array:
    covariance = moments.scatter / jnp.maximum(moments.count - 1.0, 1.0)[:, None, None]
    eigenvalues, eigenvectors = jnp.linalg.eigh(covariance)
    eigenvalues = jnp.maximum(eigenvalues, 0.0)  # round-off can make null directions negative
    mean_variance = jnp.mean(eigenvalues, axis=-1, keepdims=True)
    floor = jnp.finfo(covariance.dtype).eps  # keeps r > 0 when every residual is identical
    shrunk = eigenvalues + ridge * jnp.maximum(mean_variance, floor)
    precision = jnp.einsum("dik,dk,djk->dij", eigenvectors, 1.0 / shrunk, eigenvectors)
    has_target = moments.count[TARGET] >= 2
    return jnp.where(has_target, precision, precision[SOURCE][None])


def mean_residual_blocks(mean_residual: jax.Array, block_size: int) -> jax.Array:
    """Each clip's mean residual block from its mean residual vector.

    Args:
      mean_residual: ``(clips, window * block_size)`` per-clip mean of the residual vectors.
    Returns:
      ``(clips, block_size)``: the vector cut into blocks (frames) and averaged, i.e. the mean of
      all the clip's residual blocks, the input of :func:`mahalanobis_block_scores`.
    """
    mean_residual = jnp.asarray(mean_residual)
    return mean_residual.reshape(len(mean_residual), -1, block_size).mean(axis=1)


@jax.jit
def mahalanobis_block_scores(mean_blocks: jax.Array, precisions: jax.Array) -> jax.Array:
    """``min_d m' P_d m`` for each clip's mean residual block ``m``.

    Args:
      mean_blocks: ``(num_clips, block_size)`` float, e.g. from ``residual_block_means``.
      precisions: ``(2, block_size, block_size)`` from ``fit_mahalanobis``.

    Returns:
      ``(num_clips,)`` float.
    """
    per_domain = jnp.einsum("ci,dij,cj->dc", mean_blocks, precisions, mean_blocks)
    return jnp.min(per_domain, axis=0)


def negative_logit_rows(
    logits: jax.Array, candidates: jax.Array, eps: float = sys.float_info.epsilon
) -> jax.Array:
    """Per-window baseline score ``log(max(1-p, eps)) - log(max(p, eps))``.

    Args:
      logits: ``(rows, num_classes)`` float, pre-softmax outputs per patch.
      candidates: ``(rows, num_classes)`` bool, the classes the window's clip may belong to: one
        True (its class) for a clip whose class was seen in training, else every class of its
        section (:func:`mdg.data.targets.true_class_mask`); ``p`` is the largest softmax
        probability among them, which for a single candidate is the baseline's ``p``.
      eps: probability floor; the baseline's ``sys.float_info.epsilon``.

    Returns:
      ``(rows,)`` float, in nats.
    """
    log_total = jax.nn.logsumexp(logits, axis=1)
    best = jnp.argmax(jnp.where(candidates, logits, -jnp.inf), axis=1)
    chosen = jax.nn.one_hot(best, logits.shape[1], dtype=bool)
    log_p = jnp.take_along_axis(logits, best[:, None], axis=1)[:, 0] - log_total
    log_rest = jax.nn.logsumexp(logits, axis=1, where=~chosen) - log_total  # log(1 - p)
    log_eps = jnp.log(jnp.asarray(eps, logits.dtype))
    return jnp.maximum(log_rest, log_eps) - jnp.maximum(log_p, log_eps)


def _unit_rows(x: jax.Array) -> jax.Array:
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x / jnp.maximum(norm, jnp.finfo(x.dtype).tiny)


@functools.partial(jax.jit, static_argnames=("k", "chunk_size"))
def knn_clip_scores(
    test_embeddings: jax.Array,
    train_embeddings: jax.Array,
    train_is_target: jax.Array,
    k: int = 1,
    chunk_size: int = 1024,
    exclude: jax.Array | None = None,
) -> jax.Array:
    """Domain-wise kNN cosine distance: min over {source, target} of the mean distance to k nearest.

    Args:
      test_embeddings: ``(n_test, d)`` float per-clip embeddings (clip means of the patch embeddings).
      train_embeddings: ``(n_train, d)`` float per-clip training embeddings.
      train_is_target: ``(n_train,)`` bool, True for target-domain training clips.
      k: neighbours per domain (static); a domain with fewer clips uses all of them.
      chunk_size: test rows per matmul (static); bounds memory to ``chunk_size x n_train``.
      exclude: optional ``(n_test,)`` int, a training row each test row must not use (-1: none);
        scoring the training clips themselves leave-one-out passes ``arange(n_train)``.

    Returns:
      ``(n_test,)`` float cosine distance ``1 - cos`` in [0, 2]. An all-zero embedding has
      distance 1 to everything (scipy would give NaN).
    """
    if test_embeddings.ndim != 2 or train_embeddings.ndim != 2 or (
        test_embeddings.shape[1] != train_embeddings.shape[1]
    ):
        raise ValueError(
            "mdg/scoring.py: embeddings must be (n_test, d) and (n_train, d), got "
            f"{test_embeddings.shape} and {train_embeddings.shape}"
        )
    n_train = train_embeddings.shape[0]
    _check_rows("train_is_target", train_is_target, n_train, 1)
    if n_train == 0 or k < 1:
        raise ValueError(f"mdg/scoring.py: need n_train >= 1 and k >= 1, got {n_train} and {k}")
    if exclude is None:
        exclude = jnp.full((test_embeddings.shape[0],), -1, jnp.int32)
    _check_rows("exclude", exclude, test_embeddings.shape[0], 1)
    top = min(k, n_train)
    train_unit = _unit_rows(train_embeddings)
    in_domain = jnp.stack([~train_is_target, train_is_target])  # (2, n_train)

    def score_row(row: tuple[jax.Array, jax.Array]) -> jax.Array:
        test_row, excluded = row
        usable = in_domain & (jnp.arange(n_train) != excluded)[None]
        neighbours = jnp.minimum(k, usable.sum(axis=1))  # (2,) min(k, count)
        used = jnp.arange(top)[None, :] < neighbours[:, None]  # (2, top)
        distance = 1.0 - train_unit @ _unit_rows(test_row)  # (n_train,)
        masked = jnp.where(usable, distance[None], jnp.inf)
        nearest = -jax.lax.top_k(-masked, top)[0]  # (2, top), ascending
        total = jnp.sum(jnp.where(used, nearest, 0.0), axis=1)
        per_domain = jnp.where(neighbours > 0, total / jnp.maximum(neighbours, 1), jnp.inf)
        return jnp.min(per_domain)

    return jax.lax.map(score_row, (test_embeddings, exclude), batch_size=chunk_size)


def _unit_rows64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), np.finfo(np.float64).tiny)


def centre_distance(embeddings: np.ndarray, centres: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Smallest cosine distance of each clip embedding to the centres it may be compared with.

    Args:
      embeddings: ``(clips, d)``.
      centres: ``(centres, d)`` e.g. a cosine head's class / sub-cluster centres.
      allowed: ``(clips, centres)`` bool, True for the centres of the clip's section.
    Returns:
      ``(clips,)`` float64 ``min 1 - cos`` in [0, 2]; ``inf`` for a clip with no allowed centre.
    """
    distance = 1.0 - _unit_rows64(embeddings) @ _unit_rows64(centres).T
    return np.min(np.where(allowed, distance, np.inf), axis=1)


def domain_centre_distance(embeddings: np.ndarray, groups: np.ndarray, bank: np.ndarray,
                           bank_class: np.ndarray, bank_is_target: np.ndarray,
                           class_group: np.ndarray, leave_one_out: bool = False) -> np.ndarray:
    """Per-domain class-centre cosine distance, minimum over domains (module docstring).

    Args:
      embeddings: ``(clips, d)`` clips to score.
      groups: ``(clips,)`` int section group of each clip.
      bank: ``(n, d)`` training clip embeddings; bank_class ``(n,)`` int their class;
        bank_is_target ``(n,)`` bool.
      class_group: ``(classes,)`` int section group of each class.
      leave_one_out: ``embeddings`` are the bank itself (same rows): each row's own embedding is
        removed from its centre.
    Returns:
      ``(clips,)`` float64 in [0, 2]; ``inf`` where no centre of the clip's section has a clip.
    """
    num_classes = len(class_group)
    unit = _unit_rows64(bank)
    column = np.asarray(bank_class) * 2 + np.asarray(bank_is_target, np.int64)  # (class, domain)
    sums = np.zeros((2 * num_classes, unit.shape[1]))
    np.add.at(sums, column, unit)
    counts = np.bincount(column, minlength=2 * num_classes)
    queries = _unit_rows64(embeddings)
    distance = 1.0 - queries @ _unit_rows64(sums).T
    distance[:, counts == 0] = np.inf
    if leave_one_out:
        rows = np.arange(len(queries))
        own = sums[column] - unit
        own_distance = 1.0 - np.sum(queries * _unit_rows64(own), axis=1)
        distance[rows, column] = np.where(counts[column] > 1, own_distance, np.inf)
    in_section = np.repeat(np.asarray(class_group), 2)[None, :] == np.asarray(groups)[:, None]
    return np.min(np.where(in_section, distance, np.inf), axis=1)


MIN_SHRINKAGE = 1e-3   # floor of the Ledoit-Wolf shrinkage, so the covariance stays invertible


def _shrunk_gaussian(clips: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Mean and Ledoit-Wolf covariance ``c I + b X'X`` of ``clips`` (n, d), kept in factored form:
    (mean, centred clips X, c, b). Nothing d x d is formed (d ~ 1280 >> n)."""
    mean = clips.mean(axis=0)
    centred = clips - mean
    n, d = centred.shape
    # With fewer clips than dimensions the sample covariance is singular: a shrinkage estimate of
    # (almost) zero would leave it so, hence the floor.
    shrinkage = max(float(ledoit_wolf_shrinkage(centred, assume_centered=True)), MIN_SHRINKAGE)
    mean_variance = max(float(np.sum(centred * centred)) / (n * d), np.finfo(np.float64).tiny)
    return mean, centred, shrinkage * mean_variance, (1.0 - shrinkage) / n


def _squared_mahalanobis(points: np.ndarray, gaussian) -> np.ndarray:
    """``(x - mean)' C^-1 (x - mean)`` per row, by the Woodbury identity
    ``(c I + b X'X)^-1 = (I - X' (c/b I + X X')^-1 X) / c``: O(n^2 d) instead of O(d^3)."""
    mean, centred, c, b = gaussian
    delta = points - mean
    quadratic = np.sum(delta * delta, axis=1)
    if b > 0:
        projected = delta @ centred.T                                    # (points, n)
        inner = (c / b) * np.eye(len(centred)) + centred @ centred.T
        quadratic = quadratic - np.sum(projected * np.linalg.solve(inner, projected.T).T, axis=1)
    return quadratic / c


def embedding_mahalanobis(embeddings: np.ndarray, groups: np.ndarray, bank: np.ndarray,
                          bank_group: np.ndarray, bank_is_target: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance to the section's per-domain Gaussians, minimum over domains.

    Args:
      embeddings: ``(clips, d)``; groups ``(clips,)`` their section groups.
      bank: ``(n, d)`` training embeddings; bank_group ``(n,)``; bank_is_target ``(n,)`` bool.
    Returns:
      ``(clips,)`` float64.
    Raises:
      ValueError: a clip's section has fewer than two source training clips.
    """
    embeddings, bank = np.asarray(embeddings, np.float64), np.asarray(bank, np.float64)
    scores = np.full(len(embeddings), np.inf)
    for group in np.unique(groups):
        source = bank[(bank_group == group) & ~bank_is_target]
        target = bank[(bank_group == group) & bank_is_target]
        if len(source) < 2:
            raise ValueError(f"Mahalanobis on embeddings needs >= 2 source training clips per section; "
                             f"section group {group} has {len(source)}")
        rows = groups == group
        source_fit = _shrunk_gaussian(source)
        fits = [source_fit]
        if len(target) >= 2:
            fits.append(_shrunk_gaussian(target))
        elif len(target) == 1:   # the target mean with the source covariance
            fits.append((target[0],) + source_fit[1:])
        for gaussian in fits:
            scores[rows] = np.minimum(scores[rows], _squared_mahalanobis(embeddings[rows], gaussian))
    return scores


def lof_scores(test_embeddings: np.ndarray, train_embeddings: np.ndarray,
               max_neighbours: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Local outlier factor on embeddings, fitted on the training clips (module docstring).

    Returns:
      ``(train scores (n_train,), test scores (n_test,))`` float64, ~1 for inliers.
    """
    neighbours = min(max_neighbours, len(train_embeddings) - 1)
    if neighbours < 1:
        raise ValueError(f"the local outlier factor needs >= 2 training clips, got {len(train_embeddings)}")
    lof = LocalOutlierFactor(n_neighbors=neighbours, novelty=True, metric="cosine")
    lof.fit(np.asarray(train_embeddings, np.float64))
    return (-lof.negative_outlier_factor_.astype(np.float64),
            -lof.score_samples(np.asarray(test_embeddings, np.float64)).astype(np.float64))
