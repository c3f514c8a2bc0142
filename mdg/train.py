"""Training and evaluation: ``train_and_evaluate(config, workdir)``, one loop for every model.

Read top to bottom: model and train state, the update step (compiled once), the train loop (mesh,
input with device prefetch, checkpoint/resume, NaN guard, metrics), and the driver that trains
every unit (:mod:`mdg.units`), scores it (:mod:`mdg.score_methods`) and writes the results
(:mod:`mdg.evaluate`).

What a loop iteration does is decided by declarations, not by model names: the model's ``KIND``
and ``OUTPUTS`` (:mod:`mdg.models`), the objective named by ``train.loss``
(:mod:`mdg.objectives`), and the score methods named by ``eval.scores``.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging
from etils import epath
from flax import nnx

from mdg import (checkpoint, clip_outputs, console, errors, evaluate, losses, models, objectives, precise_bn,
                 preemption, report, score_methods, sharding, storage, workdir_guard)
from mdg.data import pipeline, prepare
from mdg.units import Unit, iterate_units

PREFETCH_BATCHES = 2   # training batches put on the devices ahead of the running step


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the newest checkpoint is the last good state."""


# ----------------------------------------------------------------------------------------------
# Model and train state.


def create_model(config: ml_collections.ConfigDict, num_classes: int,
                 objective: objectives.Objective) -> nnx.Module:
    """The model named by ``config.model.name``, sized by ``config.model``, with the head the
    objective needs, computing in ``config.train.compute_dtype``; parameters from ``config.seed``."""
    kwargs = {k: v for k, v in config.model.items() if k != "name"}
    kwargs["dtype"] = config.train.compute_dtype
    if models.model_class(config.model.name).KIND == "classifier":
        kwargs.update(num_classes=num_classes, **objective.model_kwargs(num_classes))
    return models.create_model(config.model.name, rngs=nnx.Rngs(config.seed), **kwargs)


def initial_state(model: nnx.Module, tx: optax.GradientTransformation, seed: int) -> dict[str, Any]:
    """The train state pytree: ``params``, ``rest`` (:func:`mdg.models.split_pure`), ``opt_state``,
    ``step`` int32, ``rng`` uint32 key data (mixup and anything stochastic; checkpointed)."""
    params, rest = models.split_pure(model)
    rng = jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 1))
    return {"params": params, "rest": rest, "opt_state": tx.init(params),
            "step": jnp.zeros((), jnp.int32), "rng": rng}


def optimizer(learning_rate: float) -> optax.GradientTransformation:
    return optax.adam(learning_rate)


# ----------------------------------------------------------------------------------------------
# Update step (pure, jit-compiled once per graph and settings, batch sharded, state replicated).


