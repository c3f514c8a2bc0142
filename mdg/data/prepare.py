"""The prepare step: find (or generate) the WAV tree and build its log-Mel shards, once.

``data.root`` empty means the built-in synthetic dataset: it is generated into the cache
folder (``data.cache_dir``, else ``$MDG_CACHE``, else ``~/.cache/mdg``) under a name that
encodes its settings, so it is generated once per setting and reused. Shards of every data
root go to ``<cache>/tfds``; the shard builder itself decides reuse vs rebuild from the inputs
and feature settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import jax
import numpy as np
import ml_collections
from absl import logging
from jax.experimental import multihost_utils

from mdg.data import layout, synthetic, tfds_builder


def cache_dir(config: ml_collections.ConfigDict) -> pathlib.Path:
    """The folder for generated data and shards."""
    if config.data.cache_dir:
        return pathlib.Path(config.data.cache_dir).expanduser()
    return pathlib.Path(os.environ.get("MDG_CACHE", "~/.cache/mdg")).expanduser()


def _synthetic_settings(config: ml_collections.ConfigDict) -> dict:
    s = config.data.synthetic
    return {
        "machines": tuple(_split_names(s.machines)), "num_source_train": s.num_source_train,
        "num_target_train": s.num_target_train, "num_test": s.num_test, "seed": s.seed,
        "duration_s": s.duration_s, "sample_rate": config.features.sample_rate,
    }


def _split_names(names: str) -> list[str]:
    return [n.strip() for n in names.split(",") if n.strip()]


def synthetic_root(config: ml_collections.ConfigDict) -> pathlib.Path:
    """Generates the built-in synthetic dataset once (per settings and generator) and returns its root.

    The generator publishes each machine type atomically and skips the ones already complete, so
    an interrupted generation resumes where it stopped.
    """
    settings = _synthetic_settings(config)
    # The generator's source is part of the key: a changed generator makes a new dataset.
    generator = pathlib.Path(synthetic.__file__).read_bytes()
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode() + generator).hexdigest()[:12]
    root = cache_dir(config) / "synthetic" / key
    logging.info("synthetic dataset %s: %s", root, settings)
    synthetic.generate(
        root, machines=settings["machines"], num_source_train=settings["num_source_train"],
        num_target_train=settings["num_target_train"], num_test=settings["num_test"],
        seed=settings["seed"], sample_rate=settings["sample_rate"], duration_s=settings["duration_s"],
        workers=len(os.sched_getaffinity(0)))
    return root


def data_root(config: ml_collections.ConfigDict) -> pathlib.Path:
    """``data.root`` (checked to exist) or the generated synthetic dataset."""
    if not config.data.root:
        return synthetic_root(config)
    root = pathlib.Path(config.data.root).expanduser()
    if not root.is_dir():
        raise layout.LayoutError(f"data.root {root} is not a folder (expected <root>/<machine>/{{train,test}}/)")
    return root


def machine_types(config: ml_collections.ConfigDict, root: pathlib.Path) -> list[str]:
    """``data.machines`` if given (each checked to exist under root), else every type under root."""
    available = layout.list_machine_types(root)
    wanted = _split_names(config.data.machines)
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise layout.LayoutError(f"machine type(s) {missing} not found under {root}; found {available}")
    return wanted or available


def prepare(config: ml_collections.ConfigDict) -> dict[str, "tfds_builder.tfds.core.DatasetBuilder"]:
    """Builds (or reuses) the shards of every selected machine type; returns {machine: builder}.

    With several processes, process 0 generates and builds while the others wait, then every
    process opens the finished shards (two builders of one dataset would race on TFDS's rename).
    """
    if jax.process_count() > 1:
        if jax.process_index() == 0:
            _prepare(config)
        multihost_utils.sync_global_devices("mdg data prepared")
    return _prepare(config)


def _prepare(config: ml_collections.ConfigDict) -> dict[str, "tfds_builder.tfds.core.DatasetBuilder"]:
    root = data_root(config)
    shards = cache_dir(config) / "tfds"
    builders = {}
    for machine in machine_types(config, root):
        builders[machine] = tfds_builder.prepare(
            root, machine, shards, dict(config.features), on_error=config.data.on_error)
    return builders


def with_ground_truth(test_split: dict, machine: str, ground_truth_dir: str) -> dict:
    """A test split whose unlabelled (eval-set) clips get label and domain from the evaluator's CSVs.

    ``test_split``: per-clip arrays as loaded from the shards; returns a new dict (same order).
    """
    clips = [layout.parse_clip_name(name, machine, "test") for name in test_split["file_name"]]
    filled = layout.read_eval_ground_truth(ground_truth_dir, machine, clips)
    domain_code = {"source": 0, "target": 1}
    return dict(test_split,
                label=np.array([c.label for c in filled], np.int32),
                domain=np.array([domain_code[c.domain] for c in filled], np.int32))
