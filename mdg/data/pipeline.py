"""Input pipeline: log-Mel clips -> batches of fixed-length windows (AE vectors or CNN patches).

A window is ``window`` consecutive frames of one clip starting at frame ``start``. The
autoencoder uses 5-frame windows flattened frame-major to 5 x 128 = 640 values (all windows,
hop 1: 309 per 10 s clip); MobileNetV2 uses 64 x 128 patches (hop 8 for training, 1 for
scoring). Clips stay in memory as one ``(clips, frames, mels)`` float32 array (a full-size
MIMII DG machine type is ~0.5 GB) and windows are gathered per batch, so the 5x larger window
array never exists.

Training batches come from :class:`TrainBatches`: an endless, shuffled stream whose order is a
pure function of ``(seed, epoch)``; its position (epoch, step) is all the state a checkpoint
needs to resume the exact same sequence. With several processes every process builds the same
global permutation and takes its own contiguous slice of each global batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np


def window_starts(num_frames: int, window: int, hop: int) -> np.ndarray:
    """First frames of all windows of one clip: int32 ``(n,)``, ``n = (frames - window) // hop + 1``."""
    if num_frames < window:
        raise ValueError(f"clips have {num_frames} frames, fewer than the window of {window}")
    return np.arange(0, num_frames - window + 1, hop, dtype=np.int32)


def window_index(num_clips: int, num_frames: int, window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """(clip, start) int32 arrays ``(num_clips * windows_per_clip,)``, clip-major."""
    starts = window_starts(num_frames, window, hop)
    clip = np.repeat(np.arange(num_clips, dtype=np.int32), len(starts))
    return clip, np.tile(starts, num_clips)


def gather_windows(log_mels: np.ndarray, clip: np.ndarray, start: np.ndarray, window: int,
                   flatten: bool) -> np.ndarray:
    """Windows of ``log_mels`` (clips, frames, mels) -> (b, window, mels), or (b, window*mels) flattened frame-major."""
    frames = start[:, None] + np.arange(window, dtype=np.int32)
    x = log_mels[clip[:, None], frames]
    return x.reshape(len(clip), -1) if flatten else x


def split_validation(num_clips: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random split of clip indices into (train, validation), sorted; deterministic under ``seed``."""
    num_val = int(round(num_clips * fraction))
    if fraction > 0 and num_clips > 1:
        num_val = min(max(num_val, 1), num_clips - 1)
    order = np.random.default_rng(seed).permutation(num_clips)
    return np.sort(order[num_val:]), np.sort(order[:num_val])


@dataclasses.dataclass
class TrainBatches:
    """Endless shuffled batches of windows; a full pass over all windows is one epoch.

    Each batch is a dict ``{"x": float32 (local_batch, ...), "y": int32 (local_batch,)}`` where
    ``y`` is the clip's class (zeros when ``clip_labels`` is None). The last partial batch of an
    epoch is dropped so every step has the same shape (one compilation).
    """

    log_mels: np.ndarray              # (clips, frames, mels) float32
    window: int
    hop: int
    global_batch_size: int
    seed: int
    flatten: bool
    clip_labels: np.ndarray | None = None   # (clips,) int32 class per clip
    process_index: int = 0
    process_count: int = 1
    epoch: int = 0
    step_in_epoch: int = 0

    def __post_init__(self):
        num_clips, num_frames, _ = self.log_mels.shape
        self._clip, self._start = window_index(num_clips, num_frames, self.window, self.hop)
        self.steps_per_epoch = len(self._clip) // self.global_batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{len(self._clip)} training windows are fewer than one batch of {self.global_batch_size}")
        if self.global_batch_size % self.process_count:
            raise ValueError("the global batch must split evenly over processes")
        self._local = self.global_batch_size // self.process_count
        self._order = None
        self._order_epoch = -1

    @property
    def num_windows(self) -> int:
        return len(self._clip)

    def get_state(self) -> dict[str, int]:
        """Position in the stream (JSON-serialisable), for checkpoints."""
        return {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "seed": self.seed}

    def set_state(self, state: dict[str, int]) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"checkpointed data seed {state['seed']} differs from the config's {self.seed}")
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])

    def _epoch_order(self) -> np.ndarray:
        if self._order_epoch != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._order = rng.permutation(len(self._clip))
            self._order_epoch = self.epoch
        return self._order

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        begin = self.step_in_epoch * self.global_batch_size + self.process_index * self._local
        rows = self._epoch_order()[begin:begin + self._local]
        clip = self._clip[rows]
        x = gather_windows(self.log_mels, clip, self._start[rows], self.window, self.flatten)
        y = self.clip_labels[clip] if self.clip_labels is not None else np.zeros(len(rows), np.int32)
        self.step_in_epoch += 1
        if self.step_in_epoch == self.steps_per_epoch:
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
        return {"x": x, "y": y.astype(np.int32)}


def eval_batches(log_mels: np.ndarray, window: int, hop: int, batch_size: int, flatten: bool,
                 clip_labels: np.ndarray | None = None, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """All windows of all clips in order, in fixed-size global batches padded at the end.

    Each process gets (and gathers windows for) only its own ``batch_size // process_count`` rows
    of every global batch. Yields dicts with ``x`` (local rows, ...), ``y`` the row of
    ``clip_labels`` of the window's clip (e.g. a bool mask of candidate classes; zeros without
    labels), ``clip`` int32 clip index and ``mask`` bool (False on padding rows).
    """
    if batch_size % process_count:
        raise ValueError(f"eval batch size {batch_size} does not split evenly over {process_count} processes")
    local = batch_size // process_count
    num_clips, num_frames, _ = log_mels.shape
    clip, start = window_index(num_clips, num_frames, window, hop)
    for begin in range(0, len(clip), batch_size):
        count = min(batch_size, len(clip) - begin)
        positions = np.arange(process_index * local, (process_index + 1) * local)
        rows = begin + np.minimum(positions, count - 1)   # padding repeats the last window
        c = clip[rows]
        y = clip_labels[c] if clip_labels is not None else np.zeros(local, np.int32)
        yield {
            "x": gather_windows(log_mels, c, start[rows], window, flatten),
            "y": y,
            "clip": c,
            "mask": positions < count,
        }
