"""Runs a tiny training in its own process (for the kill -9 test): python train_driver.py WORKDIR OUT.npz.

The data, config and model are the same on every run, so a restarted run must end exactly where
an uninterrupted one does.
"""

import sys

import jax
import numpy as np

jax.config.update("jax_platforms", "cpu")

from mdg import sharding, train  # noqa: E402
from mdg.config_defaults import base_config  # noqa: E402


def main(workdir: str, out: str) -> None:
    c = base_config()
    c.model.name = "autoencoder"
    c.model.input_dim = 5 * 16
    c.model.hidden_dim = 32
    c.model.num_hidden_layers = 2
    c.model.bottleneck_dim = 4
    c.train.batch_size = 32
    c.train.num_epochs = 60
    c.train.log_every_steps = 50
    c.ckpt.save_every_steps = 20
    c.ckpt.keep = 2
    c.data.validation_split = 0.0
    log_mels = np.random.default_rng(0).normal(size=(16, 24, 16)).astype(np.float32)
    unit = train.Unit(name="fake", machine="fake", train={"log_mel": log_mels}, test={})
    _, state = train.train_unit(c, unit, sharding.make_mesh(1), __import__("pathlib").Path(workdir))
    leaves = [np.asarray(x) for x in jax.tree.leaves(state)]
    np.savez(out, *leaves)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