@functools.cache
def train_step_fn(graphdef: nnx.GraphDef, objective: objectives.Objective, num_classes: int,
                  learning_rate: float, mixup_alpha: float):
    """Jitted ``step(state, monitor, batch) -> (state, monitor)``; cached, so every unit and epoch
    with the same graph and settings reuses one compilation.

    ``batch``: ``x`` windows, ``y`` int32 class per window (classifiers). With ``mixup_alpha`` > 0
    the inputs and one-hot targets are mixed (:func:`mdg.losses.mixup`) with a key split off the
    state's ``rng``. ``monitor`` accumulates on device, without a host sync: ``loss_sum``,
    ``num_steps`` and ``first_bad_step`` (-1 while every loss was finite, else the first step
    whose loss was NaN/inf).
    """
    tx = optimizer(learning_rate)

    def step(state, monitor, batch):
        rng, mix_key = jax.random.split(jax.random.wrap_key_data(state["rng"]))
        x = batch["x"]
        targets = jax.nn.one_hot(batch["y"], num_classes) if objective.kind == "classifier" else None
        if mixup_alpha > 0:
            x, mixed = losses.mixup(mix_key, x, x if targets is None else targets, mixup_alpha)
            targets = None if targets is None else mixed

        def compute_loss(params, rest):
            model = nnx.merge(graphdef, params, rest, copy=True)
            loss = jnp.mean(objective.row_loss(model, model.outputs(x), x, targets, training=True))
            return loss, models.split_pure(model)[1]

        (loss, rest), grads = jax.value_and_grad(compute_loss, has_aux=True)(
            state["params"], state["rest"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new_state = {
            "params": optax.apply_updates(state["params"], updates),
            "rest": rest,
            "opt_state": opt_state,
            "step": state["step"] + 1,
            "rng": jax.random.key_data(rng),
        }
        bad = ~jnp.isfinite(loss) & (monitor["first_bad_step"] < 0)
        new_monitor = {
            "loss_sum": monitor["loss_sum"] + loss,
            "num_steps": monitor["num_steps"] + 1,
            "first_bad_step": jnp.where(bad, state["step"], monitor["first_bad_step"]),
        }
        return new_state, new_monitor

    return jax.jit(step, donate_argnums=(0,))   # the monitor is not donated: the loop waits on it


def new_monitor(mesh) -> dict[str, jax.Array]:
    return sharding.replicate(
        {"loss_sum": jnp.zeros((), jnp.float32), "num_steps": jnp.zeros((), jnp.int32),
         "first_bad_step": jnp.full((), -1, jnp.int32)}, mesh)


def check_finite(monitor: dict[str, jax.Array], unit_name: str) -> float:
    """Host sync: raises NonFiniteLossError if any loss since the last reset was NaN/inf; else the mean loss."""
    first_bad = int(monitor["first_bad_step"])
    if first_bad >= 0:
        raise NonFiniteLossError(
            f"{unit_name}: non-finite training loss at step {first_bad}; stopped without saving, so the newest "
            "checkpoint holds the last good state (lower train.learning_rate or check the input features)")
    return float(monitor["loss_sum"]) / max(int(monitor["num_steps"]), 1)


# ----------------------------------------------------------------------------------------------
# Input: batches put on the devices ahead of the step that uses them.


def prefetch_to_devices(batches: pipeline.TrainBatches, mesh, size: int = PREFETCH_BATCHES
                        ) -> Iterator[tuple[dict[str, jax.Array], dict[str, int]]]:
    """Yields ``(device batch, stream position after it)``, keeping ``size`` batches in flight.

    The transfers are asynchronous, so the next batches are copied while the current step runs;
    the position is what a checkpoint taken after that batch's step must store.
    """
    queue = collections.deque()

    def enqueue():
        batch = next(batches)
        queue.append((sharding.shard_batch(batch, mesh), batches.get_state()))

    for _ in range(size):
        enqueue()
    while True:
        item = queue.popleft()
        enqueue()
        yield item


@functools.cache
def _compile_clock() -> list[float]:
    """Seconds spent in XLA compilation in this process so far (a one-element list, updated by a
    jax.monitoring listener registered on first use)."""
    total = [0.0]

    def listen(event: str, seconds: float, **_) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            total[0] += seconds

    jax.monitoring.register_event_duration_secs_listener(listen)
    return total


# ----------------------------------------------------------------------------------------------
# The train loop.


def append_jsonl(path: epath.Path, record: dict[str, Any]) -> None:
    """Appends one JSON line (process 0 only) by rewriting the whole (small) file atomically:
    buckets (gs://) have no append."""
    if jax.process_index() == 0:
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        storage.write_atomic(path, old + json.dumps(record) + "\n")


def train_unit(config: ml_collections.ConfigDict, unit: Unit, mesh, workdir: epath.Path,
               allow_training: bool = True, scalars: report.tensorboard.ScalarWriter | None = None):
    """Trains one model on ``unit`` (resuming from its newest checkpoint).

    Returns ``(eval_graphdef, state)``: the eval-mode graph (BN on running statistics) and the
    final train state. With ``allow_training=False`` the unit's finished checkpoint is loaded, and
    its absence is an error. Every epoch's record goes to ``metrics.jsonl`` (and ``scalars``).
    """
    compile_clock = _compile_clock()
    seed = config.seed
    objective = objectives.from_config(config)
    num_classes = len(unit.class_names)

    # --- Input: validation clips held out at random; endless shuffled training stream.
    log_mels = unit.train["log_mel"]
    train_idx, val_idx = pipeline.split_validation(len(log_mels), config.data.validation_split, seed)
    classes = unit.train_classes
    sharding.check_batch_size(config.train.batch_size, mesh)
    def training_stream() -> pipeline.TrainBatches:
        return pipeline.TrainBatches(
            log_mels=log_mels[train_idx], window=config.input.window, hop=config.input.train_hop,
            global_batch_size=config.train.batch_size, seed=seed, flatten=config.input.flatten,
            clip_labels=None if classes is None else classes[train_idx], shuffle_clips=config.input.shuffle_clips,
            jitter=config.input.train_jitter, process_index=jax.process_index(), process_count=jax.process_count())

    batches = training_stream()
    total_steps = config.train.num_epochs * batches.steps_per_epoch
    val_candidates = None if classes is None else np.eye(num_classes, dtype=bool)[classes[val_idx]]

    # --- Model, optimizer and train state; replicated over the mesh.
    model = create_model(config, num_classes, objective)
    model.eval()   # BN on running statistics: validation and scoring
    eval_graphdef, _, _ = nnx.split(model, nnx.Param, ...)
    model.train()
    graphdef = nnx.split(model, nnx.Param, ...)[0]
    state = sharding.replicate(initial_state(model, optimizer(config.train.learning_rate), seed), mesh)
    train_step = train_step_fn(graphdef, objective, num_classes, float(config.train.learning_rate),
                               float(config.train.mixup_alpha))

    def with_precise_batch_norm(state):
        """The final state with BatchNorm statistics recomputed over the first
        ``train.precise_bn_batches`` batches of the training stream (at most one epoch)."""
        count = min(config.train.precise_bn_batches, batches.steps_per_epoch)
        if not count or not precise_bn.has_batch_norm(model):
            return state
        rest = precise_bn.recompute(graphdef, state["params"], state["rest"],
                                    itertools.islice(training_stream(), count), mesh)
        return dict(state, rest=rest)

    # --- Checkpoints: resume from the newest one if there is one.
    ckpt = checkpoint.Checkpointer(workdir / "checkpoints" / unit.name, config.ckpt.save_every_steps,
                                   config.ckpt.keep)
    if ckpt.latest_step() is not None:
        state, data_state = ckpt.restore(state)
        batches.set_state(data_state)
        console.stage("%s: resuming at step %d of %d", unit.name, int(state["step"]), total_steps)
    step = int(state["step"])
    if not allow_training and step < total_steps:
        raise errors.UserError(
            f"{unit.name}: no finished checkpoint in {workdir / 'checkpoints' / unit.name} (newest step "
            f"{ckpt.latest_step()}, training needs {total_steps}); run --mode train or all first")

    def validation() -> dict[str, float]:
        """Mean loss over the held-out clips' windows (``val_loss``); classifiers also the share
        of windows whose most probable class is the clip's own (``val_accuracy``), which a
        confidently wrong minority can hide in the loss."""
        wanted = ("loss",) if classes is None else ("loss", "correct")
        means = clip_outputs.clip_means(
            eval_graphdef, {"params": state["params"], "rest": state["rest"]}, objective, wanted,
            log_mels[val_idx], mesh, window=config.input.window, hop=config.input.train_hop,
            flatten=config.input.flatten, batch_size=config.input.eval_batch_size,
            clip_classes=val_candidates)
        names = {"loss": "val_loss", "correct": "val_accuracy"}
        return {names[k]: float(np.mean(means[k])) for k in wanted}   # every clip has as many windows

    # --- Loop.
    metrics_path = workdir / "metrics.jsonl"
    monitor = new_monitor(mesh)
    epoch_start, steps_at_epoch_start, compile_at_epoch_start = time.perf_counter(), step, compile_clock[0]
    bar = tqdm.tqdm(total=total_steps, initial=step, desc=f"train {unit.name}", unit="step",
                    disable=jax.process_index() != 0 or step >= total_steps)
    stream = prefetch_to_devices(batches, mesh) if step < total_steps else iter(())
    # SIGTERM / Ctrl-C wait for the step boundary: checkpoint (state + data position), then stop.
    boundary = preemption.StepBoundary()
    # A run stopped by an error (e.g. a NaN loss) first lets pending asynchronous saves of good
    # states finish, so its newest checkpoint survives.
    try:
        for batch, data_state in stream:
            previous_monitor = monitor
            state, monitor = train_step(state, monitor, batch)
            # At most two steps in flight: the device stays busy, and asynchronous dispatch does
            # not queue (and hold the batches of) every step up to the next host sync.
            jax.block_until_ready(previous_monitor)
            step += 1
            bar.update(1)
            if step == total_steps:
                state = with_precise_batch_norm(state)
            epoch_done = data_state["step_in_epoch"] == 0
            if step % config.train.log_every_steps == 0 or epoch_done or step == total_steps:
                loss = check_finite(monitor, unit.name)
                bar.set_postfix(loss=f"{loss:.4g}")
            if epoch_done or step == total_steps:
                record = {"unit": unit.name, "step": step, "epoch": data_state["epoch"], "loss": loss,
                          "learning_rate": float(config.train.learning_rate)}
                if len(val_idx):
                    record.update(validation())
                seconds = time.perf_counter() - epoch_start   # training + validation
                record.update(epoch_time_s=seconds, compile_s=compile_clock[0] - compile_at_epoch_start,
                              samples_per_s=(step - steps_at_epoch_start) * config.train.batch_size / seconds)
                append_jsonl(metrics_path, record)
                if scalars is not None and jax.process_index() == 0:
                    scalars.write(step, {k: v for k, v in record.items() if k not in ("unit", "step", "epoch")},
                                  unit.name)
                monitor = new_monitor(mesh)
                epoch_start, steps_at_epoch_start = time.perf_counter(), step
                compile_at_epoch_start = compile_clock[0]
            if step % config.ckpt.save_every_steps == 0 or step == total_steps:
                check_finite(monitor, unit.name)
                ckpt.save(step, state, data_state, force=step == total_steps)
            if step == total_steps:
                break
            if boundary.requested:
                check_finite(monitor, unit.name)
                ckpt.save_now(step, state, data_state)
                raise boundary.preempted(step, unit.name)
    finally:
        bar.close()
        ckpt.wait()
        ckpt.close()
        boundary.close()   # the previous handlers back (a signal that arrived late is re-raised)
    return eval_graphdef, state


# ----------------------------------------------------------------------------------------------
# Driver.


def default_workdir(config: ml_collections.ConfigDict) -> str:
    return os.path.join("workdirs", config.model.name)


CLIP_FIELDS = ("file_name", "machine", "section", "domain", "label", "attribute_names", "attribute_values")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, mode: str = "all",
                       restart: bool = False) -> str | None:
    """Prepares the data, trains one model per unit, scores the test clips and writes ``results/``.

    mode: "prepare" (shards only), "train" (no scoring), "evaluate" (score with the finished
    checkpoints; an unfinished unit is an error), "all". A workdir holding a run of another
    config is refused unless ``restart`` (which moves the old run aside). Returns the report
    (markdown) when it scores.
    """
    objective = objectives.from_config(config)      # configuration errors before any work
    methods = score_methods.from_config(config)
    prepare.check_synthetic_settings(config)
    workdir = storage.path(workdir)   # local folder or gs:// bucket
    workdir.mkdir(parents=True, exist_ok=True)
    workdir_guard.claim(config, workdir, restart)
    builders = prepare.prepare(config)
    console.stage("prepare: log-Mel shards of %s", ", ".join(builders))
    if mode == "prepare":
        return None

    mesh = sharding.make_mesh(config.train.num_devices or None)
    logging.info("mesh: %d devices %s", mesh.size, mesh.devices.ravel().tolist())
    # The per-clip table always carries the local outlier factor of the embedding.
    table_methods = methods + [m for m in ("lof",) if m not in methods]
    scored, clips = [], []
    with report.tensorboard.ScalarWriter(report.tensorboard.logdir(workdir),
                                         config.eval.tensorboard and jax.process_index() == 0) as scalars:
        for unit in iterate_units(config, builders):
            graphdef, state = train_unit(config, unit, mesh, workdir, allow_training=mode != "evaluate",
                                         scalars=scalars)
            console.stage("%s %s: step %d", "restore" if mode == "evaluate" else "train", unit.name, int(state["step"]))
            if mode == "train":
                continue
            scored.append(score_methods.score_unit(
                config, unit, graphdef, {"params": state["params"], "rest": state["rest"]}, mesh, objective,
                table_methods))
            console.stage("score %s: %s", unit.name, ", ".join(table_methods))
            clips.append({split: {k: getattr(unit, split)[k] for k in CLIP_FIELDS} for split in ("train", "test")})
    if mode == "train" or jax.process_index() != 0:
        return None
    return write_results(config, workdir, methods, table_methods, clips, scored)


def write_results(config, workdir: epath.Path, methods: list[str], table_methods: list[str],
                  clips: list[dict[str, dict[str, np.ndarray]]], scored: list[score_methods.ScoredUnit]) -> str:
    """Submission files, summaries and the report (``methods``), then the per-clip table, plots,
    report.html and final TensorBoard figures (``table_methods``); prints the summary table and
    where the outputs are, and returns the markdown report."""
    def rows(split: str, name: str) -> np.ndarray:
        return np.concatenate([c[split][name] for c in clips])

    results_dir = workdir / "results"
    train_machines = rows("train", "machine")
    thresholds = {m: evaluate.fit_machine_thresholds(
        train_machines, np.concatenate([s.scores[m][0] for s in scored]), config.eval.decision_percentile)
        for m in table_methods}
    markdown, summaries = evaluate.write_results(
        results_dir, [c["test"] for c in clips], {m: [s.scores[m][1] for s in scored] for m in methods},
        {m: thresholds[m] for m in methods}, max_fpr=config.eval.max_fpr, percentile=config.eval.decision_percentile)

    # One row per clip: every unit's training clips, then its test clips.
    table = {k: np.concatenate([np.concatenate([c["train"][k], c["test"][k]]) for c in clips]) for k in CLIP_FIELDS}
    table["split"] = np.concatenate([np.repeat(["train", "test"], [len(c["train"]["machine"]), len(c["test"]["machine"])])
                                     for c in clips])
    scores = {m: np.concatenate([np.concatenate(s.scores[m]) for s in scored]) for m in table_methods}
    decisions = {m: (scores[m] > np.array([thresholds[m][machine] for machine in table["machine"]])).astype(np.int32)
                 for m in table_methods}
    embeddings = np.concatenate([np.concatenate([s.train_embedding, s.test_embedding]) for s in scored])
    written = report.write_all(results_dir, workdir, table, scores, decisions, embeddings, config.model.name,
                               prepare.data_root(config), tensorboard_enabled=config.eval.tensorboard)
    console.stage("write results: %s", results_dir)
    outputs = {"workdir": workdir, "results": results_dir, "report": results_dir / "report.md",
               "checkpoints": workdir / "checkpoints", "full log": console.log_path(workdir)}
    labels = {"clips": "clip table", "plots": "plots", "report": "html report", "tensorboard": "tensorboard"}
    outputs.update({labels[kind]: paths[0] if len(paths) == 1 else results_dir / kind
                    for kind, paths in written.items() if paths})
    console.final(evaluate.summary_table(summaries) + "\n\n" + console.outputs_text(outputs))
    return markdown
