"""Runs a tiny training in its own process (for the kill -9 test): python train_driver.py WORKDIR OUT.npz.

The data, config and model are the same on every run, so a restarted run must end exactly where
an uninterrupted one does. Mixup is on, so every step draws from the checkpointed RNG key: a
resumed run that lost or reset the key would mix different batches.
"""

import pathlib
import sys

import jax
import numpy as np

jax.config.update("jax_platforms", "cpu")

from mdg import sharding, train  # noqa: E402
from test_train import fake_unit, tiny_config  # noqa: E402  (this folder is on sys.path when run as a script)


def main(workdir: str, out: str) -> None:
    c = tiny_config(save_every_steps=20, num_epochs=60)
    c.ckpt.keep = 2
    c.train.log_every_steps = 50
    c.data.validation_split = 0.0
    c.train.mixup_alpha = 0.4
    _, state = train.train_unit(c, fake_unit(num_clips=16), sharding.make_mesh(1), pathlib.Path(workdir))
    leaves = [np.asarray(x) for x in jax.tree.leaves(state)]
    np.savez(out, *leaves)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
