"""Clip-level model outputs: every window of every clip through the model, averaged per clip on device.

The one path from a trained model to per-clip numbers: the validation loss and every anomaly score
(:mod:`mdg.score_methods`) start from :func:`clip_means`. Per-window outputs (:func:`row_outputs`)
are summed into their clip's slot inside the compiled function, so only ``(clips, ...)`` arrays
leave the devices.

Compiled once: the jitted function is cached per (model graph, objective, outputs, clip-count
bucket), and the clip count is rounded up to a power of two (padding clips are dropped), so
validation after every epoch, the scoring passes and later units of the same shapes reuse one
executable instead of recompiling.

Multi-host: every process builds and feeds only its own rows of each global eval batch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from flax import nnx
from jax.experimental import multihost_utils

from mdg import scoring, sharding
from mdg.data import pipeline

# Per-window outputs by model kind; see row_outputs.
ROW_OUTPUTS = {"reconstruction": ("sq_err", "residual", "embedding", "loss"),
               "classifier": ("neg_logit", "correct", "embedding", "loss")}
MIN_CLIP_BUCKET = 16


def row_outputs(model, batch: dict[str, jax.Array], objective, wanted: tuple[str, ...]) -> dict[str, jax.Array]:
    """Per-window outputs, each ``(batch, ...)`` float32, for the names in ``wanted``.

    reconstruction models: ``sq_err`` mean squared reconstruction error of the window,
    ``residual`` input minus reconstruction (window * mels).
    classifiers: ``neg_logit`` (:func:`mdg.scoring.negative_logit_rows`; ``batch["y"]`` is the
    (batch, classes) bool mask of the window's clip's candidate classes), ``correct`` 1 where the
    window's most probable class (over all classes) is one of its candidates, else 0.
    both: ``embedding``; ``loss`` the objective's per-window loss (no AdaCos scale update).
    """
    outputs = model.outputs(batch["x"])
    rows = {"embedding": outputs["embedding"]}
    targets = None
    if model.KIND == "reconstruction":
        rows["residual"] = batch["x"] - outputs["reconstruction"]
        rows["sq_err"] = jnp.mean(jnp.square(rows["residual"]), axis=-1)
    else:
        candidates = batch["y"]
        targets = candidates / jnp.sum(candidates, axis=1, keepdims=True)
        rows["neg_logit"] = scoring.negative_logit_rows(outputs["logits"], candidates)
        predicted = jnp.argmax(outputs["logits"], axis=1)
        rows["correct"] = jnp.take_along_axis(candidates, predicted[:, None], axis=1)[:, 0]
    if "loss" in wanted:
        rows["loss"] = objective.row_loss(model, outputs, batch["x"], targets, training=False)
    return {name: rows[name].astype(jnp.float32) for name in wanted}


def clip_bucket(num_clips: int) -> int:
    """Clip slots of the compiled accumulator: the next power of two >= ``num_clips`` (min 16)."""
    return max(MIN_CLIP_BUCKET, 1 << max(num_clips - 1, 0).bit_length())


@functools.cache
def clip_sums_fn(graphdef: nnx.GraphDef, objective, wanted: tuple[str, ...], num_slots: int,
                 moments_block: int):
    """Jitted ``fn(model_state, acc, batch) -> acc`` adding each window's outputs to its clip's sums.

    ``moments_block`` > 0 (autoencoder Mahalanobis): also merges the batch's residual-block
    moments per domain (``batch["is_target"]``). Cached: one compilation per distinct arguments
    and input shapes.
    """

    def fn(model_state, acc, batch):
        model = nnx.merge(graphdef, model_state["params"], model_state["rest"], copy=True)
        rows = row_outputs(model, batch, objective, wanted)
        weight = batch["mask"].astype(jnp.float32)
        rows["count"] = jnp.ones_like(weight)
        segment = jnp.where(batch["mask"], batch["clip"], num_slots)  # padding -> dropped
        new = {"sums": {
            k: acc["sums"][k] + jax.ops.segment_sum(v * weight.reshape((-1,) + (1,) * (v.ndim - 1)),
                                                    segment, num_segments=num_slots)
            for k, v in rows.items()}}
        if moments_block:
            batch_moments = scoring.residual_block_moments(
                rows["residual"], batch["is_target"], batch["mask"], block_size=moments_block)
            new["moments"] = scoring.merge_block_moments(acc["moments"], batch_moments)
        return new

    return jax.jit(fn, donate_argnums=(1,))


def _zero_sums(graphdef, objective, wanted, model_state, batch, num_slots, moments_block):
    shapes = jax.eval_shape(
        lambda s, b: row_outputs(nnx.merge(graphdef, s["params"], s["rest"], copy=True), b,
                                 objective, wanted), model_state, batch)
    sums = {k: jnp.zeros((num_slots,) + v.shape[1:], jnp.float32) for k, v in shapes.items()}
    sums["count"] = jnp.zeros((num_slots,), jnp.float32)
    acc = {"sums": sums}
    if moments_block:
        acc["moments"] = scoring.BlockMoments(
            jnp.zeros((2,)), jnp.zeros((2, moments_block)), jnp.zeros((2, moments_block, moments_block)))
    return acc


def clip_means(graphdef: nnx.GraphDef, model_state, objective, wanted: tuple[str, ...],
               log_mels: np.ndarray, mesh, *, window: int, hop: int, flatten: bool,
               batch_size: int, clip_classes: np.ndarray | None = None,
               clip_is_target: np.ndarray | None = None, moments_block: int = 0,
               progress: bool = False) -> dict[str, np.ndarray]:
    """Mean of each per-window output in ``wanted`` over each clip's windows.

    Args:
      graphdef, model_state: the model in eval mode (``{"params", "rest"}``, replicated).
      objective: :class:`mdg.objectives.Objective` (for ``loss``).
      wanted: names from :data:`ROW_OUTPUTS` of the model's kind.
      log_mels: ``(clips, frames, mels)`` float32.
      window, hop, flatten: windows of ``window`` frames every ``hop`` frames; flattened or not.
      batch_size: global eval batch (must divide over the mesh).
      clip_classes: classifiers: ``(clips, classes)`` bool candidate classes of each clip.
      clip_is_target: with ``moments_block`` (block length, the mel count) > 0: bool per clip,
        and the result holds ``moments``, the residual-block moments of all windows per domain.
    Returns:
      numpy ``(clips, ...)`` per name in ``wanted``, ``count`` (windows per clip), and ``moments``.
    """
    num_clips = len(log_mels)
    num_slots = clip_bucket(num_clips)
    sharding.check_batch_size(batch_size, mesh)
    fn = clip_sums_fn(graphdef, objective, tuple(wanted), num_slots, moments_block)
    acc = None
    batches = pipeline.eval_batches(log_mels, window, hop, batch_size, flatten, clip_classes,
                                    process_index=jax.process_index(), process_count=jax.process_count())
    for batch in tqdm.tqdm(batches, desc="scoring", leave=False,
                           disable=not progress or jax.process_index() != 0):
        if moments_block:
            batch["is_target"] = clip_is_target[batch["clip"]]
        batch = sharding.shard_batch(batch, mesh)
        if acc is None:
            acc = sharding.replicate(_zero_sums(graphdef, objective, tuple(wanted), model_state, batch,
                                                num_slots, moments_block), mesh)
        else:
            # One step in flight (it overlaps the host's gather of the next batch): without this
            # wait, asynchronous dispatch queues every batch of the pass, and memory grows with
            # the clip count.
            jax.block_until_ready(acc)
        acc = fn(model_state, acc, batch)
    acc = jax.tree.map(np.asarray, multihost_utils.process_allgather(acc, tiled=True))
    sums = {k: v[:num_clips] for k, v in acc["sums"].items()}
    count = sums.pop("count")
    means = {k: v / count.reshape((-1,) + (1,) * (v.ndim - 1)) for k, v in sums.items()}
    means["count"] = count
    if moments_block:
        means["moments"] = acc["moments"]
    return means
