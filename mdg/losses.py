"""Training losses: reconstruction, softmax cross-entropy, angular-margin logits, mixup.

The margin functions share one convention: ``embeddings`` ``(batch, d)`` and class-centre
``weights`` ``(num_centres, d)``; both are L2-normalised here (idempotent for inputs that already
are), so logits are scaled cosines. ``labels`` are either int class indices ``(batch,)`` or a float
target distribution ``(batch, num_classes)`` such as mixup's mixed one-hot labels; one-hot floats
give exactly the integer-label result. Feed the returned logits to ``softmax_cross_entropy`` with
the same labels.

ArcFace (Deng et al., CVPR 2019)
    The true-class logit is ``s cos(theta + m)``. ``cos(theta + m)`` stops decreasing once
    ``theta + m > pi``, which would reward moving away from the class centre, so (as in the
    authors' insightface code) for ``theta > pi - m`` (``cos theta <= cos(pi - m)``) it is replaced
    by the linear continuation ``cos theta - m sin m``. ``easy_margin=True`` instead applies the
    margin only where ``cos theta > 0``. With soft labels the margin of each class is weighted by
    its target probability (an extension; identical to ArcFace for one-hot labels).

AdaCos (Zhang et al., CVPR 2019), dynamic version
    Logits ``s_t cos theta`` with ``s_t = log(B_avg) / cos(min(pi/4, theta_med))``, where
    ``B_avg = mean_i sum_{k != y_i} exp(s_{t-1} cos theta_ik)`` and ``theta_med`` is the median over
    the batch of the true-class angle ``theta_{i, y_i}``; the new scale is used for this batch (as
    in the paper's algorithm). The caller carries the scale between steps, starting from
    ``adacos_initial_scale(num_classes) = sqrt(2) log(C - 1)``. The scale is a non-differentiable
    statistic (stop-gradient). With soft labels, ``B_avg`` weights class k by ``1 - y_ik`` and the
    "true-class" angle is ``sum_k y_ik theta_ik``.

Sub-cluster AdaCos (Wilkinghoff, IJCNN 2021; DCASE 2021/2022 top systems)
    Each class has ``K`` sub-cluster centres; centre row ``c * K + k`` is sub-cluster k of class c.
    Pooling follows the author's layer (wilkinghoff/sub-cluster-AdaCos, subcluster_adacos.py):
    softmax over all ``C K`` scaled cosines, then the probabilities of a class's sub-clusters are
    summed. We return the equivalent class logits ``logsumexp_k(s cos theta_{c,k})`` (their softmax
    is that sum), so the usual cross-entropy applies. The dynamic scale follows the same layer:
    ``B_avg`` sums over *all* centres, the true class included (mixup makes "the other classes"
    ill-defined), and ``theta_med`` is the batch median of the label-weighted class angle. For the
    class angle we use the mean of the angles to the class's K sub-clusters; the layer sums them
    (K times our value, times the number of mixed classes under mixup), which for K > 1 pins
    ``min(pi/4, theta_med)`` at pi/4. With K = 1 and one-hot labels the two agree. The layer's
    ``+ 1e-7`` on the scale is omitted.

Mixup (Zhang et al., ICLR 2018)
    One ``lambda ~ Beta(alpha, alpha)`` per batch and a random pairing (permutation) of the batch,
    as in the paper: ``x' = lambda x + (1 - lambda) x[perm]``, same for labels.
"""
import math

import jax
import jax.numpy as jnp
import optax


