"""Anomaly scores by name (``--config.eval.scores=mse,mahalanobis``) and the one dispatch that scores a unit.

=========================  ==============  ==================================================
method                     model kind      score (numerics in :mod:`mdg.scoring`)
=========================  ==============  ==================================================
``mse``                    reconstruction  mean squared reconstruction error (AE baseline)
``mahalanobis``            reconstruction  Mahalanobis norm of the mean residual block, per
                                           domain, the smaller (DCASE 2023 AE baseline)
``neg_logit``              classifier      mean over patches of ``log(1-p) - log(p)``
                                           (MobileNetV2 baseline)
``centre``                 classifier      cosine distance to the nearest class / sub-cluster
                                           centre of the clip's section
``knn``                    any             cosine distance to the k nearest training clips,
                                           per domain, the smaller
``centre_domain``          any             cosine distance to the nearest per-(class, domain)
                                           mean training embedding of the section, the
                                           smaller over domains
``mahalanobis_embedding``  any             Mahalanobis distance to the section's per-domain
                                           Gaussian of training embeddings, the smaller
``lof``                    any             local outlier factor of the embedding
=========================  ==============  ==================================================

For reconstruction models the "embedding" is the clip mean of the bottleneck code and the classes
of ``centre_domain`` are the sections. Every method returns scores for the training clips (they set
the decision thresholds) and the test clips.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from mdg import clip_outputs, errors, models, scoring


@dataclasses.dataclass
class UnitOutputs:
    """Everything a score method may use about one unit, all per clip (numpy)."""

    train: dict[str, np.ndarray]      # clip means of the training clips (+ "moments")
    test: dict[str, np.ndarray]
    train_is_target: np.ndarray       # (train clips,) bool
    train_groups: np.ndarray          # (train clips,) int section group
    test_groups: np.ndarray
    train_classes: np.ndarray         # (train clips,) int class (sections for reconstruction models)
    class_groups: np.ndarray          # (classes,) int section group of each class
    centres: np.ndarray | None        # (classes * K, d) head centres / class weight vectors
    knn_k: int
    block_size: int                   # mel bands: the AE Mahalanobis block length


@dataclasses.dataclass(frozen=True)
class ScoreMethod:
    name: str
    kinds: tuple[str, ...]             # model kinds it applies to
    outputs: tuple[str, ...]           # clip-level outputs it needs (clip_outputs.ROW_OUTPUTS)
    compute: Callable[[UnitOutputs], tuple[np.ndarray, np.ndarray]]


def _mse(u: UnitOutputs):
    return u.train["sq_err"], u.test["sq_err"]


def _mahalanobis(u: UnitOutputs):
    precisions = scoring.fit_mahalanobis(u.train["moments"])
    return tuple(scoring.mahalanobis_block_scores(
        scoring.mean_residual_blocks(out["residual"], u.block_size), precisions) for out in (u.train, u.test))


def _neg_logit(u: UnitOutputs):
    return u.train["neg_logit"], u.test["neg_logit"]


def _knn(u: UnitOutputs):
    # Training clips are scored leave-one-out, so none is its own neighbour.
    bank = jnp.asarray(u.train["embedding"])
    return (scoring.knn_clip_scores(bank, bank, u.train_is_target, k=u.knn_k, exclude=jnp.arange(len(bank))),
            scoring.knn_clip_scores(jnp.asarray(u.test["embedding"]), bank, u.train_is_target, k=u.knn_k))


def _centre(u: UnitOutputs):
    centre_class = np.arange(len(u.centres)) // (len(u.centres) // len(u.class_groups))
    centre_group = u.class_groups[centre_class]
    return tuple(scoring.centre_distance(out["embedding"], u.centres, groups[:, None] == centre_group[None])
                 for out, groups in ((u.train, u.train_groups), (u.test, u.test_groups)))


def _centre_domain(u: UnitOutputs):
    bank = u.train["embedding"]
    common = dict(bank=bank, bank_class=u.train_classes, bank_is_target=u.train_is_target,
                  class_group=u.class_groups)
    return (scoring.domain_centre_distance(bank, u.train_groups, leave_one_out=True, **common),
            scoring.domain_centre_distance(u.test["embedding"], u.test_groups, **common))


def _mahalanobis_embedding(u: UnitOutputs):
    bank = u.train["embedding"]
    return tuple(scoring.embedding_mahalanobis(out["embedding"], groups, bank, u.train_groups, u.train_is_target)
                 for out, groups in ((u.train, u.train_groups), (u.test, u.test_groups)))


def _lof(u: UnitOutputs):
    return scoring.lof_scores(u.test["embedding"], u.train["embedding"])


ANY = ("reconstruction", "classifier")
METHODS: dict[str, ScoreMethod] = {m.name: m for m in (
    ScoreMethod("mse", ("reconstruction",), ("sq_err",), _mse),
    ScoreMethod("mahalanobis", ("reconstruction",), ("residual",), _mahalanobis),
    ScoreMethod("neg_logit", ("classifier",), ("neg_logit",), _neg_logit),
    ScoreMethod("centre", ("classifier",), ("embedding",), _centre),
    ScoreMethod("knn", ANY, ("embedding",), _knn),
    ScoreMethod("centre_domain", ANY, ("embedding",), _centre_domain),
    ScoreMethod("mahalanobis_embedding", ANY, ("embedding",), _mahalanobis_embedding),
    ScoreMethod("lof", ANY, ("embedding",), _lof),
)}


def from_config(config: ml_collections.ConfigDict) -> list[str]:
    """The method names of ``config.eval.scores``; ValueError for unknown or unfitting ones."""
    names = [m.strip() for m in config.eval.scores.split(",") if m.strip()]
    kind = models.model_class(config.model.name).KIND
    fitting = [name for name, m in METHODS.items() if kind in m.kinds]
    unknown = [n for n in names if n not in METHODS]
    unfit = [n for n in names if n in METHODS and kind not in METHODS[n].kinds]
    if unknown or unfit or not names:
        problem = (f"unknown method(s) {unknown}" if unknown else
                   f"{unfit} need(s) another kind of model" if unfit else "no method given")
        raise errors.UserError(f"eval.scores={config.eval.scores!r}: {problem}; {config.model.name} ({kind}) "
                         f"supports {', '.join(fitting)}")
    if len(set(names)) != len(names):
        raise errors.UserError(f"eval.scores={config.eval.scores!r} names a method twice")
    return names


@dataclasses.dataclass
class ScoredUnit:
    """Scores of one unit: ``{method: (train scores, test scores)}`` float64, and the clip embeddings."""

    scores: dict[str, tuple[np.ndarray, np.ndarray]]
    train_embedding: np.ndarray       # (train clips, d) float32
    test_embedding: np.ndarray


def score_unit(config: ml_collections.ConfigDict, unit, graphdef: nnx.GraphDef, model_state, mesh,
               objective, methods: list[str]) -> ScoredUnit:
    """Every method of ``methods`` on ``unit``'s training and test clips, from one pass each.

    Args:
      unit: :class:`mdg.units.Unit`; graphdef/model_state: the trained model in eval mode.
    """
    kind = models.model_class(config.model.name).KIND
    wanted = sorted({"embedding"} | {o for m in methods for o in METHODS[m].outputs})
    train_is_target = unit.train["domain"] == 1
    moments_block = config.features.n_mels if "mahalanobis" in methods else 0
    common = dict(window=config.input.window, hop=config.input.eval_hop, flatten=config.input.flatten,
                  batch_size=config.input.eval_batch_size, progress=True)
    num_classes = len(unit.class_names)
    train_candidates = None if unit.train_classes is None else np.eye(num_classes, dtype=bool)[unit.train_classes]
    train_out = clip_outputs.clip_means(
        graphdef, model_state, objective, wanted, unit.train["log_mel"], mesh, clip_classes=train_candidates,
        clip_is_target=train_is_target, moments_block=moments_block, **common)
    test_out = clip_outputs.clip_means(
        graphdef, model_state, objective, wanted, unit.test["log_mel"], mesh,
        clip_classes=unit.test_classes, **common)
    train_groups, test_groups = unit.groups("train"), unit.groups("test")
    if kind == "classifier":
        model = nnx.merge(graphdef, model_state["params"], model_state["rest"])
        centres = np.asarray(model.head.class_directions(), np.float64)
        train_classes, class_groups = unit.train_classes, unit.class_groups
    else:
        centres = None
        sections, train_classes = np.unique(train_groups, return_inverse=True)
        class_groups = sections.astype(np.int32)
    outputs = UnitOutputs(train=train_out, test=test_out, train_is_target=train_is_target,
                          train_groups=train_groups, test_groups=test_groups, train_classes=train_classes,
                          class_groups=class_groups, centres=centres, knn_k=config.eval.knn_k,
                          block_size=config.features.n_mels)
    scores = {m: tuple(np.asarray(s, np.float64) for s in METHODS[m].compute(outputs)) for m in methods}
    for method, (_, test_scores) in scores.items():
        warn_if_constant(unit.name, method, test_scores, test_groups)
    return ScoredUnit(scores, train_out["embedding"], test_out["embedding"])


def warn_if_constant(unit_name: str, method: str, scores: np.ndarray, groups: np.ndarray) -> bool:
    """Logs a warning (and returns True) if ``scores`` (clips,) are constant, to float32 precision,
    within any section group of ``groups`` (clips,) with more than one clip: their AUCs would
    rank rounding noise. Seen when a network's eval-mode output ignores its input."""
    flat = []
    for group in np.unique(groups):
        values = scores[groups == group]
        if len(values) > 1 and np.ptp(values) <= 1e-6 * max(1.0, float(np.max(np.abs(values)))):
            flat.append(int(group))
    if flat:
        logging.warning("%s: %s scores are constant within section group(s) %s: the model's output does not "
                        "depend on its input there, and the AUCs rank rounding noise", unit_name, method, flat)
    return bool(flat)
