"""mdg.clip_outputs.clip_means (the pipeline's one path from a model to per-clip numbers) against an
independent loop: windows cut in numpy, the eval-mode model applied to them (the AE in numpy
float64 from its parameters; MobileNetV2 by one unpadded call of the model), per-clip means and
block covariances in numpy float64. Batch sizes that do and do not divide the window count, clip
counts on both sides of a power-of-two clip bucket, 1- and 8-device meshes.
"""
import json

import jax
import numpy as np
import pytest
from flax import nnx
from scipy.special import log_softmax, logsumexp

from mdg import clip_outputs, models, objectives, sharding
from mdg.data import pipeline
from mdg.models.layers import FusedBatchNorm

MELS, WINDOW, HOP, FRAMES = 8, 5, 2, 13          # AE: 5 windows per clip
EPS = np.finfo(np.float64).eps


def test_clip_bucket_is_the_next_power_of_two_from_16():
    assert [clip_outputs.clip_bucket(n) for n in (0, 1, 16, 17, 32, 33, 100)] == [16, 16, 16, 32, 32, 64, 128]


def windows_of(log_mels, window, hop):
    """(clips, windows per clip, window, mels): every window of every clip, by slicing."""
    return np.stack([np.stack([clip[start:start + window] for start in range(0, len(clip) - window + 1, hop)])
                     for clip in log_mels])


# ----------------------------------------------------------------------------------------------
# Autoencoder.


@pytest.fixture(scope="module")
def autoencoder():
    """Eval-mode tiny AE with random BatchNorm running statistics, as (model, {"params", "rest"})."""
    model = models.create_model("autoencoder", nnx.Rngs(3), input_dim=WINDOW * MELS, hidden_dim=16,
                                num_hidden_layers=2, bottleneck_dim=4)
    rng = np.random.default_rng(3)
    for _, module in nnx.iter_modules(model):
        if isinstance(module, FusedBatchNorm):
            size = module.mean[...].shape
            module.mean[...] = rng.normal(scale=0.3, size=size).astype(np.float32)
            module.var[...] = rng.uniform(0.2, 2.0, size=size).astype(np.float32)
            module.bias[...] = rng.normal(scale=0.3, size=size).astype(np.float32)
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return model, graphdef, {"params": params, "rest": rest}


def ae_forward64(model, x):
    """(reconstruction, bottleneck code) of rows ``x`` in numpy float64 from the model's parameters."""
    def layer(block, h):
        dense, norm = block.dense, block.norm
        h = h @ np.float64(dense.kernel[...]) + np.float64(dense.bias[...])
        h = (h - np.float64(norm.mean[...])) / np.sqrt(np.float64(norm.var[...]) + norm.epsilon)
        return np.maximum(h * np.float64(norm.scale[...]) + np.float64(norm.bias[...]), 0.0)

    h = np.float64(x)
    for block in model.encoder:
        h = layer(block, h)
    code = h
    for block in model.decoder:
        h = layer(block, h)
    return h @ np.float64(model.output.kernel[...]) + np.float64(model.output.bias[...]), code


def ae_reference(model, log_mels, is_target):
    """Per-clip means and per-domain residual-block covariances, numpy float64."""
    windows = windows_of(log_mels, WINDOW, HOP)
    num_clips, per_clip = windows.shape[:2]
    x = windows.reshape(num_clips * per_clip, -1)
    reconstruction, code = ae_forward64(model, x)
    residual = (x - reconstruction).reshape(num_clips, per_clip, -1)
    sq_err = np.mean(residual ** 2, axis=2)
    blocks = [residual[is_target == domain].reshape(-1, MELS) for domain in (False, True)]
    return {"sq_err": sq_err.mean(axis=1), "loss": sq_err.mean(axis=1), "residual": residual.mean(axis=1),
            "embedding": code.reshape(num_clips, per_clip, -1).mean(axis=1),
            "count": np.full(num_clips, per_clip), "blocks": blocks}


def ae_clip_means(graphdef, model_state, log_mels, is_target, mesh, batch_size):
    return clip_outputs.clip_means(
        graphdef, sharding.replicate(model_state, mesh), objectives.Objective("mse"),
        ("sq_err", "residual", "embedding", "loss"), log_mels, mesh, window=WINDOW, hop=HOP, flatten=True,
        batch_size=batch_size, clip_is_target=is_target, moments_block=MELS)


