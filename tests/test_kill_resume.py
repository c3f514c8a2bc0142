"""A run killed with SIGKILL mid-training and started again ends with the same state (parameters,
optimizer, step and RNG key; mixup on, see train_driver.py) as an uninterrupted run."""

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np

DRIVER = pathlib.Path(__file__).with_name("train_driver.py")


def run(workdir, out):
    return subprocess.Popen([sys.executable, str(DRIVER), str(workdir), str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def load(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def test_sigkill_then_restart_matches_uninterrupted(tmp_path):
    straight = run(tmp_path / "straight", tmp_path / "straight.npz")
    assert straight.wait(timeout=300) == 0, straight.stderr.read().decode()[-3000:]

    ckpt_dir = tmp_path / "killed" / "checkpoints" / "fake"
    victim = run(tmp_path / "killed", tmp_path / "killed.npz")
    deadline = time.time() + 240
    while time.time() < deadline and victim.poll() is None:
        finished = [p for p in ckpt_dir.glob("*") if p.name.isdigit()] if ckpt_dir.exists() else []
        if any(int(p.name) >= 40 for p in finished):
            break
        time.sleep(0.02)
    assert victim.poll() is None, "the run ended before it could be killed; make it longer"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed.npz").exists()

    resumed = run(tmp_path / "killed", tmp_path / "killed.npz")
    stderr = resumed.communicate(timeout=300)[1].decode()
    assert resumed.returncode == 0, stderr[-3000:]
    first_step = int(re.search(r"\| *(\d+)/\d+ \[", stderr).group(1))
    assert first_step >= 40, f"resumed at step {first_step}, not from the checkpoint"
    for a, b in zip(load(tmp_path / "straight.npz"), load(tmp_path / "killed.npz"), strict=True):
        np.testing.assert_array_equal(a, b)
