"""Training and evaluation: ``train_and_evaluate(config, workdir)``, one loop for every model.

Read top to bottom: data units, model/objective, update step, the train loop (mesh, input,
state, checkpoint/resume, NaN guard, metrics), clip-level outputs for scoring, and the driver.

A *unit* is what one model is trained on: a machine type (the DCASE 2022 baselines) or a
(machine type, section) pair (``data.per_section``, the DCASE 2023 baseline). Units are trained
one after another, each with its own checkpoints under ``workdir/checkpoints/<unit>``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

from mdg import checkpoint, evaluate, models, preemption, scoring, sharding, workdir_guard
from mdg.data import layout, pipeline, prepare, targets, tfds_builder

Batch = dict[str, jax.Array]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the newest checkpoint is the last good state."""


# ----------------------------------------------------------------------------------------------
# Data units.


@dataclasses.dataclass
class Unit:
    """The clips one model is trained on and scored with; arrays as returned by the shard loader."""

    name: str                        # "fan" or "fan_section_00"
    machine: str
    train: dict[str, np.ndarray]     # log_mel (clips, frames, mels) + per-clip metadata arrays
    test: dict[str, np.ndarray]
    train_classes: np.ndarray | None = None   # (train clips,) int32 class targets, classifiers only
    test_classes: np.ndarray | None = None
    class_names: tuple[str, ...] = ()


