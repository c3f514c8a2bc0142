"""Stopping cleanly on SIGTERM (cloud preemption, SLURM) and SIGINT (Ctrl-C).

Two regimes:

* Outside the train loop (data preparation, scoring) :func:`install` makes either signal raise
  :class:`Preempted` at once. Everything those phases write is built in a temporary place and
  published by a rename (synthetic WAVs, TFDS shards, result files), and the exception unwinds
  through their clean-up, so nothing half-written is left for a rerun to trust.
* Inside the train loop, :class:`StepBoundary` turns the signal into a flag; the loop checks it
  after each whole step, saves a checkpoint (state and data-iterator position, so they agree)
  and raises :class:`Preempted`. A second signal while the flag is set stops at once.

Rerunning the same command resumes from that checkpoint.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(BaseException):
    """The run was stopped by a signal; like KeyboardInterrupt it is not an ``Exception``, so
    ``except Exception`` clean-up code does not swallow it.

    ``signum``: the signal number; ``exit_status``: 128 + signum, the shell's convention.
    """

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def _raise_now(signum: int, frame: FrameType | None) -> None:
    del frame
    raise Preempted(signum, f"stopped by {signal_name(signum)} outside training (nothing half-written "
                            "is kept); rerun the same command to resume")


def install() -> None:
    """Makes SIGTERM and SIGINT raise :class:`Preempted` (main thread of the main program only)."""
    for signum in SIGNALS:
        signal.signal(signum, _raise_now)


class StepBoundary:
    """Defers SIGTERM/SIGINT to the next step boundary while open; restores the previous handlers on close.

    Use::

        boundary = StepBoundary()
        try:
            while training:
                ...one whole step...
                if boundary.requested:
                    save a checkpoint and wait for it
                    raise boundary.preempted(step, unit_name)
        finally:
            boundary.close()

    Outside the main thread (where handlers cannot be set) it never requests a stop.
    """

    def __init__(self):
        self.signum: int | None = None
        self._delivered = False
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.signum is not None:  # a second signal: stop now, without a checkpoint
            raise Preempted(signum, f"stopped by a second {signal_name(signum)} before the checkpoint "
                                    "was saved; rerun the same command to resume from the previous one")
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def preempted(self, step: int, unit_name: str) -> Preempted:
        """The exception to raise once the checkpoint of ``step`` is on disk."""
        self._delivered = True
        return Preempted(self.signum, f"stopped by {signal_name(self.signum)} at step {step} of unit "
                                      f"{unit_name}; checkpoint saved; rerun the same command to resume")

    def close(self) -> None:
        """Restores the previous handlers; a signal that came after the last step boundary is re-raised
        to them (the loop ended before it could act on it)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        if self.signum is not None and not self._delivered:
            self._delivered = True
            signal.raise_signal(self.signum)
