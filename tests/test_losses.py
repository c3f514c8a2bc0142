"""mdg.losses against float64 numpy derivations of the published formulas."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp, softmax

from mdg import losses


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _cosines64(embeddings, weights) -> np.ndarray:
    return np.clip(_unit(np.float64(embeddings)) @ _unit(np.float64(weights)).T, -1, 1)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(5, 8)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 4, 1, 2, 0, 3])
    embeddings = rng.normal(size=(labels.size, 8))
    embeddings[:3] += 3 * weights[labels[:3]]  # a few near their class centre (small angles)
    embeddings[3] = -weights[labels[3]] + 0.05 * rng.normal(size=8)  # theta near pi
    embeddings[4] = -weights[labels[4]] + 0.4 * rng.normal(size=8)  # theta > pi - m, < pi
    return embeddings.astype(np.float32), weights, labels


def test_reconstruction_mse_matches_numpy():
    rng = np.random.default_rng(1)
    x, r = rng.normal(size=(2, 6, 40)).astype(np.float32)
    np.testing.assert_allclose(
        losses.reconstruction_mse(x, r), np.mean((np.float64(x) - r) ** 2, axis=1), rtol=1e-6
    )
    with pytest.raises(ValueError, match="losses.py"):
        losses.reconstruction_mse(x, r[:, :-1])


def test_softmax_cross_entropy_integer_and_soft_labels():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=4, size=(7, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=7)
    log_p = np.log(softmax(np.float64(logits), axis=1))
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, labels), -log_p[np.arange(7), labels], rtol=1e-5
    )
    soft = rng.dirichlet(np.ones(5), size=7)
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, soft.astype(np.float32)),
        -(soft * log_p).sum(axis=1), rtol=1e-5,
    )


def _arcface_reference(embeddings, weights, labels, scale, margin, easy_margin):
    cos = _cosines64(embeddings, weights)
    logits = scale * cos
    for i, label in enumerate(labels):
        theta = np.arccos(cos[i, label])
        if easy_margin:
            target = np.cos(theta + margin) if theta < np.pi / 2 else np.cos(theta)
        elif theta + margin < np.pi:
            target = np.cos(theta + margin)
        else:  # past the monotone range: linear continuation
            target = np.cos(theta) - margin * np.sin(margin)
        logits[i, label] = scale * target
    return logits


@pytest.mark.parametrize("easy_margin", [False, True])
def test_arcface_logits_match_angle_derivation(batch, easy_margin):
    embeddings, weights, labels = batch
    scale, margin = 30.0, 0.5
    cos = _cosines64(embeddings, weights)[np.arange(labels.size), labels]
    assert np.sum(np.arccos(cos) > np.pi - margin) >= 2  # the threshold branch is exercised
    got = losses.arcface_logits(embeddings, weights, labels, scale, margin, easy_margin)
    want = _arcface_reference(embeddings, weights, labels, scale, margin, easy_margin)
    np.testing.assert_allclose(got, want, atol=2e-4 * scale)
    one_hot = np.eye(5, dtype=np.float32)[labels]
    np.testing.assert_allclose(
        losses.arcface_logits(embeddings, weights, one_hot, scale, margin, easy_margin), got,
        atol=1e-5,
    )


def test_adacos_scale_update_matches_paper(batch):
    embeddings, weights, labels = batch
    scale = losses.adacos_initial_scale(5)
    assert scale == pytest.approx(math.sqrt(2) * math.log(4))
    logits, new_scale = losses.adacos_logits(embeddings, weights, labels, scale)
    cos = _cosines64(embeddings, weights)
    others = np.ones_like(cos, bool)
    others[np.arange(labels.size), labels] = False
    b_avg = np.sum(np.exp(scale * cos) * others) / labels.size
    theta_med = np.median(np.arccos(cos[np.arange(labels.size), labels]))
    want_scale = np.log(b_avg) / np.cos(min(np.pi / 4, theta_med))
    np.testing.assert_allclose(new_scale, want_scale, rtol=1e-5)
    np.testing.assert_allclose(logits, want_scale * cos, rtol=1e-5, atol=1e-5)


def test_adacos_initial_scale_rejects_two_classes():
    with pytest.raises(ValueError, match="losses.py.*>= 3 centres"):
        losses.adacos_initial_scale(2)


@pytest.mark.parametrize("num_subclusters", [1, 3])
def test_subcluster_adacos_pooling_and_scale(num_subclusters):
    rng = np.random.default_rng(3)
    num_classes, k = 4, num_subclusters
    weights = rng.normal(size=(num_classes * k, 6)).astype(np.float32)
    labels = rng.integers(0, num_classes, size=10)
    embeddings = rng.normal(size=(10, 6)).astype(np.float32)
    scale = losses.adacos_initial_scale(num_classes * k)
    logits, new_scale = losses.subcluster_adacos_logits(embeddings, weights, labels, k, scale)

    cos = _cosines64(embeddings, weights)
    b_avg = np.exp(scale * cos).sum(axis=1).mean()  # all centres, true class included
    angles = np.arccos(cos).reshape(10, num_classes, k)
    theta_med = np.median(angles[np.arange(10), labels].mean(axis=1))
    want_scale = np.log(b_avg) / np.cos(min(np.pi / 4, theta_med))
    np.testing.assert_allclose(new_scale, want_scale, rtol=1e-5)
    # Wilkinghoff's pooling: softmax over all sub-clusters, probabilities summed per class.
    summed = softmax(want_scale * cos, axis=1).reshape(10, num_classes, k).sum(axis=2)
    np.testing.assert_allclose(jax.nn.softmax(logits), summed, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        logits, logsumexp(want_scale * cos.reshape(10, num_classes, k), axis=2), rtol=1e-5
    )


def test_subcluster_adacos_rejects_uneven_centres():
    with pytest.raises(ValueError, match="losses.py.*num_subclusters=3"):
        losses.subcluster_adacos_logits(
            jnp.ones((2, 4)), jnp.ones((10, 4)), jnp.zeros(2, int), 3, 2.0
        )


def test_mixup_is_a_convex_pairing_and_deterministic():
    rng = np.random.default_rng(4)
    n = 6
    x = rng.normal(size=(n, 3, 4)).astype(np.float32)
    y = np.eye(n, dtype=np.float32)  # one class per row reveals each row's partner
    key = jax.random.key(7)
    x_mix, y_mix = losses.mixup(key, x, y, alpha=0.4)
    x_again, y_again = losses.mixup(key, x, y, alpha=0.4)
    np.testing.assert_array_equal(x_mix, x_again)
    np.testing.assert_array_equal(y_mix, y_again)
    assert not np.array_equal(losses.mixup(jax.random.key(8), x, y, 0.4)[1], y_mix)

    y_mix = np.asarray(y_mix)
    np.testing.assert_allclose(y_mix.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(y_mix >= 0)
    off_diagonal = np.where(np.eye(n, dtype=bool), -1.0, y_mix)
    partner = np.argmax(off_diagonal, axis=1)
    paired = y_mix[np.arange(n), partner] > 0
    partner = np.where(paired, partner, np.arange(n))  # rows paired with themselves stay unmixed
    assert sorted(partner) == list(range(n))  # a permutation
    lam = y_mix[np.arange(n), np.arange(n)]
    lam = np.where(paired, lam, lam[paired][0] if paired.any() else 1.0)
    assert np.allclose(lam, lam[0], atol=1e-6)  # one lambda per batch
    want = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[partner]
    np.testing.assert_allclose(x_mix, want, rtol=1e-5, atol=1e-6)


def test_mixup_lambda_follows_beta():
    x = jnp.array([[1.0], [0.0]])  # with a swap, x_mix[0] = lambda; without, 1
    y = jnp.eye(2)
    keys = jax.random.split(jax.random.key(0), 400)
    y_mix = jax.jit(jax.vmap(lambda k: losses.mixup(k, x, y, 0.5)[1]))(keys)
    swapped = np.asarray(y_mix[:, 0, 1] > 0)
    lam = np.asarray(y_mix[swapped, 0, 0])
    assert 100 < swapped.sum() < 300
    assert stats.kstest(lam, stats.beta(0.5, 0.5).cdf).pvalue > 1e-3


def _total_loss(kind: str, embeddings, weights, labels):
    if kind == "arcface":
        logits = losses.arcface_logits(embeddings, weights, labels)
    elif kind == "adacos":
        logits, _ = losses.adacos_logits(embeddings, weights, labels, 2.0)
    else:
        logits, _ = losses.subcluster_adacos_logits(embeddings, weights, labels, 1, 2.0)
    return jnp.mean(losses.softmax_cross_entropy(logits, labels))


@pytest.mark.parametrize("kind", ["arcface", "adacos", "subcluster_adacos"])
def test_margin_losses_have_finite_gradients_at_cos_plus_minus_one(batch, kind):
    _, weights, labels = batch
    embeddings = np.array(weights[labels])  # cos = 1 with the true centre
    embeddings[1] = -weights[labels[1]]  # cos = -1
    grad_fn = jax.jit(jax.grad(_total_loss, argnums=(1, 2)), static_argnums=0)
    grads = grad_fn(kind, jnp.asarray(embeddings), weights, labels)
    for grad in grads:
        assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_reconstruction_and_mixup_losses_are_differentiable():
    rng = np.random.default_rng(5)
    x, r = rng.normal(size=(2, 4, 10)).astype(np.float32)
    grad = jax.grad(lambda x, r: jnp.mean(losses.reconstruction_mse(x, r)), argnums=1)(x, r)
    np.testing.assert_allclose(grad, 2 * (r - x) / x.size, rtol=1e-5, atol=1e-7)

    def mixed_loss(logits):
        _, y_mix = losses.mixup(jax.random.key(1), logits, jnp.eye(4), 1.0)
        return jnp.mean(losses.softmax_cross_entropy(logits, y_mix))

    logits = jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)
    assert np.all(np.isfinite(jax.jit(jax.grad(mixed_loss))(logits)))


def test_margin_functions_reject_bad_shapes(batch):
    embeddings, weights, labels = batch
    with pytest.raises(ValueError, match="losses.py.*embeddings"):
        losses.arcface_logits(embeddings[:, :-1], weights, labels)
    with pytest.raises(ValueError, match="losses.py.*labels"):
        losses.adacos_logits(embeddings, weights, np.ones((labels.size, 3), np.float32), 2.0)
