"""Errors in the user's config, flags, paths or data print one message (exit status 2), no traceback."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(tmp_path, *args):
    env = dict(os.environ, MDG_CACHE=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "mdg.main", "--workdir", str(tmp_path / "w"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def tiny_ae_config():
    """configs/ae.py:tiny, as main builds it."""
    spec = importlib.util.spec_from_file_location("ae_config", ROOT / "configs" / "ae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("tiny")


@pytest.mark.parametrize("args, message", [
    (["--config", "configs/ae.py:tiny", "--config.train.lerning_rate=0.1"],
     'Did you mean "learning_rate" instead of "lerning_rate"'),
    (["--config", "configs/ae.py:tiny", "--config.train.learning_rate=fast"],
     "--config.train.learning_rate=fast: could not convert string to float: 'fast'"),
    (["--config", "configs/ae.py:huge"], "unknown variant 'huge' of configs/ae.py"),
    (["--config", "configs/nothere.py"], "configs/nothere.py"),
    (["--config", "configs/ae.py:tiny", "--config.data.root={tmp}/nowhere"],
     "data.root {tmp}/nowhere is not a folder (expected <root>/<machine>/{{train,test}}/)"),
    (["--config", "configs/ae.py:tiny", "--config.data.root={tmp}/empty"],
     "{tmp}/empty: no machine-type folders (expected <root>/<machine>/train/ or <root>/<machine>/test/ "
     "holding the WAV files); found nothing (empty folder)"),
])
def test_message_alone_and_status_2(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    proc = main(tmp_path, *[a.format(tmp=tmp_path) for a in args])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert message.format(tmp=tmp_path) in proc.stderr


@pytest.mark.parametrize("override, message", [
    ("data.synthetic.fault_severity=0", "config data.synthetic.fault_severity: fault_severity must be a "
                                        "positive number (1 = the documented fault intensities), got 0.0"),
    ("data.synthetic.snr_spread_db=-1", "config data.synthetic.snr_spread_db: snr_spread_db must be a "
                                        "number >= 0 (the per-clip SNR's standard deviation in dB; 1.5 by "
                                        "default), got -1.0"),
    ("data.synthetic.num_test=-1", "config data.synthetic.num_test: num_test must be a non-negative integer, "
                                   "got -1"),
    ("data.synthetic.seed=-1", "config data.synthetic.seed: seed must be a non-negative integer, got -1"),
    ("data.synthetic.machines=fan,pump", "config data.synthetic.machines: unknown machine types ['pump']"),
    ("features.sample_rate=4000", "config features.sample_rate: sample_rate must be an integer >= 8000 Hz, "
                                  "got 4000"),
])
def test_bad_synthetic_setting_names_its_key_before_generating(tmp_path, override, message):
    """The generator's refusal of a built-in dataset setting is one line naming the config key; no
    clip (nor the dataset's folder) is written."""
    proc = main(tmp_path, "--config", "configs/ae.py:tiny", f"--config.{override}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [proc.stderr.strip().splitlines()[-1]] and errors[0].startswith(f"error: {message}")
    assert not (tmp_path / "cache").exists()


def test_bad_synthetic_setting_leaves_a_finished_run_as_it_was(tmp_path):
    """A bad value of a scoring key (the fault severity) is refused before the workdir guard would
    move the finished run's results aside to re-score it."""
    workdir = tmp_path / "w"
    (workdir / "checkpoints" / "fan" / "20").mkdir(parents=True)
    (workdir / "results").mkdir()
    (workdir / "results" / "summary.json").write_text("{}")
    (workdir / "config.json").write_text(tiny_ae_config().to_json_best_effort(indent=2))
    proc = main(tmp_path, "--config", "configs/ae.py:tiny", "--mode", "evaluate",
                "--config.data.synthetic.fault_severity=0")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: config data.synthetic.fault_severity")
    assert (workdir / "results" / "summary.json").read_text() == "{}"
    assert not (workdir / "replaced").exists()


def test_traceback_flag_shows_the_traceback(tmp_path):
    proc = main(tmp_path, "--config", "configs/ae.py:tiny", f"--config.data.root={tmp_path}/nowhere", "--traceback")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "LayoutError: data.root" in proc.stderr


def test_workdir_of_another_config_is_refused_then_restarted(tmp_path):
    workdir = tmp_path / "w"
    (workdir / "checkpoints" / "fan" / "20").mkdir(parents=True)
    other = tiny_ae_config()
    other.train.learning_rate = 0.5
    (workdir / "config.json").write_text(other.to_json_best_effort(indent=2))
    proc = main(tmp_path, "--config", "configs/ae.py:tiny", "--mode", "prepare")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "differing keys: train.learning_rate (0.5 -> 0.001). Use another --workdir" in proc.stderr

    proc = main(tmp_path, "--config", "configs/ae.py:tiny", "--mode", "prepare", "--restart")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (moved,) = (workdir / "replaced").iterdir()
    assert (moved / "checkpoints" / "fan" / "20").is_dir() and not (workdir / "checkpoints").exists()
