"""Train loop: device-count invariance, resume after interruption (with and without mixup), NaN
stop, RNG key and mixup, compile-once (in-memory data, tiny AE).

Also the fake units other test files train on: ``fake_unit`` (reconstruction) and
``fake_classifier_unit`` with ``tiny_classifier_config`` (tiny MobileNetV2).
"""

import collections
import json
import logging
import re

import numpy as np
import pytest

import jax
from mdg import checkpoint, clip_outputs, objectives, sharding, train, units
from mdg.config_defaults import base_config


def tiny_config(save_every_steps=4, num_epochs=2):
    c = base_config()
    c.model.name = "autoencoder"
    c.model.input_dim = 5 * 16
    c.model.hidden_dim = 16
    c.model.num_hidden_layers = 2
    c.model.bottleneck_dim = 4
    c.train.batch_size = 32
    c.train.num_epochs = num_epochs
    c.train.log_every_steps = 3
    c.ckpt.save_every_steps = save_every_steps
    c.ckpt.keep = 10
    c.input.eval_batch_size = 64
    return c


def fake_unit(num_clips=10, num_frames=24, num_mels=16, seed=0):
    rng = np.random.default_rng(seed)
    log_mels = rng.normal(size=(num_clips, num_frames, num_mels)).astype(np.float32)
    return units.Unit(name="fake", machine="fake", train={"log_mel": log_mels}, test={})


def _object_array(rows):
    """An object array of tuples, as the shard loader returns attribute columns."""
    array = np.empty(len(rows), dtype=object)
    for row, value in enumerate(rows):
        array[row] = tuple(value)
    return array


def fake_clips(split, sections, attributes, domains, num_frames, num_mels, rng):
    """Per-clip arrays of one split in the shard loader's layout (attribute ``a`` per clip)."""
    names = [f"section_{s:02d}_{'target' if d else 'source'}_{split}_normal_{i:04d}_a_{a}.wav"
             for i, (s, a, d) in enumerate(zip(sections, attributes, domains))]
    return {"log_mel": rng.normal(size=(len(sections), num_frames, num_mels)).astype(np.float32),
            "file_name": np.array(names), "machine": np.array(["fake"] * len(sections)),
            "section": np.array(sections, np.int32), "domain": np.array(domains, np.int32),
            "label": np.zeros(len(sections), np.int32),
            "attribute_names": _object_array([["a"]] * len(sections)),
            "attribute_values": _object_array([[a] for a in attributes])}


def fake_classifier_unit(num_frames=48, num_mels=16, seed=0):
    """A classifier unit with section_attribute targets, built by mdg.units.add_class_targets.

    12 training clips: sections 0 and 1, attribute a in {x, y} (4 classes), clips 4-5 and 10-11
    of the target domain. 6 test clips; test clip 2 has the unseen attribute value z, so its
    candidates are both classes of section 0.
    """
    rng = np.random.default_rng(seed)
    train_split = fake_clips("train", [0] * 6 + [1] * 6, list("xyxyxy" * 2), [0, 0, 0, 0, 1, 1] * 2,
                             num_frames, num_mels, rng)
    test_split = fake_clips("test", [0, 0, 0, 1, 1, 1], list("xyzxyx"), [0, 1, 0, 1, 0, 1],
                            num_frames, num_mels, rng)
    unit = units.Unit(name="fake_classifier", machine="fake", train=train_split, test=test_split)
    units.add_class_targets(unit, "section_attribute")
    return unit


def tiny_classifier_config(loss="adacos", num_epochs=2):
    """Tiny MobileNetV2 (alpha 0.35) on 32-frame x 16-mel patches: 4 steps per epoch on the fake
    classifier unit, no validation split."""
    c = base_config()
    c.model.name = "mobilenet_v2"
    c.model.alpha = 0.35
    c.model.bn_momentum = 0.5
    c.data.target = "section_attribute"
    c.data.validation_split = 0.0
    c.input.window = 32
    c.input.train_hop = 8
    c.input.eval_hop = 8
    c.input.flatten = False
    c.input.eval_batch_size = 16
    c.train.loss = loss
    c.train.batch_size = 8
    c.train.num_epochs = num_epochs
    c.train.log_every_steps = 100
    c.ckpt.save_every_steps = 100
    return c


