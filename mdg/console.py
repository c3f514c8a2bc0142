"""What a run prints, and its full log in ``WORKDIR/log.txt``.

The console shows one line per finished stage (:func:`stage`), the progress bars (tqdm, on
stderr), warnings and errors, and at the end the summary table and where the outputs are
(:func:`final`). INFO records of the libraries (TFDS, orbax, JAX) and mdg's own detail lines are
shown only with ``console_level="info"``. The log file gets every record the loggers let through
(INFO and up; DEBUG too with absl's ``--verbosity=1``), third-party ones included, in absl's format.

Use from an absl program, after flag parsing: :func:`setup` first (it buffers records until the
log file is known), then :func:`log_to_file` once the workdir is known.
"""

import logging
import logging.handlers
import os
import pathlib
import tempfile
import time

import jax
from absl import logging as absl_logging

from mdg import storage

LOG_FILE = "log.txt"
CONSOLE_LEVELS = {"warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}

_STAGE_LOGGER = logging.getLogger("mdg.stage")    # on the console by default
_FINAL_LOGGER = logging.getLogger("mdg.final")    # printed to stdout by final(); the log file only
for _logger in (_STAGE_LOGGER, _FINAL_LOGGER):
    _logger.setLevel(logging.INFO)                 # whatever absl's --verbosity says
_last_stage_time = time.perf_counter()
_buffer: logging.handlers.MemoryHandler | None = None


# Expected third-party warnings kept off the console below "info" (the log file has them):
# (file name, message start). TFDS warns on every builder whose config is not predeclared, and
# mdg's shard builder (data/tfds_builder.py) names one config per feature settings on purpose.
EXPECTED_WARNINGS = (("dataset_builder.py", "Using custom data configuration"),)


class _ConsoleFilter(logging.Filter):
    """Lets stage lines and records at or above ``level`` through, but not :func:`final`'s text
    (already printed) nor, below INFO, the :data:`EXPECTED_WARNINGS`."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == _FINAL_LOGGER.name:
            return False
        if record.name == _STAGE_LOGGER.name:
            return True
        if self.level > logging.INFO and any(
                record.filename == file and str(record.msg).startswith(start)
                for file, start in EXPECTED_WARNINGS):
            return False
        return record.levelno >= self.level


class _ConsoleFormatter(absl_logging.PythonFormatter):
    """Stage lines as their bare message; everything else in absl's format."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == _STAGE_LOGGER.name:
            return record.getMessage()
        return super().format(record)


def setup(console_level: str = "warning") -> None:
    """Filters absl's stderr handler to the console view; buffers all records for :func:`log_to_file`.

    console_level: "warning" (default: stage lines, warnings, errors), "info" or "debug" (also the
    records of that level from every library; DEBUG records exist only with ``--verbosity=1``).
    Raises:
      ValueError: unknown console_level.
    """
    global _buffer
    if console_level not in CONSOLE_LEVELS:
        raise ValueError(f"console level {console_level!r} is not one of {sorted(CONSOLE_LEVELS)}")
    absl_logging.use_absl_handler()   # app.run did this already; idempotent
    handler = absl_logging.get_absl_handler()
    for old in [f for f in handler.filters if isinstance(f, _ConsoleFilter)]:
        handler.removeFilter(old)
    handler.addFilter(_ConsoleFilter(CONSOLE_LEVELS[console_level]))
    handler.setFormatter(_ConsoleFormatter())
    logging.captureWarnings(True)     # Python warnings become WARNING records: console and file
    # A memory handler never flushes by itself (flushLevel above CRITICAL; no target yet).
    _buffer = logging.handlers.MemoryHandler(capacity=1 << 30, flushLevel=logging.CRITICAL + 1)
    logging.root.addHandler(_buffer)


def log_path(workdir: str | os.PathLike) -> pathlib.Path:
    """This process's full log: ``workdir/log.txt`` on process 0, ``log.<process index>.txt`` elsewhere.

    The log is appended line by line, which buckets do not allow: for a ``gs://bucket/run`` workdir
    it goes to the local ``<temp dir>/mdg-logs/bucket/run/`` instead."""
    index = jax.process_index()
    folder = pathlib.Path(workdir)
    if storage.is_url(workdir):
        folder = pathlib.Path(tempfile.gettempdir(), "mdg-logs", os.fspath(workdir).split("://", 1)[1])
    return folder / (LOG_FILE if index == 0 else f"log.{index}.txt")


def log_to_file(workdir: str | os.PathLike) -> pathlib.Path:
    """Appends the full log to :func:`log_path`, starting with the records buffered since
    :func:`setup`; returns the file's path. Call after multi-host start-up."""
    global _buffer
    path = log_path(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    file_handler.setFormatter(absl_logging.PythonFormatter())
    if _buffer is not None:
        _buffer.setTarget(file_handler)
        _buffer.flush()
        logging.root.removeHandler(_buffer)
        _buffer.close()
        _buffer = None
    logging.root.addHandler(file_handler)
    return path


def stage(message: str, *args) -> None:
    """Logs one line for a stage just finished, shown on the console by default, as
    ``[  12.3 s] message`` with the seconds since the previous stage line (or since import)."""
    global _last_stage_time
    now = time.perf_counter()
    _STAGE_LOGGER.info("[%7.1f s] " + message, now - _last_stage_time, *args, stacklevel=2)
    _last_stage_time = now


def outputs_text(paths: dict[str, str | pathlib.Path]) -> str:
    """``label  path`` lines, aligned, under an "Outputs:" heading."""
    width = max(map(len, paths))
    return "\n".join(["Outputs:"] + [f"  {label:<{width}}  {path}" for label, path in paths.items()])


def final(text: str) -> None:
    """Prints the end-of-run text (summary table, outputs) to stdout and adds it to the log file."""
    print(text, flush=True)
    _FINAL_LOGGER.info("%s", text, stacklevel=2)
