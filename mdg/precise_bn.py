"""BatchNorm running statistics recomputed from the final parameters ("precise BN").

During training every BatchNorm keeps an exponential moving average of its batch statistics,
``running = momentum * running + (1 - momentum) * batch``, started at mean 0 and variance 1.
After ``t`` steps a share ``momentum ** t`` of that start is still in it, and the rest averages
statistics of parameters that kept changing. With Keras's MobileNetV2 momentum 0.999 and the
160 steps of the CPU-sized default run, 85 % of every running statistic is still the initial
(0, 1): in eval mode the activations drift through the 17 blocks until the network's output no
longer depends on its input (measured on a sweep checkpoint: logits varied by ~5e-7 across
clips in eval mode, by ~3 with batch statistics). The standard remedy (Wu & Johnson,
"Rethinking 'Batch' in BatchNorm", 2021) is to recompute the statistics once training is done:
run training-mode forward passes of the final model over training batches and set each
layer's running mean and variance to the population values pooled over those batches,

    mean = mean_k(m_k),   var = mean_k(v_k + m_k ** 2) - mean ** 2

for batch means ``m_k`` and (biased) variances ``v_k`` of equal-size batches. The result no
longer depends on the momentum or the step count.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mdg import models, sharding


def batch_norm_layers(model: nnx.Module) -> list[nnx.BatchNorm]:
    """The model's BatchNorm layers, in a fixed (graph) order."""
    return [m for _, m in model.iter_modules() if isinstance(m, nnx.BatchNorm)]


def has_batch_norm(model: nnx.Module) -> bool:
    return bool(batch_norm_layers(model))


@functools.cache
def batch_moments_fn(graphdef: nnx.GraphDef):
    """Jitted ``fn(params, rest, x, sums) -> sums`` adding one batch's moments to ``sums``:
    one ``(mean, mean of squares)`` pair per BatchNorm layer (:func:`batch_norm_layers` order) of
    the layer's input in a training-mode forward pass of the batch ``x`` (statistics as the layer
    computes them, float32 ``(channels,)``). Cached per graph: compiled once.

    The sums are added inside the compiled function, so each batch is one launch on every device;
    eager per-layer additions on arrays that span several processes could deadlock the processes
    (seen in the 2-process test)."""

    def batch_moments(params, rest, x, sums):
        model = nnx.merge(graphdef, params, rest, copy=True)
        layers = batch_norm_layers(model)
        for layer in layers:
            layer.momentum = 0.0           # running statistics := this batch's statistics
        model.train()
        model.outputs(x)
        return [(mean_sum + layer.mean[...], square_sum + layer.var[...] + jnp.square(layer.mean[...]))
                for layer, (mean_sum, square_sum) in zip(layers, sums, strict=True)]

    return jax.jit(batch_moments, donate_argnums=(3,))


@jax.jit
def population_statistics(sums, count):
    """Per layer ``(mean, variance)`` pooled over ``count`` equal-size batches from the moment sums."""
    pooled = []
    for mean_sum, square_sum in sums:
        mean = mean_sum / count
        pooled.append((mean, jnp.maximum(square_sum / count - jnp.square(mean), 0.0)))
    return pooled


def recompute(graphdef: nnx.GraphDef, params, rest, batches: Iterable[dict], mesh) -> dict:
    """``rest`` with every BatchNorm's running mean and variance recomputed over ``batches``.

    Args:
      graphdef, params, rest: the model (training-mode graph), replicated over ``mesh``.
      batches: host batches ``{"x": (batch, ...)}`` of equal size (training windows).
    Returns:
      the new ``rest`` as a nested dict of arrays (everything but the BatchNorm statistics unchanged).
    """
    fn = batch_moments_fn(graphdef)
    model = nnx.merge(graphdef, params, rest, copy=True)
    layers = batch_norm_layers(model)
    zeros = [np.zeros(layer.mean[...].shape, layer.mean[...].dtype) for layer in layers]   # host: no launch
    sums = sharding.replicate([(z, z) for z in zeros], mesh)
    count = 0
    for batch in batches:
        sums = fn(params, rest, sharding.shard_batch({"x": batch["x"]}, mesh)["x"], sums)
        count += 1
    if not count:
        return rest
    for layer, (mean, var) in zip(layers, population_statistics(sums, count), strict=True):
        layer.mean[...] = mean
        layer.var[...] = var
    return models.split_pure(model)[1]
