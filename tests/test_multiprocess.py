"""Multi-host on one machine: 2 processes x 2 CPU devices train and score like 1 process x 4 devices.

Also checks the launcher's contract: the JAX variables each process gets, the ``[pI]`` output
prefix, and that one failing (or hanging) process stops the whole run.
"""

import importlib.util
import io
import json
import os
import pathlib
import sys
import time

import numpy as np

import multiprocess_driver

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_launcher():
    """launch/ is a folder of scripts, not a package: load local_multiprocess.py by path."""
    spec = importlib.util.spec_from_file_location(
        "local_multiprocess", PROJECT_ROOT / "launch" / "local_multiprocess.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


launcher = load_launcher()


def losses_of(workdir: pathlib.Path, key: str) -> list[float]:
    """The ``key`` ("loss" or "val_loss") of every epoch record in metrics.jsonl."""
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)[key] for line in lines]


def run_driver(workdir: pathlib.Path, *flags: str) -> tuple[int, str]:
    """tests/multiprocess_driver.py as 2 processes x 2 CPU devices: (status, output)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(PROJECT_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    output = io.StringIO()
    status = launcher.run(
        [sys.executable, str(PROJECT_ROOT / "tests" / "multiprocess_driver.py"), "--workdir", str(workdir), *flags],
        num_processes=2, devices_per_process=2, timeout_s=240, output=output, env=env)
    return status, output.getvalue()


def test_two_processes_train_and_score_like_one_process(tmp_path):
    status, output = run_driver(tmp_path / "multi")
    assert status == 0, output
    multi = multiprocess_driver.read_result(tmp_path / "multi")
    single = multiprocess_driver.train_and_score(tmp_path / "single", num_devices=4)

    assert int(multi["process_count"]) == 2 and int(single["process_count"]) == 1
    assert int(multi["device_count"]) == int(single["device_count"]) == 4
    assert int(multi["step"]) == int(single["step"]) == 10
    # Tolerances as in test_train's device-count test (see its comment on BN and Adam noise).
    np.testing.assert_allclose(losses_of(tmp_path / "multi", "loss"), losses_of(tmp_path / "single", "loss"),
                               rtol=1e-5)
    # Validation runs in eval mode on BN running statistics, which carry the device-count
    # rounding noise (see test_train.test_same_result_on_1_and_8_devices): same bound as outputs.
    np.testing.assert_allclose(losses_of(tmp_path / "multi", "val_loss"),
                               losses_of(tmp_path / "single", "val_loss"), rtol=2e-3)
    np.testing.assert_array_equal(multi["count"], single["count"])
    for key in ("sq_err", "residual"):
        np.testing.assert_allclose(multi[key], single[key], rtol=2e-3, atol=2e-3)

    # The checkpoint both processes wrote together is complete: restored here (no training
    # left to do), it reproduces the multi-process outputs.
    restored = multiprocess_driver.train_and_score(tmp_path / "multi", num_devices=4)
    for key in ("sq_err", "residual"):
        np.testing.assert_allclose(restored[key], multi[key], rtol=1e-5, atol=1e-6)


def test_num_devices_takes_devices_from_every_process_or_says_why_not(tmp_path):
    # 2 of the 4 devices: one per process, and each process still feeds its share of the batch.
    status, output = run_driver(tmp_path / "two", "--num_devices=2")
    assert status == 0, output
    two = multiprocess_driver.read_result(tmp_path / "two")
    single = multiprocess_driver.train_and_score(tmp_path / "single", num_devices=2)
    assert int(two["device_count"]) == 2 and int(two["step"]) == int(single["step"])
    np.testing.assert_allclose(losses_of(tmp_path / "two", "loss"), losses_of(tmp_path / "single", "loss"), rtol=1e-5)
    # 1 device would leave a process out of the mesh: a clear error before any training.
    status, output = run_driver(tmp_path / "one", "--num_devices=1")
    assert status != 0 and "cannot be split evenly over the 2 processes" in output


def test_launcher_sets_jax_variables_and_stops_all_when_one_fails(capsys, tmp_path):
    # Each child marks that it has printed; process 1 fails only once all have (on a loaded
    # machine it could otherwise fail before the others start, and they would print nothing).
    child = ("import os, pathlib, sys, time\n"
             "e = os.environ\n"
             "print('vars', e['JAX_PROCESS_ID'], e['JAX_NUM_PROCESSES'], e['JAX_COORDINATOR_ADDRESS'],"
             " e['JAX_NUM_CPU_DEVICES'], e['JAX_PLATFORMS'])\n"
             f"marks = pathlib.Path({str(tmp_path)!r})\n"
             "(marks / e['JAX_PROCESS_ID']).touch()\n"
             "start = time.monotonic()\n"
             "while (e['JAX_PROCESS_ID'] == '1' and len(list(marks.iterdir())) < 3\n"
             "       and time.monotonic() < start + 30):\n"
             "    time.sleep(0.05)\n"
             "sys.exit(3) if e['JAX_PROCESS_ID'] == '1' else time.sleep(120)\n")
    start = time.monotonic()
    status = launcher.main(["--num_processes", "3", "--devices_per_process", "2", "--",
                            sys.executable, "-c", child])
    elapsed = time.monotonic() - start
    assert status == 3
    assert elapsed < 60   # the sleeping processes were killed, not waited for
    lines = [line.split() for line in capsys.readouterr().out.splitlines() if " vars " in line]
    assert sorted(line[0] for line in lines) == ["[p0]", "[p1]", "[p2]"]
    assert all(line[0] == f"[p{line[2]}]" and line[3:4] == ["3"] and line[5:] == ["2", "cpu"]
               for line in lines)
    address = {line[4] for line in lines}
    assert len(address) == 1 and address.pop().startswith("127.0.0.1:")


def test_launcher_times_out_hanging_processes():
    output = io.StringIO()
    status = launcher.run([sys.executable, "-c", "import time; time.sleep(120)"], num_processes=2,
                          timeout_s=1.0, output=output)
    assert status == launcher.TIMEOUT_EXIT_CODE
    assert "timeout" in output.getvalue()
