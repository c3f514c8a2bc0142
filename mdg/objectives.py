"""The training objective, chosen by name: ``--config.train.loss=NAME``.

=====================  ==============  =====================================================
NAME                   model kind      per-window loss
=====================  ==============  =====================================================
``mse``                reconstruction  mean squared reconstruction error (the AE baseline)
``softmax``            classifier      softmax cross-entropy on a linear head (the
                                       MobileNetV2 baseline)
``arcface``            classifier      cross-entropy of ArcFace logits: cosine head, fixed
                                       scale ``train.loss_scale``, additive angular margin
                                       ``train.margin`` (radians)
``adacos``             classifier      cross-entropy of dynamic-AdaCos logits: cosine head,
                                       scale adapted every step (model state)
``subcluster_adacos``  classifier      as ``adacos`` with ``train.num_subclusters`` centres
                                       per class, class logits pooled over them
=====================  ==============  =====================================================

The formulas are in :mod:`mdg.losses`. An objective knows which model kind it trains and which
head it needs (:meth:`Objective.model_kwargs`), so the loop builds the model the loss asks for and
a loss/model mismatch is a clear configuration error. ``targets`` are ``(batch, num_classes)``
float distributions: one-hot during training (mixed by mixup when it is on), and for scoring the
uniform distribution over a clip's candidate classes (:func:`mdg.data.targets.true_class_mask`).

Training logits (with the margin, and for AdaCos the scale update) are used only by
:meth:`Objective.row_loss`; the model's own ``logits`` output (the head's ``__call__``) has no margin
and is what the negative-logit score uses.
"""
from __future__ import annotations

import dataclasses

import jax
import ml_collections

from mdg import errors, losses, models

LOSSES = ("mse", "softmax", "arcface", "adacos", "subcluster_adacos")
ADAPTIVE_SCALE = ("adacos", "subcluster_adacos")


@dataclasses.dataclass(frozen=True)
class Objective:
    """A training loss and its hyper-parameters (hashable: part of the compiled step's identity)."""

    name: str
    margin: float = 0.0            # arcface: additive angular margin, radians
    scale: float = 30.0            # arcface: fixed logit scale
    num_subclusters: int = 1       # subcluster_adacos: centres per class

    @property
    def kind(self) -> str:
        """The model kind this loss trains (:data:`mdg.models.KINDS`)."""
        return "reconstruction" if self.name == "mse" else "classifier"

    def model_kwargs(self, num_classes: int) -> dict:
        """Constructor arguments of the head this loss needs (none for reconstruction models)."""
        if self.kind == "reconstruction":
            return {}
        if self.name == "softmax":
            return {"head": "linear"}
        centres = num_classes * self.num_subclusters
        scale = losses.adacos_initial_scale(centres) if self.name in ADAPTIVE_SCALE else self.scale
        return {"head": "cosine", "num_subclusters": self.num_subclusters, "head_scale": scale}

    def row_loss(self, model, outputs: dict[str, jax.Array], x: jax.Array,
                 targets: jax.Array | None, training: bool) -> jax.Array:
        """Per-window loss ``(batch,)`` float32.

        Args:
          model: the model (its ``head`` holds the centres and scale of the margin losses).
          outputs: ``model.outputs(x)``.
          x: the model input (reconstruction target of ``mse``).
          targets: ``(batch, num_classes)`` float class distributions (classifiers).
          training: True in the train step: AdaCos then updates its scale on the batch and stores
            it in the head; False: AdaCos uses the stored scale, so each row's loss is its own.
        """
        if self.name == "mse":
            return losses.reconstruction_mse(x, outputs["reconstruction"])
        if self.name == "softmax":
            return losses.softmax_cross_entropy(outputs["logits"], targets)
        head, embedding = model.head, outputs["embedding"]
        centres, scale = head.centres.value, head.scale.value
        if self.name == "arcface":
            logits = losses.arcface_logits(embedding, centres, targets, scale, self.margin)
        elif not training:
            # AdaCos evaluation (validation loss): the stored scale, i.e. the head's own logits. A
            # scale fitted to the eval batch would let its size and padding rows change every loss.
            logits = outputs["logits"]
        else:
            if self.name == "adacos":
                logits, new_scale = losses.adacos_logits(embedding, centres, targets, scale)
            else:
                logits, new_scale = losses.subcluster_adacos_logits(
                    embedding, centres, targets, self.num_subclusters, scale)
            if training:
                head.scale.value = new_scale
        return losses.softmax_cross_entropy(logits, targets)


def from_config(config: ml_collections.ConfigDict) -> Objective:
    """The objective of ``config.train`` for the model ``config.model.name``.

    Raises:
      ValueError: an unknown loss name, or a loss for another kind of model than the configured one.
    """
    name = config.train.loss
    if name not in LOSSES:
        raise errors.UserError(f"train.loss {name!r} is not a known loss; known losses: {', '.join(LOSSES)}")
    objective = Objective(name=name, margin=float(config.train.margin),
                          scale=float(config.train.loss_scale),
                          num_subclusters=int(config.train.num_subclusters))
    kind = models.model_class(config.model.name).KIND
    if objective.kind != kind:
        fitting = [n for n in LOSSES if Objective(n).kind == kind]
        raise errors.UserError(f"train.loss={name!r} trains a {objective.kind} model, but model "
                         f"{config.model.name!r} is a {kind} model; use one of {fitting}")
    if name != "subcluster_adacos" and objective.num_subclusters != 1:
        raise errors.UserError(f"train.num_subclusters={objective.num_subclusters} needs "
                         f"train.loss='subcluster_adacos' (got {name!r})")
    return objective
