"""Per-clip anomaly scores from model outputs: AE MSE, AE Mahalanobis, negative logit, kNN.

Every scorer takes a flat batch of per-vector (autoencoder) or per-patch (MobileNetV2) model outputs
plus an int ``clip_id`` per row in ``[0, num_clips)``, and reduces per clip with segment sums, so a
whole test set is scored in one jitted call (``num_clips`` is static). Larger scores mean "more
anomalous" throughout.

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

# Index of each domain along the leading axis of BlockMoments and of the precision stack.
SOURCE, TARGET = 0, 1


def _check_rows(name: str, array: jax.Array, rows: int, ndim: int) -> None:
    if array.ndim != ndim or array.shape[0] != rows:
        raise ValueError(
            f"mdg/scoring.py: `{name}` must have {ndim} dims and {rows} rows, "
            f"got shape {array.shape}"
        )


def _check_pair(inputs: jax.Array, reconstructions: jax.Array, clip_id: jax.Array | None) -> None:
    if inputs.ndim != 2 or inputs.shape != reconstructions.shape:
        raise ValueError(
            "mdg/scoring.py: `inputs` and `reconstructions` must both be (rows, dim), got "
            f"{inputs.shape} and {reconstructions.shape}"
        )
    if clip_id is not None:
        _check_rows("clip_id", clip_id, inputs.shape[0], 1)


def _residual_blocks(inputs: jax.Array, reconstructions: jax.Array, block_size: int) -> jax.Array:
    """``(rows, dim)`` pair -> residual blocks ``(rows, dim // block_size, block_size)``."""
    dim = inputs.shape[1]
    if dim % block_size:
        raise ValueError(
            f"mdg/scoring.py: vector length {dim} is not a multiple of block_size {block_size}"
        )
    residual = inputs - reconstructions
    return residual.reshape(residual.shape[0], dim // block_size, block_size)


@functools.partial(jax.jit, static_argnames="num_clips")
def segment_mean(values: jax.Array, clip_id: jax.Array, num_clips: int) -> jax.Array:
    """Mean of the rows of each clip.

    Args:
      values: ``(rows, ...)`` float, e.g. per-patch embeddings ``(rows, d)``.
      clip_id: ``(rows,)`` int in ``[0, num_clips)``.
      num_clips: number of clips (static).

    Returns:
      ``(num_clips, ...)``; a clip with no rows gets NaN (0 / 0), so a gap shows up loudly.
    """
    _check_rows("clip_id", clip_id, values.shape[0], 1)
    sums = jax.ops.segment_sum(values, clip_id, num_segments=num_clips)
    counts = jax.ops.segment_sum(jnp.ones_like(clip_id, dtype=values.dtype), clip_id, num_clips)
    return sums / counts.reshape((num_clips,) + (1,) * (values.ndim - 1))


@functools.partial(jax.jit, static_argnames="num_clips")
def mse_clip_scores(
    inputs: jax.Array, reconstructions: jax.Array, clip_id: jax.Array, num_clips: int
) -> jax.Array:
    """AE baseline score: per clip, mean over its vectors of the mean squared error over dims.

    Args:
      inputs, reconstructions: ``(rows, dim)`` float (log-Mel dB vectors and their reconstructions).
      clip_id: ``(rows,)`` int in ``[0, num_clips)``.
      num_clips: number of clips (static).

    Returns:
      ``(num_clips,)`` float, in dB^2.
    """
    _check_pair(inputs, reconstructions, clip_id)
    per_vector = jnp.mean(jnp.square(inputs - reconstructions), axis=1)
    return segment_mean(per_vector, clip_id, num_clips)


@functools.partial(jax.jit, static_argnames=("num_clips", "block_size"))
def residual_block_means(
    inputs: jax.Array,
    reconstructions: jax.Array,
    clip_id: jax.Array,
    num_clips: int,
    block_size: int = 128,
) -> jax.Array:
    """Per clip, the mean of its residual blocks ``inputs - reconstructions`` (the MAHALA input).

    Each ``dim``-long residual is split into ``dim // block_size`` consecutive blocks (one per
    frame for frame-major AE vectors) and the mean is over all blocks of all the clip's vectors.

    Args:
      inputs, reconstructions: ``(rows, dim)`` float, ``dim`` a multiple of ``block_size``.
      clip_id: ``(rows,)`` int in ``[0, num_clips)``.
      num_clips: number of clips (static).
      block_size: block length (static; the number of mel bands, 128 in the baseline).

    Returns:
      ``(num_clips, block_size)`` float.
    """
    _check_pair(inputs, reconstructions, clip_id)
    blocks = _residual_blocks(inputs, reconstructions, block_size)
    return segment_mean(jnp.mean(blocks, axis=1), clip_id, num_clips)


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


@functools.partial(jax.jit, static_argnames="num_clips")
def mahalanobis_clip_scores(
    inputs: jax.Array,
    reconstructions: jax.Array,
    clip_id: jax.Array,
    num_clips: int,
    precisions: jax.Array,
) -> jax.Array:
    """Official MAHALA score: min over domains of the squared Mahalanobis norm of the mean residual.

    Args:
      inputs, reconstructions: ``(rows, dim)`` float test vectors and reconstructions.
      clip_id: ``(rows,)`` int in ``[0, num_clips)``.
      num_clips: number of clips (static).
      precisions: ``(2, block_size, block_size)`` from ``fit_mahalanobis``.

    Returns:
      ``(num_clips,)`` float, ``min_d m' P_d m`` with ``m`` the clip's mean residual block.
    """
    if precisions.ndim != 3 or precisions.shape[:2] != (2, precisions.shape[2]):
        raise ValueError(
            f"mdg/scoring.py: `precisions` must be (2, block, block), got {precisions.shape}"
        )
    means = residual_block_means(
        inputs, reconstructions, clip_id, num_clips, block_size=precisions.shape[1]
    )
    return mahalanobis_block_scores(means, precisions)


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


@functools.partial(jax.jit, static_argnames=("num_clips", "eps"))
def negative_logit_clip_scores(
    logits: jax.Array,
    clip_id: jax.Array,
    true_class: jax.Array,
    num_clips: int,
    eps: float = sys.float_info.epsilon,
) -> jax.Array:
    """MobileNetV2 baseline score: per clip, mean of ``log(max(1-p, eps)) - log(max(p, eps))``.

    Args:
      logits: ``(rows, num_classes)`` float, pre-softmax outputs per patch.
      clip_id: ``(rows,)`` int in ``[0, num_clips)``.
      true_class: ``(num_clips,)`` int, the clip's class (section) index, or ``(num_clips,
        num_classes)`` bool candidate classes (see :func:`negative_logit_rows`).
      num_clips: number of clips (static).
      eps: probability floor (static); the baseline's ``sys.float_info.epsilon``.

    Returns:
      ``(num_clips,)`` float, in nats.
    """
    if logits.ndim != 2:
        raise ValueError(f"mdg/scoring.py: `logits` must be (rows, classes), got {logits.shape}")
    _check_rows("clip_id", clip_id, logits.shape[0], 1)
    if true_class.ndim == 1:
        _check_rows("true_class", true_class, num_clips, 1)
        true_class = jax.nn.one_hot(true_class, logits.shape[1], dtype=bool)
    if true_class.shape != (num_clips, logits.shape[1]):
        raise ValueError(f"mdg/scoring.py: `true_class` mask must be (num_clips, classes), got {true_class.shape}")
    return segment_mean(negative_logit_rows(logits, true_class[clip_id], eps), clip_id, num_clips)


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
      test_embeddings: ``(n_test, d)`` float per-clip embeddings (e.g. ``segment_mean`` of patches).
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
