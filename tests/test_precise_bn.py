"""BatchNorm statistics recomputed after training (mdg.precise_bn), against float64 numpy and
against the model's own training-mode pass."""

import itertools

import numpy as np
from flax import nnx

from mdg import sharding, train
from mdg.data import pipeline
from test_train import fake_classifier_unit, fake_unit, tiny_classifier_config, tiny_config


def first_stream_batches(config, unit, count):
    """The first ``count`` batches of the training stream train_unit builds (no validation split)."""
    return list(itertools.islice(pipeline.TrainBatches(
        unit.train["log_mel"], config.input.window, config.input.train_hop, config.train.batch_size,
        config.seed, config.input.flatten, clip_labels=unit.train_classes), count))


def test_the_first_layer_gets_the_pooled_statistics_of_its_input(tmp_path):
    config, unit = tiny_config(num_epochs=1), fake_unit(num_clips=12)
    config.model.bn_momentum = 0.999   # the running averages would stay near (0, 1)
    config.data.validation_split = 0.0
    config.train.precise_bn_batches = 3
    _, state = train.train_unit(config, unit, sharding.make_mesh(1), tmp_path)
    windows = np.concatenate([b["x"] for b in first_stream_batches(config, unit, 3)]).astype(np.float64)
    dense = state["params"]["encoder"][0]["dense"]
    hidden = windows @ np.asarray(dense["kernel"][...], np.float64) + np.asarray(dense["bias"][...], np.float64)
    norm = state["rest"]["encoder"][0]["norm"]
    np.testing.assert_allclose(np.asarray(norm["mean"][...]), hidden.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(norm["var"][...]), hidden.var(axis=0), rtol=1e-4, atol=1e-5)


def test_eval_mode_equals_training_mode_on_the_batch_the_statistics_came_from(tmp_path):
    """One batch holding every training window: after the recomputation the eval-mode network
    (running statistics) is the training-mode network (batch statistics) on that batch, through
    every BatchNorm of the MobileNetV2, which a momentum of 0.999 after one step is far from."""
    config, unit = tiny_classifier_config(loss="softmax", num_epochs=1), fake_classifier_unit()
    config.model.bn_momentum = 0.999
    windows = pipeline.TrainBatches(unit.train["log_mel"], config.input.window, config.input.train_hop, 1,
                                    0, False).num_windows
    config.train.batch_size = windows   # one step per epoch, the whole epoch in one batch
    results = {}
    for count in (0, 1):
        config.train.precise_bn_batches = count
        eval_graphdef, state = train.train_unit(config, unit, sharding.make_mesh(1), tmp_path / str(count))
        (batch,) = first_stream_batches(config, unit, 1)
        model = nnx.merge(eval_graphdef, state["params"], state["rest"])
        eval_logits = np.asarray(model.outputs(batch["x"])["logits"])
        model.train()
        train_logits = np.asarray(model.outputs(batch["x"])["logits"])
        results[count] = np.max(np.abs(eval_logits - train_logits)) / np.std(train_logits)
    assert results[1] < 1e-3, results
    assert results[0] > 0.1, results   # without it the eval-mode network is another network