def train_state_like(config, unit):
    """A freshly initialised state of the same structure, as a restore target."""
    model = train.create_model(config, len(unit.class_names), objectives.from_config(config))
    return train.initial_state(model, train.optimizer(config.train.learning_rate), config.seed)


def clip_means(config, graphdef, state, log_mels, mesh):
    """The AE's clip-level outputs the scores use, through the pipeline's own function."""
    return clip_outputs.clip_means(
        graphdef, {"params": state["params"], "rest": state["rest"]}, objectives.from_config(config),
        ("sq_err", "residual"), log_mels, mesh, window=config.input.window, hop=config.input.eval_hop,
        flatten=config.input.flatten, batch_size=config.input.eval_batch_size)


def params_of(state):
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(state["params"])])


def test_same_result_on_1_and_8_devices(tmp_path):
    # Raw parameters are not comparable: Dense biases feeding BatchNorm have a zero true gradient,
    # so Adam turns float reduction-order noise into +-lr steps that BN then cancels. What must
    # agree is what the model computes: the training losses and the trained model's outputs.
    config, unit = tiny_config(), fake_unit()
    results = {}
    for n in (1, 8):
        mesh = sharding.make_mesh(n)
        graphdef, state = train.train_unit(config, unit, mesh, tmp_path / str(n))
        losses = [json.loads(l)["loss"] for l in (tmp_path / str(n) / "metrics.jsonl").read_text().splitlines()]
        outputs = clip_means(config, graphdef, state, unit.train["log_mel"], mesh)
        results[n] = (int(state["step"]), losses, outputs)
    assert results[1][0] == results[8][0] > 0
    np.testing.assert_allclose(results[1][1], results[8][1], rtol=1e-5)
    for key in ("sq_err", "residual"):
        np.testing.assert_allclose(results[1][2][key], results[8][2][key], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("mixup_alpha", [0.0, 0.4])
def test_interrupted_run_resumes_to_identical_parameters(tmp_path, monkeypatch, mixup_alpha):
    config, unit, mesh = tiny_config(), fake_unit(), sharding.make_mesh(2)
    config.train.mixup_alpha = mixup_alpha   # > 0: every step draws from the checkpointed RNG key
    _, uninterrupted = train.train_unit(config, unit, mesh, tmp_path / "straight")

    # Interrupt after 6 steps: the checkpoint of step 4 survives, steps 5-6 are lost.
    real_next = train.pipeline.TrainBatches.__next__
    calls = {"n": 0}

    def failing_next(self):
        calls["n"] += 1
        if calls["n"] > 6:
            raise KeyboardInterrupt("simulated kill")
        return real_next(self)

    monkeypatch.setattr(train.pipeline.TrainBatches, "__next__", failing_next)
    with pytest.raises(KeyboardInterrupt):
        train.train_unit(config, unit, mesh, tmp_path / "resumed")
    monkeypatch.setattr(train.pipeline.TrainBatches, "__next__", real_next)
    assert checkpoint.Checkpointer(tmp_path / "resumed/checkpoints/fake", 4, 10).latest_step() == 4

    _, resumed = train.train_unit(config, unit, mesh, tmp_path / "resumed")
    assert int(resumed["step"]) == int(uninterrupted["step"])
    np.testing.assert_array_equal(params_of(resumed), params_of(uninterrupted))
    np.testing.assert_array_equal(resumed["rng"], uninterrupted["rng"])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    config, unit, mesh = tiny_config(), fake_unit(), sharding.make_mesh(1)
    real_next = train.pipeline.TrainBatches.__next__
    calls = {"n": 0}

    def poisoned_next(self):
        calls["n"] += 1
        batch = real_next(self)
        if calls["n"] == 6:   # the 6th step (index 5) sees a NaN input
            batch["x"][0, 0] = np.nan
        return batch

    monkeypatch.setattr(train.pipeline.TrainBatches, "__next__", poisoned_next)
    with pytest.raises(train.NonFiniteLossError, match="step 5"):
        train.train_unit(config, unit, mesh, tmp_path)
    ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints/fake", 4, 10)
    assert ckpt.latest_step() == 4
    restored, data_state = ckpt.restore(train_state_like(config, unit))
    assert int(restored["step"]) == 4 and data_state["step_in_epoch"] == 4
    assert np.all(np.isfinite(params_of(restored)))
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines() if (tmp_path / "metrics.jsonl").exists() else []
    assert all("nan" not in line.lower() for line in lines)


def test_metrics_jsonl_has_losses_and_throughput(tmp_path):
    config, unit = tiny_config(), fake_unit()
    train.train_unit(config, unit, sharding.make_mesh(1), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert np.isfinite(r["loss"]) and np.isfinite(r["val_loss"])
        assert r["samples_per_s"] > 0 and r["epoch_time_s"] > 0


def epoch_losses(workdir):
    return [json.loads(line)["loss"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_rng_key_is_threaded_through_the_steps_and_mixup_is_reproducible(tmp_path):
    unit, mesh = fake_unit(), sharding.make_mesh(1)
    states = {}
    for name, alpha in (("plain", 0.0), ("mixup", 0.4), ("mixup_again", 0.4)):
        config = tiny_config()
        config.train.mixup_alpha = alpha
        states[name] = train.train_unit(config, unit, mesh, tmp_path / name)[1]

    # The key starts from the seed and is split once per step, mixup or not.
    steps = int(states["plain"]["step"])
    key = jax.random.fold_in(jax.random.key(tiny_config().seed), 1)
    for _ in range(steps):
        key = jax.random.split(key)[0]
    for state in states.values():
        assert state["rng"].dtype == np.uint32 and state["rng"].shape == (2,)
        np.testing.assert_array_equal(state["rng"], jax.random.key_data(key))

    plain, mixed, again = (epoch_losses(tmp_path / name) for name in ("plain", "mixup", "mixup_again"))
    assert len(plain) == len(mixed) == 2 and all(abs(a - b) > 1e-4 for a, b in zip(plain, mixed))
    assert mixed == again
    np.testing.assert_array_equal(params_of(states["mixup"]), params_of(states["mixup_again"]))
    assert not np.array_equal(params_of(states["mixup"]), params_of(states["plain"]))


def test_train_step_and_clip_sums_compile_once_across_epochs_and_units(tmp_path):
    """Two units of the same shapes, 3 epochs each with validation, then scoring passes: one
    compilation of the train step and of the BatchNorm recomputation, one of the clip-sums
    function per (outputs, clip bucket)."""
    config = tiny_config(save_every_steps=100, num_epochs=3)
    config.model.hidden_dim = 24           # a graph no other test compiles, so no cache hides a compile
    mesh = sharding.make_mesh(1)
    compiled = []

    class Compiles(logging.Handler):
        def emit(self, record):
            found = re.match(r"Finished XLA compilation of jit\((\w+)\)", record.getMessage())
            if found:
                compiled.append(found.group(1))

    handler = Compiles(logging.WARNING)
    jax_logger = logging.getLogger("jax")
    jax_logger.addHandler(handler)
    try:
        with jax.log_compiles():
            for seed in (1, 2):
                unit = fake_unit(num_clips=10, seed=seed)
                unit.name = f"unit{seed}"
                graphdef, state = train.train_unit(config, unit, mesh, tmp_path)
                for num_clips in (10, 20):        # clip buckets 16 and 32
                    clip_means(config, graphdef, state, fake_unit(num_clips, seed=seed).train["log_mel"], mesh)
    finally:
        jax_logger.removeHandler(handler)
    counts = collections.Counter(compiled)
    assert counts["step"] == 1, counts
    assert counts["batch_moments"] == 1, counts   # BatchNorm statistics recomputed after each unit
    # validation ("loss", 16 slots), scoring ("sq_err", "residual") with 16 and with 32 slots
    assert counts["fn"] == 3, counts

    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["unit"] for r in records] == ["unit1"] * 3 + ["unit2"] * 3
    assert all(r["epoch_time_s"] >= r["compile_s"] >= 0 for r in records)
    first_epoch = records[0]["compile_s"]
    assert first_epoch > 0
    assert sum(r["compile_s"] for r in records[3:]) < 0.5 * first_epoch   # unit 2 reuses the executables
