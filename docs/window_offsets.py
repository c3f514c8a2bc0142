"""Has a finished classifier run learnt its training windows by heart? Window accuracy by offset
from the training grid (for docs/synthetic.md, session 11).

Training reads windows of ``input.window`` frames every ``input.train_hop`` frames (with
``input.train_jitter`` off: always the same windows). A model that learnt the sound classifies the
windows a few frames off that grid as well as the ones on it; one that learnt the grid's windows
by heart is right on the grid and near chance off it. For each unit of the run, the share of
windows whose most probable class is the clip's own, at offsets 0 .. hop - 1 from the grid, on the
clips it trained on and on its held-out validation clips (eval mode, the checkpoint's BatchNorm
statistics).

    python docs/window_offsets.py WORKDIR        # a finished classifier run (mdg.main)
"""

import argparse
import json
import pathlib
from collections.abc import Callable

import ml_collections
import numpy as np
from flax import nnx

from mdg import sharding, train, units
from mdg.data import pipeline, prepare


def accuracy_by_offset(logits_fn: Callable[[np.ndarray], np.ndarray], log_mels: np.ndarray,
                       classes: np.ndarray, clips: np.ndarray, window: int, hop: int,
                       offsets: list[int], batch_size: int = 256) -> dict[int, float]:
    """Share of correctly classified windows per offset from the training grid.

    Args:
      logits_fn: (batch, window, mels) float32 -> (batch, classes) logits.
      log_mels: (clips, frames, mels) log-Mel of a unit's training split.
      classes: (clips,) int class of each clip.
      clips: rows of ``log_mels`` to use.
      window, hop: the training windows (frames); the grid starts at frame 0.
      offsets: frames after each grid start, each < hop.
    Returns:
      {offset: accuracy}; a window that would end past the clip is left out.
    """
    result = {}
    for offset in offsets:
        starts = pipeline.window_starts(log_mels.shape[1] - offset, window, hop) + offset
        clip = np.repeat(clips, len(starts)).astype(np.int32)
        start = np.tile(starts, len(clips)).astype(np.int32)
        x = pipeline.gather_windows(log_mels, clip, start, window, flatten=False)
        logits = np.concatenate([np.asarray(logits_fn(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])
        result[offset] = float(np.mean(logits.argmax(-1) == classes[clip]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=pathlib.Path)
    args = parser.parse_args()
    config = ml_collections.ConfigDict(json.loads((args.workdir / "config.json").read_text()))
    if "train_jitter" not in config.input:   # a run from before the key: trained on the grid
        config.input.train_jitter = False
    window, hop = config.input.window, config.input.train_hop
    offsets = sorted({0, *range(1, hop, max(1, hop // 6))})
    mesh = sharding.make_mesh(config.train.num_devices or None)
    print(f"{args.workdir}: window {window}, hop {hop}, jitter {config.input.train_jitter}; "
          "accuracy of the windows at each offset from the training grid")
    print("| unit | clips | " + " | ".join(f"+{o}" for o in offsets) + " |")
    print("|---|---|" + "---|" * len(offsets))
    for unit in units.iterate_units(config, prepare.prepare(config)):
        graphdef, state = train.train_unit(config, unit, mesh, args.workdir, allow_training=False)
        model = nnx.merge(graphdef, state["params"], state["rest"])
        log_mels = np.asarray(unit.train["log_mel"][:])
        trained, held_out = pipeline.split_validation(len(log_mels), config.data.validation_split, config.seed)
        for name, clips in (("trained", trained), ("held out", held_out)):
            accuracy = accuracy_by_offset(lambda x: model.outputs(x)["logits"], log_mels, unit.train_classes,
                                          clips, window, hop, offsets)
            print(f"| {unit.name} | {name} ({len(clips)}) | " + " | ".join(f"{a:.2f}" for a in accuracy.values())
                  + " |", flush=True)


if __name__ == "__main__":
    main()
