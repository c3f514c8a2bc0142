"""An inter-process lock on a cache entry, so concurrent runs build it once.

``fcntl.flock`` on a ``<entry>.lock`` file beside the entry: the first process builds, the others
wait, then find the finished entry and reuse it. The kernel drops the lock when its holder exits,
even on ``kill -9``, so a killed builder never blocks the next run. The lock file itself is left
in place (deleting it would race with a waiting process). flock works between processes of one
machine and on local file systems; on NFS it may not exclude, so there, give each host its own
cache (``data.cache_dir``).
"""

from __future__ import annotations

import contextlib
import fcntl
import pathlib
from collections.abc import Iterator

from absl import logging


@contextlib.contextmanager
def held(lock_path: str | pathlib.Path, what: str) -> Iterator[None]:
    """Holds an exclusive lock on ``lock_path`` (created if missing) for the ``with`` body.

    ``what`` names the entry in the log line shown while waiting for another process.
    """
    lock_path = pathlib.Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logging.info("waiting for another process building %s (lock %s)", what, lock_path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
