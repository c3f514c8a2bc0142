"""Log-Mel clips read from the shards on demand, so memory does not grow with the clip count.

:class:`LazyLogMels` stands for a read-only float32 ``(clips, frames, mels)`` array whose rows
live in a random-access record source (the TFDS array_record shards of one split). Indexing
it with a slice, an int array or a bool mask gives another lazy view (no data read);
:meth:`LazyLogMels.read` reads the rows asked for; an int index or ``np.asarray`` reads data.
The input pipeline (:mod:`mdg.data.pipeline`) reads a block of clips at a time through
:func:`read_rows`, which serves numpy arrays and lazy views alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Reader = Callable[[np.ndarray], np.ndarray]   # int64 (n,) source rows -> float32 (n, frames, mels)


class LazyLogMels:
    """A read-only ``(clips, frames, mels)`` float32 array read row by row from ``reader``.

    Args:
      reader: maps source rows (int64 ``(n,)``) to their log-Mels ``(n, frames, mels)``.
      rows: the source rows this view holds, in order.
      clip_shape: ``(frames, mels)`` of every clip.
    """

    def __init__(self, reader: Reader, rows: np.ndarray, clip_shape: tuple[int, int]):
        self._reader = reader
        self.rows = np.asarray(rows, dtype=np.int64)
        self.clip_shape = tuple(clip_shape)
        self.dtype = np.dtype(np.float32)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows),) + self.clip_shape

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        """An int reads one clip ``(frames, mels)``; a slice, int array or bool mask is a lazy view."""
        if isinstance(index, (int, np.integer)):
            return self.read(np.array([index]))[0]
        return LazyLogMels(self._reader, self.rows[index], self.clip_shape)

    def read(self, positions: np.ndarray | Sequence[int]) -> np.ndarray:
        """The clips at ``positions`` of this view: float32 ``(len(positions), frames, mels)``."""
        rows = self.rows[np.asarray(positions, dtype=np.int64)]
        if len(rows) == 0:
            return np.empty((0,) + self.clip_shape, np.float32)
        return self._reader(rows)

    def __array__(self, dtype=None, copy=None):
        data = self.read(np.arange(len(self)))
        return data if dtype is None else data.astype(dtype)

    def __repr__(self) -> str:
        return f"LazyLogMels(shape={self.shape})"


def read_rows(log_mels, positions: np.ndarray) -> np.ndarray:
    """Rows ``positions`` of a numpy array or a :class:`LazyLogMels`: float32 ``(n, frames, mels)``."""
    if isinstance(log_mels, LazyLogMels):
        return log_mels.read(positions)
    return np.asarray(log_mels[positions], dtype=np.float32)


def concatenate(parts: Sequence[LazyLogMels | np.ndarray]) -> LazyLogMels | np.ndarray:
    """The clips of ``parts`` one after the other (all of one clip shape), lazily if any part is lazy."""
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) > 1:
        raise ValueError(f"clips of different log-Mel shapes cannot be concatenated: {sorted(shapes)}")
    if not any(isinstance(p, LazyLogMels) for p in parts):
        return np.concatenate(parts)
    offsets = np.cumsum([0] + [len(p) for p in parts])
    clip_shape = next(iter(shapes))

    def reader(rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows),) + clip_shape, np.float32)
        part_of_row = np.searchsorted(offsets, rows, side="right") - 1
        for part in np.unique(part_of_row):
            where = np.flatnonzero(part_of_row == part)
            out[where] = read_rows(parts[part], rows[where] - offsets[part])
        return out

    return LazyLogMels(reader, np.arange(offsets[-1]), clip_shape)
