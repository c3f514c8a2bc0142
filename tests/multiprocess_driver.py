"""The tiny training of tests/test_train.py as one process of a multi-process JAX run.

tests/test_multiprocess.py starts it through ``launch/local_multiprocess.py``; it also calls
:func:`train_and_score` in-process as the single-process reference. Every process builds the same
in-memory unit, trains it with ``train.train_unit`` on a mesh over all global devices and scores
it with ``clip_outputs.clip_means``; process 0 writes the outcome to ``<workdir>/result.json``.

    python tests/multiprocess_driver.py --workdir DIR   (with PYTHONPATH = the project root)
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import numpy as np

from mdg import evaluate, sharding, train
from test_train import clip_means, fake_unit, tiny_config

RESULT_FILE = "result.json"


def train_and_score(workdir: pathlib.Path, num_devices: int | None = None) -> dict[str, np.ndarray]:
    """Trains the tiny autoencoder on the fake unit and scores its training clips.

    Returns ``step`` (int, final training step), ``process_count`` and ``device_count`` of the
    run, and the clip means ``sq_err`` float32 (clips,), ``residual`` float32 (clips, 5 * 16)
    and ``count`` float32 (clips,) windows per clip.
    """
    config, unit = tiny_config(), fake_unit()
    mesh = sharding.make_mesh(num_devices)
    graphdef, state = train.train_unit(config, unit, mesh, workdir)
    outputs = clip_means(config, graphdef, state, unit.train["log_mel"], mesh)
    return {"step": np.asarray(int(state["step"])), "process_count": np.asarray(jax.process_count()),
            "device_count": np.asarray(mesh.size),
            **{k: np.asarray(outputs[k]) for k in ("sq_err", "residual", "count")}}


def read_result(workdir: pathlib.Path) -> dict[str, np.ndarray]:
    """The arrays :func:`main` wrote to ``workdir``, as float32/int numpy arrays."""
    raw = json.loads((workdir / RESULT_FILE).read_text(encoding="utf-8"))
    return {k: np.asarray(v, np.float32 if isinstance(v, list) else np.int64) for k, v in raw.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=pathlib.Path, required=True)
    parser.add_argument("--num_devices", type=int, default=0, help="mesh devices; 0 = all")
    args = parser.parse_args()
    sharding.initialize_distributed()
    result = train_and_score(args.workdir, args.num_devices or None)
    if jax.process_index() == 0:
        # float32 -> Python float -> JSON repr round-trips exactly.
        evaluate.write_atomic(args.workdir / RESULT_FILE,
                              json.dumps({k: v.tolist() for k, v in result.items()}))


if __name__ == "__main__":
    main()