def check_ae(got, want):
    for name in ("sq_err", "loss", "residual", "embedding"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(got["count"], want["count"])
    moments = got["moments"]
    for domain, blocks in enumerate(want["blocks"]):
        assert float(moments.count[domain]) == len(blocks)
        np.testing.assert_allclose(moments.mean[domain], blocks.mean(axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(moments.scatter[domain] / (len(blocks) - 1), np.cov(blocks, rowvar=False),
                                   rtol=1e-4, atol=1e-5)


def ae_clips(num_clips):
    rng = np.random.default_rng(num_clips)
    log_mels = rng.normal(size=(num_clips, FRAMES, MELS)).astype(np.float32)
    return log_mels, np.arange(num_clips) % 3 == 1


# (clips, batch): 80 windows in batches of 8 (divides), 85 in batches of 24 and 128 (padded end).
@pytest.mark.parametrize("num_clips,batch_size", [(16, 8), (17, 24), (17, 128)])
def test_autoencoder_clip_means_match_a_numpy_loop(autoencoder, num_clips, batch_size):
    model, graphdef, model_state = autoencoder
    log_mels, is_target = ae_clips(num_clips)
    got = ae_clip_means(graphdef, model_state, log_mels, is_target, sharding.make_mesh(1), batch_size)
    check_ae(got, ae_reference(model, log_mels, is_target))


def test_autoencoder_clip_means_agree_on_1_and_8_devices(autoencoder):
    model, graphdef, model_state = autoencoder
    log_mels, is_target = ae_clips(17)
    results = [ae_clip_means(graphdef, model_state, log_mels, is_target, sharding.make_mesh(n), 24) for n in (1, 8)]
    check_ae(results[1], ae_reference(model, log_mels, is_target))
    for name in ("sq_err", "residual", "embedding", "count"):
        np.testing.assert_allclose(results[1][name], results[0][name], rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(results[1]["moments"].scatter, results[0]["moments"].scatter, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# MobileNetV2 (the session's tiny trained classifier: AdaCos cosine head, 4 classes, 16 mels).


def mobilenet_reference(graphdef, model_state, log_mels, candidates, window, hop):
    """Per-clip means of neg_logit, correct and embedding: one unpadded call of the eval model on
    all windows, the negative-logit formula in numpy float64."""
    windows = windows_of(log_mels, window, hop)
    num_clips, per_clip = windows.shape[:2]
    outputs = jax.jit(lambda s, x: nnx.merge(graphdef, s["params"], s["rest"]).outputs(x))(
        model_state, windows.reshape((num_clips * per_clip,) + windows.shape[2:]))
    logits = np.float64(outputs["logits"]).reshape(num_clips, per_clip, -1)
    log_p = log_softmax(logits, axis=2)
    best = np.where(candidates[:, None, :], log_p, -np.inf).max(axis=2)       # most probable candidate
    log_rest = np.log1p(-np.exp(best))
    neg_logit = np.maximum(log_rest, np.log(EPS)) - np.maximum(best, np.log(EPS))
    correct = np.take_along_axis(candidates[:, None, :], logits.argmax(axis=2)[:, :, None], axis=2)[:, :, 0]
    return {"neg_logit": neg_logit.mean(axis=1), "correct": correct.mean(axis=1), "count": np.full(num_clips, per_clip),
            "embedding": np.float64(outputs["embedding"]).reshape(num_clips, per_clip, -1).mean(axis=1)}


def test_mobilenet_clip_means_match_a_numpy_loop_on_1_and_8_devices(trained_classifier):
    config, unit, _, graphdef, state = trained_classifier
    model_state = {"params": state["params"], "rest": state["rest"]}
    num_classes = len(unit.class_names)
    rng = np.random.default_rng(5)
    num_clips = 17                                            # bucket 32; 3 windows each, 51 in all
    log_mels = rng.normal(size=(num_clips,) + unit.train["log_mel"].shape[1:]).astype(np.float32)
    candidates = np.eye(num_classes, dtype=bool)[rng.integers(0, num_classes, num_clips)]
    candidates[2] = [True, True, False, False]                           # two candidates
    want = mobilenet_reference(graphdef, model_state, log_mels, candidates, config.input.window,
                              config.input.eval_hop)
    assert np.std(want["neg_logit"]) > 1e-3     # a model whose logits vary, so the comparison has teeth
    objective = objectives.from_config(config)
    results = []
    for n in (1, 8):
        mesh = sharding.make_mesh(n)
        results.append(clip_outputs.clip_means(
            graphdef, sharding.replicate(model_state, mesh), objective, ("neg_logit", "correct", "embedding"), log_mels,
            mesh, window=config.input.window, hop=config.input.eval_hop, flatten=False, batch_size=16, clip_classes=candidates))
    for got in results:
        np.testing.assert_allclose(got["neg_logit"], want["neg_logit"], rtol=1e-4, atol=1e-4)
        # float32 sums of ~3-sized activations: a few 1e-5 absolute where a pooled value is near 0
        np.testing.assert_allclose(got["embedding"], want["embedding"], rtol=1e-4, atol=3e-5)
        np.testing.assert_array_equal(got["count"], want["count"])
        np.testing.assert_allclose(got["correct"], want["correct"], atol=1e-6)
    for name in ("neg_logit", "embedding"):   # float32 kernels differ with the per-device batch (16 vs 2)
        np.testing.assert_allclose(results[1][name], results[0][name], rtol=1e-4, atol=1e-4)


def test_validation_accuracy_of_the_last_epoch_is_that_of_the_final_model(tmp_path):
    """metrics.jsonl's val_accuracy (classifiers): the share of held-out windows whose most probable
    class is their clip's, here recomputed with numpy from the returned (final) model."""
    from mdg import train
    from test_train import fake_classifier_unit, tiny_classifier_config

    config, unit = tiny_classifier_config("softmax"), fake_classifier_unit()
    config.data.validation_split = 0.25                                  # 3 of the 12 clips
    graphdef, state = train.train_unit(config, unit, sharding.make_mesh(1), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == config.train.num_epochs and all(0 <= r["val_accuracy"] <= 1 for r in records)
    _, val_idx = pipeline.split_validation(len(unit.train["log_mel"]), config.data.validation_split, config.seed)
    candidates = np.eye(len(unit.class_names), dtype=bool)[unit.train_classes[val_idx]]
    want = mobilenet_reference(graphdef, {"params": state["params"], "rest": state["rest"]},
                               unit.train["log_mel"][val_idx], candidates, config.input.window,
                               config.input.train_hop)
    assert records[-1]["val_accuracy"] == pytest.approx(np.mean(want["correct"]), abs=1e-6)
