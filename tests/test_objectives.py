"""mdg.objectives: losses chosen by name, the heads they build, training logits (with margin, AdaCos
scale update) against scoring logits (without), and the head scale as checkpointed model state.

Numerics are checked against numpy float64 derivations from the model's own embedding and centres.
"""
import math

import jax
import numpy as np
import pytest
from flax import nnx
from scipy.special import logsumexp

from mdg import checkpoint, losses, models, objectives, train
from mdg.config_defaults import base_config
from mdg.models import heads
from test_train import train_state_like

NUM_CLASSES = 4


def loss_config(model_name, loss, **train_fields):
    c = base_config()
    c.model.name = model_name
    c.train.loss = loss
    c.train.update(train_fields)
    return c


# ----------------------------------------------------------------------------------------------
# Choosing a loss.

FITTING = [("autoencoder", "mse", {}), ("mobilenet_v2", "softmax", {}),
           ("mobilenet_v2", "arcface", {"margin": 0.3, "loss_scale": 20.0}),
           ("mobilenet_v2", "adacos", {}), ("mobilenet_v2", "subcluster_adacos", {"num_subclusters": 3})]


def test_every_loss_is_covered():
    assert sorted(loss for _, loss, _ in FITTING) == sorted(objectives.LOSSES)


@pytest.mark.parametrize("model_name,loss,fields", FITTING)
def test_from_config_picks_the_loss_by_name(model_name, loss, fields):
    objective = objectives.from_config(loss_config(model_name, loss, **fields))
    assert objective.name == loss
    assert objective.kind == models.model_class(model_name).KIND
    assert objective.margin == fields.get("margin", 0.0)
    assert objective.scale == fields.get("loss_scale", 30.0)
    assert objective.num_subclusters == fields.get("num_subclusters", 1)


@pytest.mark.parametrize("model_name,loss,fields,message", [
    ("mobilenet_v2", "cosface", {}, r"'cosface' is not a known loss; known losses: mse, softmax, arcface"),
    ("autoencoder", "arcface", {}, r"trains a classifier model, but model 'autoencoder' is a reconstruction "
                                   r"model; use one of \['mse'\]"),
    ("mobilenet_v2", "mse", {}, r"trains a reconstruction model, but model 'mobilenet_v2' is a classifier "
                                r"model; use one of \['softmax', 'arcface', 'adacos', 'subcluster_adacos'\]"),
    ("mobilenet_v2", "adacos", {"num_subclusters": 3}, r"num_subclusters=3 needs train.loss='subcluster_adacos'"),
    ("mobilenet_v2", "softmax", {"num_subclusters": 2}, r"num_subclusters=2 needs"),
])
def test_from_config_rejects_bad_combinations(model_name, loss, fields, message):
    with pytest.raises(ValueError, match=message):
        objectives.from_config(loss_config(model_name, loss, **fields))


@pytest.mark.parametrize("loss,fields,head_type,num_centres,scale", [
    ("softmax", {}, heads.LinearHead, NUM_CLASSES, None),
    ("arcface", {"margin": 0.3, "loss_scale": 20.0}, heads.CosineHead, NUM_CLASSES, 20.0),
    ("adacos", {}, heads.CosineHead, NUM_CLASSES, math.sqrt(2) * math.log(NUM_CLASSES - 1)),
    ("subcluster_adacos", {"num_subclusters": 3}, heads.CosineHead, 3 * NUM_CLASSES,
     math.sqrt(2) * math.log(3 * NUM_CLASSES - 1)),
])
def test_model_kwargs_build_the_head_the_loss_needs(loss, fields, head_type, num_centres, scale):
    config = loss_config("mobilenet_v2", loss, **fields)
    config.model.alpha = 0.35
    objective = objectives.from_config(config)
    model = train.create_model(config, NUM_CLASSES, objective)
    assert type(model.head) is head_type
    assert model.head.class_directions().shape == (num_centres, model.embedding_dim)
    if scale is not None:
        assert float(model.head.scale.value) == pytest.approx(scale, rel=1e-6)
        assert model.head.num_subclusters * NUM_CLASSES == num_centres
    assert objectives.Objective("mse").model_kwargs(NUM_CLASSES) == {}


