"""Input pipeline: log-Mel clips -> batches of fixed-length windows (AE vectors or CNN patches).

A window is ``window`` consecutive frames of one clip starting at frame ``start``. The
autoencoder uses 5-frame windows flattened frame-major to 5 x 128 = 640 values (all windows,
hop 1: 309 per 10 s clip); MobileNetV2 uses 64 x 128 patches (hop 8 for training, 1 for
scoring). Clips come as a ``(clips, frames, mels)`` float32 array or as a
:class:`mdg.data.lazy_log_mels.LazyLogMels` view of the shards; either way the pipeline reads
one block of clips at a time and gathers windows from it per batch, so neither the window
array nor (from shards) the whole split is ever in memory.

Training batches come from :class:`TrainBatches`: an endless stream shuffled in two levels
(clips over the whole split, then windows inside blocks of ``shuffle_clips`` clips) whose
order is a pure function of ``(seed, epoch)``; its position (epoch, step) is all the state a
checkpoint needs to resume the exact same sequence. With several processes every process
builds the same order and takes its own contiguous slice of each global batch.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from collections.abc import Iterator

import numpy as np

from mdg.data.lazy_log_mels import LazyLogMels, read_rows


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
    epoch is dropped so every step has the same shape (one compilation). At most three blocks of
    ``shuffle_clips`` clips are held in memory (from shards, the next one is read ahead).

    With ``jitter`` each window starts a random 0 .. hop - 1 frames after its place on the hop
    grid (never past the clip's last window), drawn anew for every window of every epoch: the
    windows of an epoch are as many as the grid's, but not the same ones every epoch. On the
    fixed grid a classifier trained on few clips learns the grid's windows by heart: the
    CPU-sized MobileNetV2 run (hop 18) classified its training windows on the grid without error
    and the same clips' windows one frame off it at 53 %, its held-out accuracy (docs/synthetic.md,
    session 11).
    """

    log_mels: object                  # (clips, frames, mels) float32 array or LazyLogMels
    window: int
    hop: int
    global_batch_size: int
    seed: int
    flatten: bool
    clip_labels: np.ndarray | None = None   # (clips,) int32 class per clip
    shuffle_clips: int = 256
    jitter: bool = False
    process_index: int = 0
    process_count: int = 1
    epoch: int = 0
    step_in_epoch: int = 0

    def __post_init__(self):
        num_clips, num_frames, _ = self.log_mels.shape
        self._starts = window_starts(num_frames, self.window, self.hop)
        # Largest offset from the grid: every window stays inside the clip.
        self._max_offset = min(self.hop - 1, num_frames - self.window - int(self._starts[-1])) if self.jitter else 0
        self._block_windows = self.shuffle_clips * len(self._starts)
        self.num_windows = num_clips * len(self._starts)
        self.steps_per_epoch = self.num_windows // self.global_batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{self.num_windows} training windows are fewer than one batch of {self.global_batch_size}")
        if self.global_batch_size % self.process_count:
            raise ValueError("the global batch must split evenly over processes")
        if self.shuffle_clips < 1:
            raise ValueError(f"shuffle_clips must be at least 1, got {self.shuffle_clips}")
        self._local = self.global_batch_size // self.process_count
        self._blocks = {}    # (epoch, block) -> (clips of the block, window order, log-Mels)
        self._pending = {}   # (epoch, block) -> Future of the same, read ahead from the shards
        self._reader = None
        self._resident = None   # the whole split, when it fits in one block

    def get_state(self) -> dict[str, int]:
        """Position in the stream (JSON-serialisable), for checkpoints."""
        return {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "seed": self.seed}

    def set_state(self, state: dict[str, int]) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"checkpointed data seed {state['seed']} differs from the config's {self.seed}")
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])

    def _load_block(self, epoch: int, block: int):
        """Clips (split rows), window order, window offsets from the grid (frames) and log-Mels of
        one block of ``epoch``'s clip order; a pure function of (seed, epoch, block)."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.log_mels))
        clips = order[block * self.shuffle_clips:(block + 1) * self.shuffle_clips]
        rng = np.random.default_rng([self.seed, epoch, block])
        windows = rng.permutation(len(clips) * len(self._starts))
        offsets = rng.integers(0, self._max_offset + 1, len(windows), dtype=np.int32)
        if len(self.log_mels) <= self.shuffle_clips:   # the split is one block: read it once, keep it
            if self._resident is None:
                self._resident = (read_rows(self.log_mels, np.arange(len(self.log_mels)))
                                  if isinstance(self.log_mels, LazyLogMels) else self.log_mels)
            return clips, windows, offsets, self._resident[clips]
        return clips, windows, offsets, read_rows(self.log_mels, clips)

    def _block(self, block: int):
        """The block's data; from the shards, the next block is read ahead in a background thread
        while this one is consumed (at most three blocks in memory)."""
        key = (self.epoch, block)
        if key not in self._blocks:
            pending = self._pending.pop(key, None)
            self._blocks[key] = pending.result() if pending else self._load_block(*key)
            if isinstance(self.log_mels, LazyLogMels) and len(self.log_mels) > self.shuffle_clips:
                last_block = (self.steps_per_epoch * self.global_batch_size - 1) // self._block_windows
                following = (self.epoch, block + 1) if block < last_block else (self.epoch + 1, 0)
                if self._reader is None:
                    self._reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mdg-read-ahead")
                self._pending = {following: self._reader.submit(self._load_block, *following)}
        return self._blocks[key]

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        begin = self.step_in_epoch * self.global_batch_size + self.process_index * self._local
        positions = np.arange(begin, begin + self._local)
        blocks = positions // self._block_windows
        x, y = [], []
        for block in np.unique(blocks):
            clips, windows, offsets, data = self._block(int(block))
            chosen = windows[positions[blocks == block] - block * self._block_windows]
            local_clip = chosen // len(self._starts)
            start = self._starts[chosen % len(self._starts)] + offsets[chosen]
            x.append(gather_windows(data, local_clip, start, self.window, self.flatten))
            y.append(self.clip_labels[clips[local_clip]] if self.clip_labels is not None
                     else np.zeros(len(chosen), np.int32))
        self._blocks = {k: v for k, v in self._blocks.items() if k == (self.epoch, int(blocks[-1]))}
        self.step_in_epoch += 1
        if self.step_in_epoch == self.steps_per_epoch:
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
        return {"x": np.concatenate(x), "y": np.concatenate(y).astype(np.int32)}


def eval_batches(log_mels, window: int, hop: int, batch_size: int, flatten: bool,
                 clip_labels: np.ndarray | None = None, process_index: int = 0,
                 process_count: int = 1, chunk_clips: int = 64) -> Iterator[dict[str, np.ndarray]]:
    """All windows of all clips in order, in fixed-size global batches padded at the end.

    ``log_mels`` is a ``(clips, frames, mels)`` float32 array or a lazy view of the shards; it
    is read ``chunk_clips`` consecutive clips at a time. Each process gets (and gathers windows
    for) only its own ``batch_size // process_count`` rows of every global batch. Yields dicts
    with ``x`` (local rows, ...), ``y`` the row of ``clip_labels`` of the window's clip (e.g. a
    bool mask of candidate classes; zeros without labels), ``clip`` int32 clip index and
    ``mask`` bool (False on padding rows).
    """
    if batch_size % process_count:
        raise ValueError(f"eval batch size {batch_size} does not split evenly over {process_count} processes")
    local = batch_size // process_count
    num_clips, num_frames, _ = log_mels.shape
    clip, start = window_index(num_clips, num_frames, window, hop)
    chunk_begin, chunk = 0, np.empty((0, num_frames, log_mels.shape[2]), np.float32)
    for begin in range(0, len(clip), batch_size):
        count = min(batch_size, len(clip) - begin)
        positions = np.arange(process_index * local, (process_index + 1) * local)
        rows = begin + np.minimum(positions, count - 1)   # padding repeats the last window
        c = clip[rows]
        if c.min() < chunk_begin or c.max() >= chunk_begin + len(chunk):   # clip-major: moves forward
            chunk_begin = int(c.min())
            chunk = read_rows(log_mels, np.arange(chunk_begin, min(num_clips, max(
                chunk_begin + chunk_clips, int(c.max()) + 1))))
        y = clip_labels[c] if clip_labels is not None else np.zeros(local, np.int32)
        yield {
            "x": gather_windows(chunk, c - chunk_begin, start[rows], window, flatten),
            "y": y,
            "clip": c,
            "mask": positions < count,
        }
