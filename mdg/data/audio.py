"""Reading and validating WAV clips with soundfile (libsndfile).

Clips are read as they are stored: mono, at the dataset's sample rate (16 kHz for MIMII DG and
DCASE 2022/2023), decoded straight to float32 by libsndfile without resampling (16-bit PCM is
scaled by 1/32768, so values lie in [-1, 1)). Every problem is an `AudioError` naming the file.

Clip length is a property of the machine type, not of the dataset: 10 s (160000 samples) for most
types, 12 s (192000 samples) for DCASE 2023 ToyCar and ToyTrain. `read_clips` therefore takes the
expected length from `num_samples` or from the first readable clip of each machine type.
"""

from __future__ import annotations

import collections
import os
from typing import Iterator, Sequence

from absl import logging
import numpy as np
import soundfile

from mdg import errors
from mdg.data.layout import Clip

_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


class AudioError(errors.UserError):
    """A WAV file is missing, unreadable or not as expected; the message names the file."""


def _open_checked(path: str, sample_rate: int) -> soundfile.SoundFile:
    """Opens a WAV file and checks its header: readable, mono, `sample_rate`, not empty."""
    if not os.path.isfile(path):
        raise AudioError(f"{path}: file missing")
    try:
        sound = soundfile.SoundFile(path)
    except soundfile.SoundFileError as error:
        raise AudioError(f"{path}: unreadable or corrupt audio file: {error}") from error
    problem = None
    if sound.samplerate != sample_rate:
        problem = f"sample rate {sound.samplerate} Hz, expected {sample_rate} Hz"
    elif sound.channels != 1:
        problem = f"{sound.channels} channels, expected 1 (mono)"
    elif sound.frames == 0:
        problem = "empty (0 samples)"
    if problem:
        sound.close()
        raise AudioError(f"{path}: {problem}")
    return sound


def read_wav(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Reads a mono WAV file.

    Args:
      path: the WAV file.
      sample_rate: the required sample rate in Hz; the file is not resampled.
    Returns:
      float32 array (samples,), values in [-1, 1].
    Raises:
      AudioError: missing file, corrupt/unreadable, empty, wrong sample rate, more than one channel,
        or (float WAV) samples that are not finite or outside [-1, 1].
    """
    path = os.fspath(path)
    with _open_checked(path, sample_rate) as sound:
        try:
            waveform = sound.read(dtype="float32")
        except soundfile.SoundFileError as error:
            raise AudioError(f"{path}: corrupt audio data: {error}") from error
        subtype = sound.subtype
    if waveform.size == 0:
        raise AudioError(f"{path}: no samples could be read (truncated file?)")
    # Integer PCM is scaled into [-1, 1) by libsndfile; stored floats are passed through unchecked.
    if subtype in _FLOAT_SUBTYPES and not (np.all(np.isfinite(waveform))
                                           and np.max(np.abs(waveform)) <= 1.0):
        raise AudioError(f"{path}: float samples outside [-1, 1] or not finite")
    return waveform


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def read_clips(clips: Sequence[Clip], sample_rate: int = 16000, num_samples: int | None = None,
               on_error: str = "raise") -> Iterator[tuple[Clip, np.ndarray]]:
    """Reads clips in order, checking that all clips of a machine type have the same length.

    Args:
      clips: the clips to read.
      sample_rate: the required sample rate in Hz.
      num_samples: the required length of every clip; None: per machine type, the length of its
        first readable clip.
      on_error: "raise" to stop at the first bad clip; "skip" to log a warning and go on.
    Yields:
      (clip, waveform) with waveform float32 (num_samples,), values in [-1, 1].
    Raises:
      AudioError (with on_error="raise"): a clip is unreadable (see `read_wav`) or has another
        length than expected (the message names the clip, its length and the expected one).
    """
    _check_on_error(on_error)
    if num_samples is not None and num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    return _read_clips(clips, sample_rate, num_samples, on_error)


def _read_clips(clips: Sequence[Clip], sample_rate: int, num_samples: int | None,
                on_error: str) -> Iterator[tuple[Clip, np.ndarray]]:
    expected_by_machine: dict[str, int] = {}
    for clip in clips:
        try:
            waveform = read_wav(clip.path, sample_rate)
            expected = expected_by_machine.setdefault(
                clip.machine, waveform.shape[0] if num_samples is None else num_samples)
            if waveform.shape[0] != expected:
                origin = "num_samples" if num_samples is not None else "the first clip"
                raise AudioError(
                    f"{clip.path}: {waveform.shape[0]} samples, expected {expected} ({origin} of "
                    f"machine type {clip.machine!r})")
        except AudioError as error:
            if on_error == "raise":
                raise
            logging.warning("Skipping %s", error)
            continue
        yield clip, waveform


def clip_num_samples(clips: Sequence[Clip], sample_rate: int = 16000) -> int:
    """The clip length of one machine type, from the WAV headers only (no audio is decoded).

    Headers that are unreadable, of another sample rate, not mono or empty are ignored here
    (reading those clips fails in `read_clips`); among the rest the most common length wins, ties
    going to the length seen first.

    Args:
      clips: clips of a single machine type.
      sample_rate: the required sample rate in Hz.
    Returns:
      The length in samples.
    Raises:
      ValueError: the clips are of several machine types.
      AudioError: no clip has a valid header.
    """
    machines = sorted({clip.machine for clip in clips})
    if len(machines) > 1:
        raise ValueError(f"clip_num_samples needs clips of one machine type, got {machines}")
    lengths: collections.Counter[int] = collections.Counter()
    for clip in clips:
        try:
            with _open_checked(clip.path, sample_rate) as sound:
                lengths[sound.frames] += 1
        except AudioError as error:
            logging.warning("Ignoring for the clip length: %s", error)
    if not lengths:
        where = f"of machine type {machines[0]!r} " if machines else ""
        raise AudioError(f"no clip {where}has a readable mono {sample_rate} Hz WAV header "
                         f"({len(clips)} clips)")
    return lengths.most_common(1)[0][0]
