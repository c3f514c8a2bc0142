"""Entry point: ``python -m mdg.main --config configs/ae.py [--workdir DIR] [--mode MODE]``.

Kept short on purpose: it parses flags, starts multi-host JAX if needed and calls the library.
Modes: ``prepare`` (data + shards), ``train`` (prepare + train), ``evaluate`` (score with the
newest checkpoints and write results), ``all`` (the default: everything).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from mdg import console, sharding, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/ae.py[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "", "Output folder; default workdirs/<config name>.")
_MODE = flags.DEFINE_enum("mode", "all", ["all", "prepare", "train", "evaluate"], "What to run.")
_LOG_LEVEL = flags.DEFINE_enum("log_level", "warning", list(console.CONSOLE_LEVELS),
                               "Lowest level of log records on the console besides the stage lines; "
                               "WORKDIR/log.txt always has them all.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    console.setup(_LOG_LEVEL.value)
    sharding.initialize_distributed()
    config = _CONFIG.value
    workdir = _WORKDIR.value or train.default_workdir(config)
    console.log_to_file(workdir)
    logging.info("workdir %s, mode %s", workdir, _MODE.value)
    train.train_and_evaluate(config, workdir, mode=_MODE.value)


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
