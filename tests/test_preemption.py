"""SIGTERM / Ctrl-C (SIGINT) during prepare, training and scoring of the real main command, and
two runs preparing one cache at once.

Each stopped run exits with 128 + signal number and a message saying what to do; the same
command then finishes, and what it writes is bit-identical to an uninterrupted run's.
"""

import hashlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from mdg import preemption, sharding, train
from mdg.data import tfds_builder
from test_train import fake_unit, tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN_FLAGS = ("--config", "configs/ae.py:tiny", "--config.train.num_epochs=20",
               "--config.data.synthetic.machines=fan")
# Enough clips that generating and building shards take a few seconds.
PREPARE_FLAGS = ("--config", "configs/ae.py:tiny", "--mode", "prepare",
                 "--config.data.synthetic.num_source_train=40", "--config.data.synthetic.machines=fan")


# Run as the child's prelude: every clip's record waits (up to 2 min) before it is written, so the
# child is still building shards when the test's signal comes, however loaded the machine is.
HOLD_SHARD_BUILDING = """
import time
from mdg.data import tfds_builder
write_record = tfds_builder._record
def held_record(clip, log_mel):
    time.sleep(120)
    return write_record(clip, log_mel)
tfds_builder._record = held_record
"""


class Run:
    """``python -m mdg.main`` in a subprocess, its stderr collected as it comes; ``prelude`` is
    Python code the child runs first (in the same interpreter)."""

    def __init__(self, cache, *args, prelude=""):
        env = dict(os.environ, MDG_CACHE=str(cache), JAX_PLATFORMS="cpu")
        main = prelude + "\nimport runpy\nrunpy.run_module('mdg.main', run_name='__main__')\n"
        self.proc = subprocess.Popen([sys.executable, "-c", main, *args], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):  # os.read returns whatever is there, so progress lines are seen at once
        for chunk in iter(lambda: os.read(self.proc.stderr.fileno(), 65536), b""):
            self.stderr += chunk.decode(errors="replace")

    def signal_when(self, ready, signum, timeout=300):
        """Sends ``signum`` as soon as ``ready()`` holds; fails if the run ends first."""
        deadline = time.time() + timeout
        while not ready():
            assert self.proc.poll() is None, f"the run ended before the signal:\n{self.stderr[-3000:]}"
            assert time.time() < deadline, "timed out waiting for the moment to signal"
            time.sleep(0.005)
        self.proc.send_signal(signum)
        return self.wait()

    def wait(self, timeout=600):
        code = self.proc.wait(timeout=timeout)
        self._reader.join()
        return code


def finish(cache, *args):
    run = Run(cache, *args)
    assert run.wait() == 0, run.stderr[-4000:]
    return run


def digests(folder: pathlib.Path, pattern: str) -> dict[str, str]:
    """sha256 of every file matching ``pattern`` under ``folder``, by path relative to it."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob(pattern)) if p.is_file()}


def shard_records(cache: pathlib.Path) -> dict[str, dict[str, np.ndarray]]:
    """The decoded records of the one fan dataset in ``cache`` ({split: arrays}). The array_record
    files themselves are not byte-reproducible (the same records give other bytes), so records are compared."""
    (version_dir,) = (cache / "tfds" / "mdg_log_mel").glob("fan_*/*/")
    builder = tfds.builder_from_directory(version_dir)
    return {split: tfds_builder.load_split(builder, split) for split in ("train", "test")}


def assert_same_records(cache, reference):
    for split, arrays in shard_records(reference).items():
        got = shard_records(cache)[split]
        for field, values in arrays.items():
            np.testing.assert_array_equal(got[field], values, err_msg=f"{split} {field}")


def results_of(workdir: pathlib.Path) -> dict[str, str]:
    """Digests of the results, without the training-curve pictures (plots/ and report.html, which
    inlines them): an epoch cut by the stop averages its loss over the steps after the resume
    only, so its point on the curve differs while the trained model and every score are equal."""
    return {name: digest for name, digest in digests(workdir / "results", "*").items()
            if not name.startswith("plots/") and name != "report.html"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def uninterrupted(cache, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    finish(cache, *TRAIN_FLAGS, "--workdir", str(workdir))
    return workdir


def test_sigterm_during_training_saves_then_resumes_identically(cache, uninterrupted, tmp_path):
    fan = tmp_path / "checkpoints" / "fan"
    run = Run(cache, *TRAIN_FLAGS, "--workdir", str(tmp_path))
    code = run.signal_when(lambda: fan.is_dir() and any(p.name.isdigit() for p in fan.iterdir()),
                           signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, run.stderr[-3000:]
    message = run.stderr.strip().splitlines()[-1]
    assert message.startswith("stopped by SIGTERM at step ") and message.endswith(
        "of unit fan; checkpoint saved; rerun the same command to resume"), message
    step = int(message.split("at step ")[1].split()[0])
    assert (fan / str(step) / "commit_success.txt").is_file(), "the stop did not save its step"
    assert "Traceback" not in run.stderr

    resumed = finish(cache, *TRAIN_FLAGS, "--workdir", str(tmp_path))
    assert f"resuming at step {step} of" in resumed.stderr
    assert results_of(tmp_path) == results_of(uninterrupted)


def test_sigint_at_a_step_boundary_in_process(tmp_path, monkeypatch):
    """Ctrl-C inside a step: the step completes, is saved with the data position, and the rerun matches."""
    config, unit, mesh = tiny_config(save_every_steps=4), fake_unit(), sharding.make_mesh(1)
    _, straight = train.train_unit(config, unit, mesh, tmp_path / "straight")

    real_next, calls = train.pipeline.TrainBatches.__next__, []
    def next_then_ctrl_c(self):
        calls.append(1)
        # The stream reads PREFETCH_BATCHES ahead: this read happens during step 7, after step 6's update.
        if len(calls) == 7 + train.PREFETCH_BATCHES:
            os.kill(os.getpid(), signal.SIGINT)
        return real_next(self)
    monkeypatch.setattr(train.pipeline.TrainBatches, "__next__", next_then_ctrl_c)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(preemption.Preempted, match="stopped by SIGINT at step 7 of unit fake; checkpoint saved"):
        train.train_unit(config, unit, mesh, tmp_path / "stopped")
    assert signal.getsignal(signal.SIGINT) is handler, "handlers not restored"
    assert (tmp_path / "stopped" / "checkpoints" / "fake" / "7").is_dir()
    monkeypatch.undo()
    _, resumed = train.train_unit(config, unit, mesh, tmp_path / "stopped")
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_signal_during_scoring_stops_and_rerun_scores_identically(cache, uninterrupted, tmp_path):
    # Start from the uninterrupted run's finished checkpoints: this run goes straight to scoring.
    shutil.copytree(uninterrupted / "checkpoints", tmp_path / "checkpoints")
    shutil.copy(uninterrupted / "config.json", tmp_path / "config.json")
    run = Run(cache, *TRAIN_FLAGS, "--workdir", str(tmp_path))
    code = run.signal_when(lambda: "scoring" in run.stderr, signal.SIGINT)
    assert code == 128 + signal.SIGINT, run.stderr[-3000:]
    assert run.stderr.strip().splitlines()[-1] == (
        "stopped by SIGINT outside training (nothing half-written is kept); rerun the same command to resume")
    assert not (tmp_path / "results").exists()
    finish(cache, *TRAIN_FLAGS, "--workdir", str(tmp_path))
    assert results_of(tmp_path) == results_of(uninterrupted)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A cache prepared without interruption."""
    straight = tmp_path_factory.mktemp("prepared")
    finish(straight, *PREPARE_FLAGS, "--workdir", str(straight / "w"))
    return straight