# ----------------------------------------------------------------------------------------------
# Training logits (margin, scale update) against scoring logits (none), on a tiny MobileNetV2.


def _unit64(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _cross_entropy64(logits, labels):
    return logsumexp(logits, axis=1) - logits[np.arange(len(labels)), labels]


def _tiny_cosine_model(loss, **fields):
    """Tiny MobileNetV2 with the head ``loss`` asks for, and its jitted outputs.

    Training mode (BN on batch statistics): a fresh model's running statistics would shrink the
    embedding to ~1e-10; the numpy references below start from whatever embedding it returns.
    """
    config = loss_config("mobilenet_v2", loss, **fields)
    config.model.alpha = 0.35
    objective = objectives.from_config(config)
    graphdef, state = nnx.split(train.create_model(config, NUM_CLASSES, objective))
    outputs = jax.jit(lambda s, x: nnx.merge(graphdef, s).outputs(x))
    return graphdef, state, outputs


def _row_loss(graphdef, state, objective, outputs, targets, training):
    """The objective's per-window loss and the head scale after it (jitted, head only)."""
    def fn(s, out, t):
        model = nnx.merge(graphdef, s, copy=True)
        loss = objective.row_loss(model, out, None, t, training=training)
        return loss, model.head.scale.value

    return jax.jit(fn)(state, outputs, targets)


@pytest.fixture(scope="module")
def windows():
    rng = np.random.default_rng(0)
    return rng.normal(size=(4, 32, 32)).astype(np.float32), np.array([0, 3, 1, 3])


def test_scoring_logits_have_no_margin_and_subcluster_adacos_trains_on_pooled_logits(windows):
    x, labels = windows
    k = 2
    graphdef, state, forward = _tiny_cosine_model("subcluster_adacos", num_subclusters=k)
    objective = objectives.Objective("subcluster_adacos", num_subclusters=k)
    out = forward(state, x)
    head = nnx.merge(graphdef, state).head
    s0 = float(head.scale.value)
    cos = _unit64(out["embedding"]) @ _unit64(head.centres.value).T          # (4, C K)
    want_logits = logsumexp(s0 * cos.reshape(4, NUM_CLASSES, k), axis=2)
    np.testing.assert_allclose(out["logits"], want_logits, rtol=2e-5, atol=2e-5)

    # Training: dynamic scale over all centres, class angle the mean over its sub-clusters.
    targets = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    loss, new_scale = _row_loss(graphdef, state, objective, out, targets, training=True)
    theta = np.arccos(cos).reshape(4, NUM_CLASSES, k).mean(axis=2)[np.arange(4), labels]
    b_avg = np.mean(np.sum(np.exp(s0 * cos), axis=1))
    want_scale = np.log(b_avg) / np.cos(min(np.pi / 4, np.median(theta)))
    np.testing.assert_allclose(new_scale, want_scale, rtol=1e-5)
    pooled = logsumexp(want_scale * cos.reshape(4, NUM_CLASSES, k), axis=2)
    np.testing.assert_allclose(loss, _cross_entropy64(pooled, labels), rtol=1e-4, atol=1e-5)
    # Evaluation: the stored scale, so a row's loss does not depend on the rest of its batch.
    loss_eval, kept = _row_loss(graphdef, state, objective, out, targets, training=False)
    assert float(kept) == s0 != pytest.approx(want_scale, rel=1e-3)
    np.testing.assert_allclose(loss_eval, _cross_entropy64(want_logits, labels), rtol=1e-4, atol=1e-5)
    padded = {name: np.concatenate([v[:2], np.repeat(v[1:2], 2, axis=0)]) for name, v in out.items()}
    loss_padded, _ = _row_loss(graphdef, state, objective, padded, targets[[0, 1, 1, 1]], training=False)
    np.testing.assert_allclose(loss_padded[:2], loss_eval[:2], rtol=1e-6)


def test_arcface_and_adacos_training_logits_against_numpy(windows):
    x, labels = windows
    targets = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    arcface = objectives.Objective("arcface", margin=0.5, scale=30.0)
    adacos = objectives.Objective("adacos")
    graphdef, state, forward = _tiny_cosine_model("arcface", margin=0.5, loss_scale=30.0)
    out = forward(state, x)
    head = nnx.merge(graphdef, state).head
    assert float(head.scale.value) == 30.0
    cos = _unit64(out["embedding"]) @ _unit64(head.centres.value).T            # (4, C)
    rows = np.arange(4)
    # Scoring logits: plain scaled cosines.
    np.testing.assert_allclose(out["logits"], 30.0 * cos, rtol=2e-5, atol=1e-4)

    # ArcFace: s cos(theta + m) on the true class (theta + m < pi here), s cos on the others.
    theta = np.arccos(cos[rows, labels])
    assert np.all(theta + 0.5 < np.pi)
    margin_logits = 30.0 * cos
    margin_logits[rows, labels] = 30.0 * np.cos(theta + 0.5)
    loss, scale_after = _row_loss(graphdef, state, arcface, out, targets, training=True)
    np.testing.assert_allclose(loss, _cross_entropy64(margin_logits, labels), rtol=1e-4, atol=1e-4)
    assert float(scale_after) == 30.0   # ArcFace's scale is fixed
    assert np.all(np.asarray(loss) > _cross_entropy64(30.0 * cos, labels))   # the margin costs

    # AdaCos (same trunk, the head started at its initial scale): B_avg over the other classes.
    s0 = losses.adacos_initial_scale(NUM_CLASSES)
    ada_state = jax.tree.map(lambda v: v, state)
    ada_state["head"]["scale"].value = np.float32(s0)
    others = np.ones_like(cos, bool)
    others[rows, labels] = False
    b_avg = np.mean(np.sum(np.exp(np.float32(s0) * cos) * others, axis=1))
    want_scale = np.log(b_avg) / np.cos(min(np.pi / 4, np.median(theta)))
    out = forward(ada_state, x)      # same trunk and centres: same embedding and cosines
    np.testing.assert_allclose(out["logits"], np.float32(s0) * cos, rtol=2e-5, atol=1e-5)
    loss, new_scale = _row_loss(graphdef, ada_state, adacos, out, targets, training=True)
    np.testing.assert_allclose(new_scale, want_scale, rtol=1e-5)
    np.testing.assert_allclose(loss, _cross_entropy64(want_scale * cos, labels), rtol=1e-4, atol=1e-5)
    loss_eval, kept = _row_loss(graphdef, ada_state, adacos, out, targets, training=False)
    assert float(kept) == np.float32(s0)
    np.testing.assert_allclose(loss_eval, _cross_entropy64(np.float32(s0) * cos, labels), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# The head scale is model state: trained, checkpointed, restored.


def test_adacos_scale_is_checkpointed_model_state(trained_classifier):
    config, unit, workdir, graphdef, state = trained_classifier
    initial = losses.adacos_initial_scale(len(unit.class_names))
    assert "scale" not in state["params"]["head"]          # not a gradient parameter
    trained = np.asarray(state["rest"]["head"]["scale"])
    assert np.isfinite(trained) and abs(float(trained) - initial) > 1e-3
    assert int(state["step"]) == 8

    ckpt = checkpoint.Checkpointer(workdir / "checkpoints" / unit.name, config.ckpt.save_every_steps, 2)
    assert ckpt.latest_step() == 8
    restored, _ = ckpt.restore(train_state_like(config, unit))
    ckpt.close()
    np.testing.assert_array_equal(restored["rest"]["head"]["scale"], trained)
    model = nnx.merge(graphdef, restored["params"], restored["rest"])
    assert float(model.head.scale.value) == float(trained)
