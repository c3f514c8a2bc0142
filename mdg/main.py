"""Entry point: ``python -m mdg.main --config configs/ae.py [--workdir DIR] [--mode MODE]``.

Kept short on purpose: it parses flags, starts multi-host JAX if needed and calls the library.
Modes: ``prepare`` (data + shards), ``train`` (prepare + train), ``evaluate`` (score with the
newest checkpoints and write results), ``all`` (the default: everything).

Exit status: 0 done; 2 a problem in the user's data, paths, config or flags, or a full disk (the
message alone is printed; ``--traceback`` adds the traceback); 128 + signal number when stopped by SIGTERM or
SIGINT (:mod:`mdg.preemption`; rerun the same command to resume); 1 a bug (with traceback).
"""

import errno
import logging as python_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mdg import console, errors, host_memory, preemption, sharding, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/ae.py[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "", "Output folder; default workdirs/<config name>.")
_MODE = flags.DEFINE_enum("mode", "all", ["all", "prepare", "train", "evaluate"], "What to run.")
_LOG_LEVEL = flags.DEFINE_enum("log_level", "warning", list(console.CONSOLE_LEVELS),
                               "Lowest level of log records on the console besides the stage lines; "
                               "WORKDIR/log.txt always has them all.")
_RESTART = flags.DEFINE_bool("restart", False, "Start over in a workdir that holds a run with another "
                             "config: its files are moved to workdir/replaced/<time>/.")
_TRACEBACK = flags.DEFINE_bool("traceback", False, "Show the traceback of errors in data, paths or config.")

USER_ERROR_STATUS = 2
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USER_ERROR_STATUS)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a bad flag or config override (unknown key, wrong type, missing
    or failing config file) reported as a one-line error and exit status 2."""
    try:
        remaining = flags.FLAGS(argv)
        _ = _CONFIG.value.model  # a config file that could not be read raises only when used
        return remaining
    except (flags.Error, AttributeError, KeyError, ValueError, TypeError, OSError) as error:
        if "--traceback" in argv:
            raise
        _fail(f"bad command line: {_without_traceback(str(error))} (see --helpfull)")


def _without_traceback(message: str) -> str:
    """ml_collections puts the config file's traceback into its message: keep the error line only."""
    head, marker, trace = message.partition("Traceback (most recent call last):")
    if marker:
        message = head.strip() + " " + trace.strip().splitlines()[-1]
    return " ".join(message.split())


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    console.setup(_LOG_LEVEL.value)
    host_memory.configure_malloc()   # memory flat in the clip count, steps at full speed (host_memory.py)
    sharding.initialize_distributed()
    preemption.install()
    config = _CONFIG.value
    workdir = _WORKDIR.value or train.default_workdir(config)
    console.log_to_file(workdir)
    logging.info("workdir %s, mode %s", workdir, _MODE.value)
    try:
        train.train_and_evaluate(config, workdir, mode=_MODE.value, restart=_RESTART.value)
    except errors.UserError as error:
        if _TRACEBACK.value:
            raise
        _fail(str(error))
    except OSError as error:
        if error.errno not in DISK_FULL or _TRACEBACK.value:
            raise
        _fail(f"{error}; nothing half-written is kept: free some space and rerun the same command")
    except preemption.Preempted as stop:
        print(f"\n{stop}", file=sys.stderr)   # on its own line, after any progress bar
        # Everything on disk is consistent by now (checkpoint saved, partial artefacts removed).
        # Skip the interpreter's teardown: a signal that interrupted a library's writer threads
        # (TFDS / array_record) can make their C++ destructors abort the process at exit.
        sys.stdout.flush()
        sys.stderr.flush()
        python_logging.shutdown()
        os._exit(stop.exit_status)


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main, flags_parser=parse_flags)
