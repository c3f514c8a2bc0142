"""Classifier heads: embedding ``(batch, d)`` -> class logits ``(batch, num_classes)``.

``linear``  a Dense layer with bias (the MobileNetV2 baseline; trained with softmax cross-entropy).
``cosine``  learnable class centres, ``num_subclusters`` (K) per class, no bias: the head of the
            margin losses (ArcFace, AdaCos, sub-cluster AdaCos, :mod:`mdg.objectives`). Its
            *scoring* logits are ``logsumexp_k(scale * cos theta_{c,k})`` (``scale * cos`` for
            K = 1), i.e. the logits the margin losses are built from, without any margin. Centre
            row ``c * K + k`` is sub-cluster k of class c (the layout :mod:`mdg.losses` expects).

The cosine head's ``scale`` is an :class:`AdaptiveScale` variable, not a gradient parameter: fixed
for ArcFace, updated every training step by AdaCos. Being model state (like the BatchNorm
statistics) it is checkpointed and restored with them.
"""
from flax import nnx
import jax
import jax.numpy as jnp

from mdg import losses

HEADS = ("linear", "cosine")


class AdaptiveScale(nnx.Variable):
    """The cosine head's logit scale (float32 scalar); not trained by the optimizer."""


class LinearHead(nnx.Module):
    """Dense layer with bias, glorot-uniform kernel (Keras' default, as in the baseline)."""

    def __init__(self, embedding_dim: int, num_classes: int, *, rngs: nnx.Rngs):
        self.dense = nnx.Linear(embedding_dim, num_classes,
                                kernel_init=nnx.initializers.glorot_uniform(), rngs=rngs)

    def __call__(self, embedding: jax.Array) -> jax.Array:
        return self.dense(embedding)

    def class_directions(self) -> jax.Array:
        """``(num_classes, d)``: each class's weight vector, the direction its logit grows along."""
        return self.dense.kernel.value.T


class CosineHead(nnx.Module):
    """Learnable class centres (K per class) and a scale; logits are scaled cosines.

    Args:
      embedding_dim: d.
      num_classes: C.
      num_subclusters: K centres per class.
      scale: initial logit scale (ArcFace's fixed ``s``; AdaCos starts from
        :func:`mdg.losses.adacos_initial_scale`).
    """

    def __init__(self, embedding_dim: int, num_classes: int, num_subclusters: int = 1,
                 scale: float = 30.0, *, rngs: nnx.Rngs):
        if num_subclusters < 1:
            raise ValueError(f"CosineHead: num_subclusters must be >= 1, got {num_subclusters}")
        self.num_classes = num_classes
        self.num_subclusters = num_subclusters
        self.centres = nnx.Param(nnx.initializers.glorot_uniform()(
            rngs.params(), (num_classes * num_subclusters, embedding_dim), jnp.float32))
        self.scale = AdaptiveScale(jnp.asarray(scale, jnp.float32))

    def cosines(self, embedding: jax.Array) -> jax.Array:
        """``(batch, C * K)`` cosine of each embedding with each centre."""
        return losses.cosines(embedding, self.centres.value)

    def __call__(self, embedding: jax.Array) -> jax.Array:
        scaled = (self.scale.value * self.cosines(embedding)).reshape(
            embedding.shape[0], self.num_classes, self.num_subclusters)
        return jax.nn.logsumexp(scaled, axis=2)

    def class_directions(self) -> jax.Array:
        """``(C * K, d)``: the centres."""
        return self.centres.value


def make_head(kind: str, embedding_dim: int, num_classes: int, num_subclusters: int,
              scale: float, rngs: nnx.Rngs) -> nnx.Module:
    """The head named ``kind`` (one of :data:`HEADS`)."""
    if kind == "linear":
        if num_subclusters != 1:
            raise ValueError(f"a linear head has one weight vector per class; num_subclusters="
                             f"{num_subclusters} needs head='cosine'")
        return LinearHead(embedding_dim, num_classes, rngs=rngs)
    if kind == "cosine":
        return CosineHead(embedding_dim, num_classes, num_subclusters, scale, rngs=rngs)
    raise ValueError(f"unknown head {kind!r}; known heads: {HEADS}")