def select_clips(split: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    """Rows of every per-clip array of a split where ``mask`` holds."""
    return {k: v[mask] for k, v in split.items()}


# ----------------------------------------------------------------------------------------------
# Model and objective.


def create_model(config: ml_collections.ConfigDict, num_classes: int, seed: int) -> nnx.Module:
    """The model named by ``config.model.name``, sized by the other ``config.model`` fields."""
    kwargs = {k: v for k, v in config.model.items() if k != "name"}
    if config.model.name != "autoencoder":
        kwargs["num_classes"] = num_classes
    return models.create_model(config.model.name, rngs=nnx.Rngs(seed), **kwargs)


def is_classifier(config: ml_collections.ConfigDict) -> bool:
    return config.model.name != "autoencoder"


def loss_fn(model: nnx.Module, batch: Batch, classifier: bool) -> jax.Array:
    """Scalar training loss: the batch mean of :func:`row_outputs`' per-window ``loss``.

    Under jit, XLA drops the outputs the loss does not use.
    """
    return jnp.mean(row_outputs(model, batch, classifier)["loss"])


def row_outputs(model: nnx.Module, batch: Batch, classifier: bool) -> dict[str, jax.Array]:
    """Per-window outputs that scoring averages per clip; each (batch, ...) float32.

    autoencoder: ``sq_err`` mean squared reconstruction error of the window, ``residual`` its
    input minus reconstruction (window * mels); ``loss`` = ``sq_err``.
    classifier: ``neg_logit`` (:func:`scoring.negative_logit_rows`; ``batch["y"]`` is the clip's
    class, or a (batch, classes) bool mask of candidate classes for clips whose attribute
    combination was not seen in training), ``embedding`` the pooled embedding, ``loss`` the
    cross-entropy against the (uniformly weighted) candidates.
    """
    if classifier:
        logits, embedding = model(batch["x"])
        y = batch["y"]
        candidates = y if y.ndim == 2 else jax.nn.one_hot(y, logits.shape[1], dtype=bool)
        target = candidates / jnp.sum(candidates, axis=1, keepdims=True)
        return {"neg_logit": scoring.negative_logit_rows(logits, candidates),
                "embedding": embedding,
                "loss": optax.softmax_cross_entropy(logits, target)}
    residual = batch["x"] - model(batch["x"])
    sq_err = jnp.mean(jnp.square(residual), axis=-1)
    return {"sq_err": sq_err, "residual": residual, "loss": sq_err}


# ----------------------------------------------------------------------------------------------
# Update step (pure, jit-compiled, batch sharded over the mesh, state replicated).


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, classifier: bool):
    """Returns ``step(state, monitor, batch) -> (state, monitor)``.

    ``state``: params, rest (BN statistics), opt_state, step. ``monitor`` accumulates on device,
    without a host sync: ``loss_sum``, ``num_steps`` and ``first_bad_step`` (-1 while every loss
    was finite, else the first step whose loss was NaN/inf).
    """

    def step(state, monitor, batch):
        def compute_loss(params, rest):
            model = nnx.merge(graphdef, params, rest, copy=True)
            loss = loss_fn(model, batch, classifier)
            _, _, rest = nnx.split(model, nnx.Param, ...)
            return loss, rest

        (loss, rest), grads = jax.value_and_grad(compute_loss, has_aux=True)(
            state["params"], state["rest"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new_state = {
            "params": optax.apply_updates(state["params"], updates),
            "rest": rest,
            "opt_state": opt_state,
            "step": state["step"] + 1,
        }
        bad = ~jnp.isfinite(loss) & (monitor["first_bad_step"] < 0)
        new_monitor = {
            "loss_sum": monitor["loss_sum"] + loss,
            "num_steps": monitor["num_steps"] + 1,
            "first_bad_step": jnp.where(bad, state["step"], monitor["first_bad_step"]),
        }
        return new_state, new_monitor

    return jax.jit(step, donate_argnums=(0, 1))


def new_monitor(mesh) -> dict[str, jax.Array]:
    return sharding.replicate(
        {"loss_sum": jnp.zeros((), jnp.float32), "num_steps": jnp.zeros((), jnp.int32),
         "first_bad_step": jnp.full((), -1, jnp.int32)}, mesh)


# ----------------------------------------------------------------------------------------------
# Clip-level outputs: every window of every clip through the model, averaged per clip on device.


def make_clip_sums(graphdef: nnx.GraphDef, classifier: bool, num_clips: int, block_size: int):
    """Returns ``fn(state, acc, batch) -> acc`` adding each row output into its clip's sum.

    With ``"moments"`` in ``acc`` (autoencoder), also merges the batch's residual-block moments
    per domain (``batch["is_target"]``) for the Mahalanobis score.
    """

    def fn(state, acc, batch):
        model = nnx.merge(graphdef, state["params"], state["rest"], copy=True)
        rows = row_outputs(model, batch, classifier)
        weight = batch["mask"].astype(jnp.float32)
        rows["count"] = jnp.ones_like(weight)
        segment = jnp.where(batch["mask"], batch["clip"], num_clips)  # padding -> dropped segment
        new = {"sums": {
            k: acc["sums"][k] + jax.ops.segment_sum(v * weight.reshape((-1,) + (1,) * (v.ndim - 1)),
                                                    segment, num_segments=num_clips)
            for k, v in rows.items()}}
        if "moments" in acc:
            batch_moments = scoring.residual_block_moments(
                rows["residual"], batch["is_target"], batch["mask"], block_size=block_size)
            new["moments"] = scoring.merge_block_moments(acc["moments"], batch_moments)
        return new

    return jax.jit(fn, donate_argnums=(1,))


def clip_means(config, graphdef, state, log_mels: np.ndarray, clip_classes: np.ndarray | None,
               mesh, progress: bool = True, clip_is_target: np.ndarray | None = None,
               hop: int | None = None):
    """Mean of every per-window output (see :func:`row_outputs`) over each clip's windows.

    Windows start every ``hop`` frames (default ``input.eval_hop``). Returns numpy arrays with a
    leading ``clips`` axis; ``count`` holds the windows per clip.
    With ``clip_is_target`` (bool per clip; autoencoder only), also returns ``moments``: the
    residual-block moments of all windows per domain (:class:`scoring.BlockMoments`).
    """
    classifier = is_classifier(config)
    num_clips = len(log_mels)
    batch_size = config.input.eval_batch_size
    local = sharding.check_batch_size(batch_size, mesh)
    fn = make_clip_sums(graphdef, classifier, num_clips, config.features.n_mels)
    lo = jax.process_index() * local
    acc = None
    batches = pipeline.eval_batches(log_mels, config.input.window, hop or config.input.eval_hop,
                                    batch_size, config.input.flatten, clip_classes)
    for batch in tqdm.tqdm(batches, desc="scoring", leave=False,
                           disable=not progress or jax.process_index() != 0):
        if clip_is_target is not None:
            batch["is_target"] = clip_is_target[batch["clip"]]
        batch = sharding.shard_batch({k: v[lo:lo + local] for k, v in batch.items()}, mesh)
        if acc is None:
            acc = sharding.replicate(zero_accumulators(graphdef, state, batch, classifier, num_clips,
                                                       clip_is_target is not None, config.features.n_mels), mesh)
        acc = fn(state, acc, batch)
    acc = jax.tree.map(np.asarray, multihost_utils.process_allgather(acc, tiled=True))
    sums = acc["sums"]
    count = sums.pop("count")
    means = {k: v / count.reshape((-1,) + (1,) * (v.ndim - 1)) for k, v in sums.items()}
    means["count"] = count
    if "moments" in acc:
        means["moments"] = acc["moments"]
    return means


def zero_accumulators(graphdef, state, batch, classifier, num_clips, with_moments, block_size):
    """Zero sums shaped like :func:`row_outputs` per clip (+ empty block moments)."""
    shapes = jax.eval_shape(
        lambda s, b: row_outputs(nnx.merge(graphdef, s["params"], s["rest"], copy=True), b, classifier),
        state, batch)
    sums = {k: jnp.zeros((num_clips,) + v.shape[1:], jnp.float32) for k, v in shapes.items()}
    sums["count"] = jnp.zeros((num_clips,), jnp.float32)
    acc = {"sums": sums}
    if with_moments:
        acc["moments"] = scoring.BlockMoments(
            jnp.zeros((2,)), jnp.zeros((2, block_size)), jnp.zeros((2, block_size, block_size)))
    return acc


# ----------------------------------------------------------------------------------------------
# The train loop.


def append_jsonl(path: pathlib.Path, record: dict[str, Any]) -> None:
    """Appends one JSON line (process 0 only)."""
    if jax.process_index() == 0:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def train_unit(config: ml_collections.ConfigDict, unit: Unit, mesh, workdir: pathlib.Path,
               allow_training: bool = True):
    """Trains one model on ``unit`` (resuming from its newest checkpoint); returns (graphdef, state).

    With ``allow_training=False`` the unit's finished checkpoint is loaded, and its absence is an error.
    """
    classifier = is_classifier(config)
    seed = config.seed

    # --- Input: validation clips held out at random; endless shuffled training stream.
    log_mels = unit.train["log_mel"]
    train_idx, val_idx = pipeline.split_validation(len(log_mels), config.data.validation_split, seed)
    classes = unit.train_classes
    sharding.check_batch_size(config.train.batch_size, mesh)
    batches = pipeline.TrainBatches(
        log_mels=log_mels[train_idx], window=config.input.window, hop=config.input.train_hop,
        global_batch_size=config.train.batch_size, seed=seed, flatten=config.input.flatten,
        clip_labels=None if classes is None else classes[train_idx],
        process_index=jax.process_index(), process_count=jax.process_count())
    total_steps = config.train.num_epochs * batches.steps_per_epoch

    # --- Model and optimizer; parameters replicated over the mesh.
    model = create_model(config, len(unit.class_names), seed)
    model.eval()   # BN on running statistics: validation and scoring
    eval_graphdef, _, _ = nnx.split(model, nnx.Param, ...)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(config.train.learning_rate)
    state = sharding.replicate(
        {"params": params, "rest": rest, "opt_state": tx.init(params),
         "step": jnp.zeros((), jnp.int32)}, mesh)
    train_step = make_train_step(graphdef, tx, classifier)

    # --- Checkpoints: resume from the newest one if there is one.
    ckpt = checkpoint.Checkpointer(workdir / "checkpoints" / unit.name, config.ckpt.save_every_steps,
                                   config.ckpt.keep)
    if ckpt.latest_step() is not None:
        state, data_state = ckpt.restore(state)
        batches.set_state(data_state)
        logging.info("%s: resuming at step %d of %d", unit.name, int(state["step"]), total_steps)
    step = int(state["step"])
    if not allow_training and step < total_steps:
        raise FileNotFoundError(
            f"{unit.name}: no finished checkpoint in {workdir / 'checkpoints' / unit.name} (newest step "
            f"{ckpt.latest_step()}, training needs {total_steps}); run --mode train or all first")

    # --- Loop.
    metrics_path = workdir / "metrics.jsonl"
    monitor = new_monitor(mesh)
    epoch_start, steps_at_epoch_start = time.perf_counter(), step
    bar = tqdm.tqdm(total=total_steps, initial=step, desc=f"train {unit.name}", unit="step",
                    disable=jax.process_index() != 0 or step >= total_steps)
    # A run stopped by an error (e.g. a NaN loss) first lets pending asynchronous saves of good
    # states finish, so its newest checkpoint survives.
    boundary = preemption.StepBoundary()  # PREEMPTION hook 1/3: SIGTERM/SIGINT wait for the step boundary
    try:
        while step < total_steps:
            state, monitor = train_step(state, monitor, sharding.shard_batch(next(batches), mesh))
            step += 1
            bar.update(1)
            epoch_done = batches.step_in_epoch == 0
            if step % config.train.log_every_steps == 0 or epoch_done or step == total_steps:
                loss = check_finite(monitor, unit.name)
                bar.set_postfix(loss=f"{loss:.4g}")
            if epoch_done or step == total_steps:
                seconds = time.perf_counter() - epoch_start
                record = {"unit": unit.name, "step": step, "epoch": batches.epoch, "loss": loss,
                          "epoch_time_s": seconds,
                          "samples_per_s": (step - steps_at_epoch_start) * config.train.batch_size / seconds}
                if len(val_idx):
                    record["val_loss"] = float(np.mean(clip_means(
                        config, eval_graphdef, state, log_mels[val_idx],
                        None if classes is None else classes[val_idx], mesh, progress=False,
                        hop=config.input.train_hop)["loss"]))
                append_jsonl(metrics_path, record)
                monitor = new_monitor(mesh)
                epoch_start, steps_at_epoch_start = time.perf_counter(), step
            if step % config.ckpt.save_every_steps == 0 or step == total_steps:
                check_finite(monitor, unit.name)
                ckpt.save(step, state, batches.get_state(), force=step == total_steps)
            if boundary.requested:  # PREEMPTION hook 2/3: save state + data position, then stop
                check_finite(monitor, unit.name)
                ckpt.save_now(step, state, batches.get_state())
                raise boundary.preempted(step, unit.name)
    finally:
        bar.close()
        ckpt.wait()
        ckpt.close()
        boundary.close()  # PREEMPTION hook 3/3: previous handlers back (a late signal is re-raised)
    return eval_graphdef, state


def check_finite(monitor: dict[str, jax.Array], unit_name: str) -> float:
    """Host sync: raises NonFiniteLossError if any loss since the last reset was NaN/inf; else the mean loss."""
    first_bad = int(monitor["first_bad_step"])
    if first_bad >= 0:
        raise NonFiniteLossError(
            f"{unit_name}: non-finite training loss at step {first_bad}; stopped without saving, so the newest "
            "checkpoint holds the last good state (lower train.learning_rate or check the input features)")
    return float(monitor["loss_sum"]) / max(int(monitor["num_steps"]), 1)


# ----------------------------------------------------------------------------------------------
# Scoring: clip-level outputs -> one anomaly score per clip for every configured method.


def score_methods(config: ml_collections.ConfigDict) -> list[str]:
    methods = [m.strip() for m in config.eval.scores.split(",") if m.strip()]
    allowed = CLASSIFIER_SCORES if is_classifier(config) else AUTOENCODER_SCORES
    unknown = sorted(set(methods) - set(allowed))
    if unknown or not methods:
        raise ValueError(f"eval.scores {config.eval.scores!r}: {config.model.name} supports {allowed}")
    return methods


AUTOENCODER_SCORES = ("mse", "mahalanobis")
CLASSIFIER_SCORES = ("neg_logit", "knn")


def score_unit(config, unit: Unit, graphdef, state, mesh) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{method: (train clip scores, test clip scores)}, float64 numpy, larger = more anomalous.

    Training-clip scores set the decision thresholds.
    """
    methods = score_methods(config)
    train_is_target = unit.train["domain"] == 1
    wants_moments = "mahalanobis" in methods
    train_out = clip_means(config, graphdef, state, unit.train["log_mel"], unit.train_classes, mesh,
                           clip_is_target=train_is_target if wants_moments else None)
    test_out = clip_means(config, graphdef, state, unit.test["log_mel"], unit.test_classes, mesh)
    scores = {}
    for method in methods:
        if method == "mse":
            pair = train_out["sq_err"], test_out["sq_err"]
        elif method == "mahalanobis":
            precisions = scoring.fit_mahalanobis(train_out["moments"])
            pair = tuple(mahalanobis_of_clip_means(out["residual"], precisions)
                         for out in (train_out, test_out))
        elif method == "neg_logit":
            pair = train_out["neg_logit"], test_out["neg_logit"]
        else:  # knn: training clips are scored leave-one-out, so none is its own neighbour
            bank = jnp.asarray(train_out["embedding"])
            pair = (scoring.knn_clip_scores(bank, bank, train_is_target, k=config.eval.knn_k,
                                            exclude=jnp.arange(len(bank))),
                    scoring.knn_clip_scores(jnp.asarray(test_out["embedding"]), bank, train_is_target,
                                            k=config.eval.knn_k))
        scores[method] = tuple(np.asarray(p, np.float64) for p in pair)
    return scores


def mahalanobis_of_clip_means(mean_residual: np.ndarray, precisions: jax.Array) -> jax.Array:
    """Mahalanobis score from each clip's mean residual vector (clips, window * mels).

    Cut into mel-sized blocks and averaged again, it is the clip's mean residual block, which is
    all the score needs.
    """
    block_size = precisions.shape[1]
    blocks = jnp.asarray(mean_residual).reshape(len(mean_residual), -1, block_size)
    return scoring.mahalanobis_block_scores(blocks.mean(axis=1), precisions)


# ----------------------------------------------------------------------------------------------
# Driver.


def default_workdir(config: ml_collections.ConfigDict) -> str:
    return os.path.join("workdirs", config.model.name)


def make_units(config, splits: dict[str, tuple[dict, dict]]) -> list[Unit]:
    """Training units from {machine: (train split, test split)}.

    One unit per machine type, or per (machine type, section) with ``data.per_section``, or
    one over all machine types for the ``machine_section`` classification target.
    """
    if is_classifier(config) and config.data.target == "machine_section":
        units = [Unit(name="all_machines", machine="all",
                      train=concatenate_splits([tr for tr, _ in splits.values()]),
                      test=concatenate_splits([te for _, te in splits.values()]))]
    else:
        units = []
        for machine, (train_split, test_split) in splits.items():
            if not config.data.per_section:
                units.append(Unit(name=machine, machine=machine, train=train_split, test=test_split))
                continue
            for section in np.unique(train_split["section"]):
                units.append(Unit(
                    name=f"{machine}_section_{section:02d}", machine=machine,
                    train=select_clips(train_split, train_split["section"] == section),
                    test=select_clips(test_split, test_split["section"] == section)))
    if is_classifier(config):
        for unit in units:
            add_class_targets(unit, config.data.target)
    return units


def concatenate_splits(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One split from several machine types' splits (their clips must have equal frame counts)."""
    frames = {p["log_mel"].shape[1:] for p in parts}
    if len(frames) > 1:
        raise ValueError(f"the machine_section target trains one model on all machine types, whose clips "
                         f"must then have one length; found log-Mel shapes {sorted(frames)}")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def add_class_targets(unit: Unit, kind: str) -> None:
    """Class list from the unit's training clips; int classes for training clips and candidate
    masks for test clips (an attribute combination unseen in training -> its section's classes)."""
    def keys(split, attributes_known=None):
        return targets.class_keys(kind, split["machine"], split["section"], split["attribute_names"],
                                  split["attribute_values"], attributes_known=attributes_known)

    train_keys = keys(unit.train)
    unit.class_names = targets.build_classes(kind, train_keys)
    unit.train_classes = targets.encode(train_keys, unit.class_names)
    known = [not layout.is_unlabelled_name(n) for n in unit.test["file_name"]]
    unit.test_classes = targets.true_class_mask(keys(unit.test, known), unit.class_names, unknown="section")


def clip_table(tests: list[dict[str, np.ndarray]], scores: list[np.ndarray]) -> evaluate.ClipScores:
    """Per-clip metadata of test splits + their scores -> one results table."""
    def column(name):
        return np.concatenate([t[name] for t in tests])
    domain_names = np.array(["unknown", "source", "target"])
    return evaluate.ClipScores(
        machine=column("machine"), section=column("section"), file_name=column("file_name"),
        domain=domain_names[column("domain") + 1], label=column("label"), score=np.concatenate(scores))


def load_splits(config, machine: str, builder) -> tuple[dict, dict]:
    """(train, test) per-clip arrays of one machine type; eval-set ground truth applied if given."""
    train_split = tfds_builder.load_split(builder, "train")
    test_split = tfds_builder.load_split(builder, "test")
    if config.data.eval_ground_truth:
        test_split = prepare.with_ground_truth(test_split, machine, config.data.eval_ground_truth)
    return train_split, test_split


def iterate_units(config, builders: dict):
    """Units in order, loading one machine type's shards at a time where the units allow it."""
    if is_classifier(config) and config.data.target == "machine_section":
        yield from make_units(config, {m: load_splits(config, m, b) for m, b in builders.items()})
        return
    for machine, builder in builders.items():
        yield from make_units(config, {machine: load_splits(config, machine, builder)})


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, mode: str = "all",
                       restart: bool = False) -> str | None:  # WORKDIR hook 1/2: restart
    """Prepares the data, trains one model per unit, scores the test clips and writes ``results/``.

    mode: "prepare" (shards only), "train" (no scoring), "evaluate" (score with the finished
    checkpoints; an unfinished unit is an error), "all". Returns the report (markdown) when it
    scores.
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    workdir_guard.claim(config, workdir, restart)  # WORKDIR hook 2/2: refuse another config's run
    builders = prepare.prepare(config)
    if mode == "prepare":
        return None

    mesh = sharding.make_mesh(config.train.num_devices or None)
    logging.info("mesh: %d devices %s", mesh.size, mesh.devices.ravel().tolist())
    methods = score_methods(config)
    train_scores = {m: [] for m in methods}
    train_machines = []
    test_scores = {m: [] for m in methods}
    test_splits = []
    for unit in iterate_units(config, builders):
        graphdef, state = train_unit(config, unit, mesh, workdir, allow_training=mode != "evaluate")
        if mode == "train":
            continue
        for method, (train, test) in score_unit(config, unit, graphdef, state, mesh).items():
            train_scores[method].append(train)
            test_scores[method].append(test)
        train_machines.append(unit.train["machine"])
        test_splits.append({k: v for k, v in unit.test.items() if k != "log_mel"})  # MEMORY hook: metadata only
    if mode == "train" or jax.process_index() != 0:
        return None

    results_dir = workdir / "results"
    machines = np.concatenate(train_machines)
    summaries = {}
    for method in methods:
        thresholds = evaluate.fit_machine_thresholds(
            machines, np.concatenate(train_scores[method]), config.eval.decision_percentile)
        summaries[method] = evaluate.evaluate_method(
            results_dir, method, clip_table(test_splits, test_scores[method]), thresholds,
            max_fpr=config.eval.max_fpr, percentile=config.eval.decision_percentile)
    report = evaluate.write_report(results_dir, summaries)
    print(report)
    return report
