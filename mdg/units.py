"""Training units: the clips one model is trained on and scored with.

A *unit* is a machine type (the DCASE 2022 baselines), a (machine type, section) pair
(``data.per_section``, the DCASE 2023 baseline), or all machine types at once (the
``machine_section`` classification target). Classifier units also carry their class targets
(:mod:`mdg.data.targets`), and every unit the *section group* of each clip, which the embedding
scores fit their statistics per.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import ml_collections
import numpy as np

from mdg import models
from mdg.data import layout, lazy_log_mels, prepare, targets, tfds_builder


@dataclasses.dataclass
class Unit:
    """The clips one model is trained on and scored with; arrays as returned by the shard loader."""

    name: str                        # "fan" or "fan_section_00"
    machine: str
    train: dict[str, Any]     # log_mel (clips, frames, mels) array or lazy view + per-clip metadata arrays
    test: dict[str, Any]
    train_classes: np.ndarray | None = None   # (train clips,) int32 class, classifiers only
    test_classes: np.ndarray | None = None    # (test clips, classes) bool candidate classes
    class_names: tuple[str, ...] = ()
    class_groups: np.ndarray | None = None    # (classes,) int32 section group of each class

    def groups(self, split: str) -> np.ndarray:
        """(clips,) int32 section group of each clip of ``split`` ("train" or "test").

        Classifier units: the section group of the clip's (candidate) class, so that sections of
        different machine types stay apart; reconstruction units: the section number.
        """
        clips = self.train if split == "train" else self.test
        if self.class_groups is None:
            return clips["section"].astype(np.int32)
        if split == "train":
            return self.class_groups[self.train_classes]
        return self.class_groups[np.argmax(self.test_classes, axis=1)]


def select_clips(split: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    """Rows of every per-clip array of a split where ``mask`` holds."""
    return {k: v[mask] for k, v in split.items()}


def is_classifier(config: ml_collections.ConfigDict) -> bool:
    return models.model_class(config.model.name).KIND == "classifier"


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


def concatenate_splits(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One split from several machine types' splits (their clips must have equal frame counts)."""
    try:
        log_mel = lazy_log_mels.concatenate([p["log_mel"] for p in parts])
    except ValueError as e:
        raise ValueError(f"the machine_section target trains one model on all machine types, whose clips "
                         f"must then have one length: {e}") from None
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "log_mel"}
    return {"log_mel": log_mel, **merged}


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
    _, group_mask = targets.section_class_mask(unit.class_names)
    unit.class_groups = np.argmax(group_mask, axis=0).astype(np.int32)


def load_splits(config, machine: str, builder) -> tuple[dict, dict]:
    """(train, test) per-clip arrays of one machine type; eval-set ground truth applied if given."""
    train_split = tfds_builder.load_split(builder, "train")
    test_split = tfds_builder.load_split(builder, "test")
    if config.data.eval_ground_truth:
        test_split = prepare.with_ground_truth(test_split, machine, config.data.eval_ground_truth)
    return train_split, test_split


def iterate_units(config, builders: dict) -> Iterator[Unit]:
    """Units in order, loading one machine type's shards at a time where the units allow it."""
    if is_classifier(config) and config.data.target == "machine_section":
        yield from make_units(config, {m: load_splits(config, m, b) for m, b in builders.items()})
        return
    for machine, builder in builders.items():
        yield from make_units(config, {machine: load_splits(config, machine, builder)})
