"""A workdir holding one config's run refuses another config, unless told to start over."""

import json

import pytest

from mdg import workdir_guard
from mdg.config_defaults import base_config


def config(**train):
    c = base_config()
    c.model.name = "autoencoder"
    c.train.update(train)
    return c


def with_run(workdir, c):
    workdir_guard.claim(c, workdir)
    (workdir / "checkpoints" / "fan" / "20").mkdir(parents=True)
    (workdir / "metrics.jsonl").write_text("{}\n")
    return workdir


def test_same_config_or_free_keys_resume(tmp_path):
    with_run(tmp_path, config())
    assert workdir_guard.claim(config(), tmp_path) is None
    workdir_guard.claim(config(log_every_steps=7, num_devices=1), tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["log_every_steps"] == 7


def test_another_config_is_refused_naming_the_keys(tmp_path):
    with_run(tmp_path, config())
    with pytest.raises(workdir_guard.WorkdirConfigError) as error:
        workdir_guard.claim(config(learning_rate=0.1, num_epochs=3), tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message and "--restart" in message
    assert "train.learning_rate (0.001 -> 0.1), train.num_epochs (100 -> 3)" in message
    assert json.loads((tmp_path / "config.json").read_text())["train"]["learning_rate"] == 0.001


def test_restart_moves_the_old_run_aside(tmp_path):
    with_run(tmp_path, config())
    (tmp_path / "results").mkdir()
    moved = workdir_guard.claim(config(learning_rate=0.1), tmp_path, restart=True)
    assert moved.parent == tmp_path / "replaced"
    assert sorted(p.name for p in moved.iterdir()) == ["checkpoints", "config.json", "metrics.jsonl", "results"]
    assert json.loads((moved / "config.json").read_text())["train"]["learning_rate"] == 0.001
    assert json.loads((tmp_path / "config.json").read_text())["train"]["learning_rate"] == 0.1
    assert not (tmp_path / "checkpoints").exists()


def test_a_workdir_without_checkpoints_or_results_takes_the_new_config(tmp_path):
    workdir_guard.claim(config(), tmp_path)   # e.g. a --mode prepare run
    workdir_guard.claim(config(learning_rate=0.1), tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["learning_rate"] == 0.1


def test_unreadable_config_json_is_refused(tmp_path):
    with_run(tmp_path, config())
    (tmp_path / "config.json").write_text("{truncated")
    with pytest.raises(workdir_guard.WorkdirConfigError, match="config.json: unreadable"):
        workdir_guard.claim(config(), tmp_path)


def test_a_change_of_scoring_settings_keeps_the_models_and_moves_the_old_results_aside(tmp_path):
    with_run(tmp_path, config())
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "summary.json").write_text("{}")
    rescored = config()
    rescored.eval.scores = "mse,mahalanobis"
    rescored.input.eval_hop = 4
    rescored.data.synthetic.num_test = 10
    rescored.data.synthetic.fault_severity = 0.5
    moved = workdir_guard.claim(rescored, tmp_path)
    assert moved.parent == tmp_path / "replaced"
    assert sorted(p.name for p in moved.iterdir()) == ["config.json", "results"]
    assert json.loads((moved / "config.json").read_text())["eval"]["scores"] == "mse"
    assert json.loads((tmp_path / "config.json").read_text())["eval"]["scores"] == "mse,mahalanobis"
    assert (tmp_path / "checkpoints" / "fan" / "20").is_dir() and not (tmp_path / "results").exists()


def test_a_scoring_change_beside_a_training_change_is_refused(tmp_path):
    with_run(tmp_path, config())
    changed = config(learning_rate=0.1)
    changed.eval.scores = "mse,mahalanobis"
    with pytest.raises(workdir_guard.WorkdirConfigError, match=r"eval.scores .*train.learning_rate"):
        workdir_guard.claim(changed, tmp_path)
    assert not (tmp_path / "replaced").exists()


def _drop(tree: dict, dotted: str) -> None:
    *parents, name = dotted.split(".")
    for parent in parents:
        tree = tree[parent]
    del tree[name]


def test_a_run_made_before_a_key_existed_resumes_as_if_it_held_the_value_that_reproduces_it(tmp_path):
    """An older config.json lacks the keys added since (ADDED_KEYS): the run resumes when the new
    config holds the value that reproduces it, and is refused naming the key when it does not."""
    c = config()
    c.input.train_jitter = False  # the AE's pipeline before session 11; 1.5 dB: the spread before session 13
    with_run(tmp_path, c)
    recorded = json.loads((tmp_path / "config.json").read_text())
    for key in workdir_guard.ADDED_KEYS:
        _drop(recorded, key)
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    assert workdir_guard.read_run_config(tmp_path)["data"]["synthetic"]["snr_spread_db"] == 1.5
    assert workdir_guard.claim(c, tmp_path) is None
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    c.data.synthetic.snr_spread_db = 4.0
    with pytest.raises(workdir_guard.WorkdirConfigError, match=r"data.synthetic.snr_spread_db \(1.5 -> 4.0\)"):
        workdir_guard.claim(c, tmp_path)
