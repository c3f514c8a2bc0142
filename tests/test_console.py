"""mdg.console in a small absl program: what reaches the console, stdout and WORKDIR/log.txt."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

PROGRAM = """
import sys, warnings
from absl import app, flags, logging
from mdg import console
import dataset_builder  # the test's stand-in for TFDS's module of that name

flags.DEFINE_string("level", "warning", "console level")
flags.DEFINE_string("workdir", None, "workdir")

def main(argv):
    console.setup(flags.FLAGS.level)
    logging.info("detail before the log file is known")
    console.log_to_file(flags.FLAGS.workdir)
    logging.info("library detail")
    logging.warning("a warning")
    dataset_builder.warn()
    warnings.warn("a python warning")
    console.stage("prepare: %s", "shards")
    console.final("the summary table")

app.run(main)
"""

STAND_IN = """
from absl import logging

def warn():
    logging.warning("Using custom data configuration: %s", "fan_123")
"""


def run(tmp_path, level):
    (tmp_path / "dataset_builder.py").write_text(STAND_IN)
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    workdir = tmp_path / f"run_{level}"
    proc = subprocess.run([sys.executable, "-c", PROGRAM, f"--level={level}", f"--workdir={workdir}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, (workdir / "log.txt").read_text()


def test_default_console_and_full_log(tmp_path):
    proc, logged = run(tmp_path, "warning")
    assert proc.stdout == "the summary table\n"
    lines = proc.stderr.splitlines()
    assert any(line.startswith("W") and line.endswith("] a warning") for line in lines)
    assert any("UserWarning: a python warning" in line for line in lines)
    assert any(line.endswith(" s] prepare: shards") and line.startswith("[") for line in lines)
    for hidden in ("detail", "Using custom data configuration", "the summary table"):
        assert hidden not in proc.stderr
    for message in ("detail before the log file is known", "] library detail", "] a warning",
                    "Using custom data configuration: fan_123", "a python warning",
                    " s] prepare: shards", "the summary table"):
        assert message in logged
    assert logged.index("detail before the log file") < logged.index("library detail")


def test_info_level_shows_library_records(tmp_path):
    proc, logged = run(tmp_path, "info")
    assert proc.stdout == "the summary table\n"
    for shown in ("] detail before the log file is known", "] library detail",
                  "] Using custom data configuration: fan_123", " s] prepare: shards"):
        assert shown in proc.stderr
    assert "the summary table" not in proc.stderr
    assert "library detail" in logged


def test_unknown_level_is_an_error():
    from mdg import console
    with pytest.raises(ValueError, match="'loud' is not one of"):
        console.setup("loud")