def reconstruction_mse(inputs: jax.Array, reconstructions: jax.Array) -> jax.Array:
    """Per-row mean squared error over all non-batch dims (Keras ``mean_squared_error``).

    Args:
      inputs, reconstructions: float arrays of the same shape, e.g. ``(batch, 640)`` in dB.

    Returns:
      ``(batch,)`` float, in squared input units.
    """
    if inputs.shape != reconstructions.shape:
        raise ValueError(
            f"mdg/losses.py: inputs {inputs.shape} and reconstructions "
            f"{reconstructions.shape} differ"
        )
    return jnp.mean(jnp.square(inputs - reconstructions).reshape(inputs.shape[0], -1), axis=1)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-row softmax cross-entropy, in nats.

    Args:
      logits: ``(batch, num_classes)`` float.
      labels: ``(batch,)`` int class indices, or ``(batch, num_classes)`` float target
        distributions (e.g. from ``mixup``).

    Returns:
      ``(batch,)`` float.
    """
    if labels.ndim == 1:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return optax.softmax_cross_entropy(logits, labels)


def _target_distribution(labels: jax.Array, num_classes: int, dtype) -> jax.Array:
    """Int ``(batch,)`` or float ``(batch, num_classes)`` labels -> ``(batch, num_classes)``."""
    if labels.ndim == 1:
        return jax.nn.one_hot(labels, num_classes, dtype=dtype)
    if labels.ndim != 2 or labels.shape[1] != num_classes:
        raise ValueError(
            f"mdg/losses.py: labels must be (batch,) ints or (batch, {num_classes}) floats, "
            f"got shape {labels.shape}"
        )
    return labels.astype(dtype)


def cosines(embeddings: jax.Array, weights: jax.Array) -> jax.Array:
    """Cosines of embeddings ``(batch, d)`` and centres ``(centres, d)``: ``(batch, centres)``."""
    if embeddings.ndim != 2 or weights.ndim != 2 or embeddings.shape[1] != weights.shape[1]:
        raise ValueError(
            "mdg/losses.py: embeddings must be (batch, d) and weights (num_centres, d), got "
            f"{embeddings.shape} and {weights.shape}"
        )

    def unit(x: jax.Array) -> jax.Array:
        # rsqrt of a floored squared norm: finite value and gradient even for a zero row.
        return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=1, keepdims=True), 1e-12))

    return jnp.clip(unit(embeddings) @ unit(weights).T, -1.0, 1.0)


def arcface_logits(
    embeddings: jax.Array,
    weights: jax.Array,
    labels: jax.Array,
    scale: float = 30.0,
    margin: float = 0.5,
    easy_margin: bool = False,
) -> jax.Array:
    """ArcFace logits ``s cos(theta + m)`` for the true class, ``s cos theta`` for the others.

    Args:
      embeddings: ``(batch, d)`` float.
      weights: ``(num_classes, d)`` float class centres.
      labels: ``(batch,)`` int or ``(batch, num_classes)`` float.
      scale: ``s``; margin: ``m`` in radians; easy_margin: see the module docstring.

    Returns:
      ``(batch, num_classes)`` float logits.
    """
    cos = cosines(embeddings, weights)
    targets = _target_distribution(labels, weights.shape[0], cos.dtype)
    # Floor 1 - cos^2 so the sqrt has a finite gradient at cos = +-1.
    sin = jnp.sqrt(jnp.clip(1.0 - cos * cos, 1e-12, 1.0))
    with_margin = cos * math.cos(margin) - sin * math.sin(margin)
    if easy_margin:
        with_margin = jnp.where(cos > 0.0, with_margin, cos)
    else:
        with_margin = jnp.where(
            cos > math.cos(math.pi - margin), with_margin, cos - margin * math.sin(margin)
        )
    return scale * (cos + targets * (with_margin - cos))


def adacos_initial_scale(num_centres: int) -> float:
    """AdaCos fixed scale ``sqrt(2) log(num_centres - 1)`` (for sub-cluster AdaCos, ``C K``)."""
    if num_centres < 3:
        raise ValueError(
            f"mdg/losses.py: AdaCos needs >= 3 centres (sqrt(2) log(C - 1) would be <= 0 and the "
            f"dynamic scale would stay there), got {num_centres}"
        )
    return math.sqrt(2.0) * math.log(num_centres - 1)


def _dynamic_scale(
    cos: jax.Array, b_weights: jax.Array, theta: jax.Array, scale: jax.Array
) -> jax.Array:
    """``log(B_avg) / cos(min(pi/4, median theta))``, ``B_avg = mean_i sum_k w_ik exp(s cos_ik)``.

    Args:
      cos: ``(batch, centres)`` cosines, already stop-gradient (the scale is a statistic).
      b_weights: ``(batch, centres)`` which terms enter ``B_avg``.
      theta: ``(batch,)`` each sample's angle to its own class, radians.
      scale: previous scale ``s_{t-1}``.
    """
    scale = jax.lax.stop_gradient(scale)
    # log(B_avg) via logsumexp: exp(s cos) overflows float32 once s exceeds ~88.
    log_b_avg = jax.nn.logsumexp(scale * cos, b=b_weights) - jnp.log(cos.shape[0])
    return log_b_avg / jnp.cos(jnp.minimum(jnp.pi / 4, jnp.median(theta)))


def adacos_logits(
    embeddings: jax.Array, weights: jax.Array, labels: jax.Array, scale: jax.Array | float
) -> tuple[jax.Array, jax.Array]:
    """Dynamic AdaCos: logits with the scale updated from this batch.

    Args:
      embeddings: ``(batch, d)`` float.
      weights: ``(num_classes, d)`` float class centres.
      labels: ``(batch,)`` int or ``(batch, num_classes)`` float.
      scale: previous scale (start from ``adacos_initial_scale(num_classes)``).

    Returns:
      ``(logits (batch, num_classes), new_scale ())``; pass ``new_scale`` to the next step.
    """
    cos = cosines(embeddings, weights)
    targets = _target_distribution(labels, weights.shape[0], cos.dtype)
    # arccos has an infinite derivative at +-1: keep it off the gradient path entirely.
    fixed_cos = jax.lax.stop_gradient(cos)
    theta = jnp.sum(targets * jnp.arccos(fixed_cos), axis=1)
    new_scale = _dynamic_scale(fixed_cos, 1.0 - targets, theta, scale)
    return new_scale * cos, new_scale


def subcluster_adacos_logits(
    embeddings: jax.Array,
    weights: jax.Array,
    labels: jax.Array,
    num_subclusters: int,
    scale: jax.Array | float,
) -> tuple[jax.Array, jax.Array]:
    """Sub-cluster AdaCos: class logits pooled over sub-clusters, dynamic scale.

    Args:
      embeddings: ``(batch, d)`` float.
      weights: ``(num_classes * num_subclusters, d)`` float; row ``c * K + k`` is sub-cluster k of
        class c.
      labels: ``(batch,)`` int or ``(batch, num_classes)`` float.
      num_subclusters: ``K`` (static).
      scale: previous scale (start from ``adacos_initial_scale(num_classes * K)``).

    Returns:
      ``(logits (batch, num_classes), new_scale ())``; ``softmax(logits)`` is the summed
      sub-cluster probability of each class.
    """
    if num_subclusters < 1 or weights.shape[0] % num_subclusters:
        raise ValueError(
            f"mdg/losses.py: {weights.shape[0]} centres do not split into groups of "
            f"num_subclusters={num_subclusters}"
        )
    num_classes = weights.shape[0] // num_subclusters
    cos = cosines(embeddings, weights)
    targets = _target_distribution(labels, num_classes, cos.dtype)
    fixed_cos = jax.lax.stop_gradient(cos)
    angles = jnp.arccos(fixed_cos).reshape(-1, num_classes, num_subclusters)
    theta = jnp.sum(targets * jnp.mean(angles, axis=2), axis=1)
    new_scale = _dynamic_scale(fixed_cos, jnp.ones_like(cos), theta, scale)
    scaled = (new_scale * cos).reshape(-1, num_classes, num_subclusters)
    return jax.nn.logsumexp(scaled, axis=2), new_scale


def mixup(
    key: jax.Array, x: jax.Array, y_onehot: jax.Array, alpha: float
) -> tuple[jax.Array, jax.Array]:
    """Mixup with one ``lambda ~ Beta(alpha, alpha)`` per batch and a random pairing.

    Args:
      key: PRNG key; the same key gives the same mix.
      x: ``(batch, ...)`` float inputs.
      y_onehot: ``(batch, num_classes)`` float one-hot (or already soft) labels.
      alpha: Beta concentration, > 0.

    Returns:
      ``(x_mix, y_mix)`` with the shapes and dtypes of ``x`` and ``y_onehot``.
    """
    if alpha <= 0:
        raise ValueError(f"mdg/losses.py: mixup alpha must be > 0, got {alpha}")
    if x.shape[0] != y_onehot.shape[0]:
        raise ValueError(
            f"mdg/losses.py: x has {x.shape[0]} rows but y_onehot has {y_onehot.shape[0]}"
        )
    lambda_key, pair_key = jax.random.split(key)
    lam = jax.random.beta(lambda_key, alpha, alpha)
    partner = jax.random.permutation(pair_key, x.shape[0])

    def mix(a: jax.Array) -> jax.Array:
        return (lam * a + (1.0 - lam) * a[partner]).astype(a.dtype)

    return mix(x), mix(y_onehot)