@pytest.mark.parametrize("phase, marker, signum", [
    ("synthetic generation", "synthetic/*/.fan.partial-*", signal.SIGTERM),
    ("shard building", "tfds/**/incomplete*", signal.SIGINT),
])
def test_signal_during_prepare_leaves_nothing_half_written(prepared, tmp_path, phase, marker, signum):
    victim = tmp_path / "victim"
    if phase == "shard building":  # the WAVs are there already: the run goes straight to the shards
        shutil.copytree(prepared / "synthetic", victim / "synthetic")
    prelude = HOLD_SHARD_BUILDING if phase == "shard building" else ""
    run = Run(victim, *PREPARE_FLAGS, "--workdir", str(tmp_path / "w"), prelude=prelude)
    code = run.signal_when(lambda: any(victim.glob(marker)), signum)
    assert code == 128 + signum, run.stderr[-3000:]
    assert f"stopped by {signal.Signals(signum).name} outside training" in run.stderr
    assert "Traceback" not in run.stderr
    assert not list(victim.glob("synthetic/*/.fan.partial-*")) and not list(victim.glob("tfds/**/incomplete*"))
    assert not list(victim.glob("tfds/**/dataset_info.json")), "a half-built dataset looks complete"
    if phase == "synthetic generation":
        assert not list(victim.glob("synthetic/*/fan")), "a half-generated machine type was published"

    finish(victim, *PREPARE_FLAGS, "--workdir", str(tmp_path / "w"))
    assert digests(victim / "synthetic", "*.wav") == digests(prepared / "synthetic", "*.wav")
    assert_same_records(victim, prepared)


def test_two_processes_preparing_one_cache_both_finish_with_correct_data(prepared, tmp_path):
    """Both generate the WAVs privately and publish atomically; one builds the shards, the other waits."""
    shared = tmp_path / "shared"
    runs = [Run(shared, *PREPARE_FLAGS, "--workdir", str(tmp_path / f"w{i}")) for i in range(2)]
    for run in runs:
        assert run.wait() == 0, run.stderr[-3000:]
    assert digests(shared / "synthetic", "*.wav") == digests(prepared / "synthetic", "*.wav")
    assert_same_records(shared, prepared)
    assert len(list(shared.glob("tfds/mdg_log_mel/fan_*/*/dataset_info.json"))) == 1


def test_second_signal_stops_at_once_and_a_late_one_reaches_the_previous_handler():
    received = []
    original = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        boundary = preemption.StepBoundary()
        os.kill(os.getpid(), signal.SIGTERM)
        assert boundary.requested and not received
        with pytest.raises(preemption.Preempted, match="second SIGTERM before the checkpoint was saved"):
            os.kill(os.getpid(), signal.SIGTERM)
        boundary.close()  # the loop ended without acting on the first signal: it goes on to the old handler
        assert received == [signal.SIGTERM]

        boundary = preemption.StepBoundary()
        os.kill(os.getpid(), signal.SIGTERM)
        stop = boundary.preempted(3, "fan")
        boundary.close()  # acted on: not re-raised
        assert received == [signal.SIGTERM] and stop.exit_status == 143
    finally:
        signal.signal(signal.SIGTERM, original)
