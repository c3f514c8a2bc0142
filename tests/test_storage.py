"""mdg.storage and the workdir outputs written through etils.epath, on local paths (no network)."""
import json
import os
import threading

import numpy as np
import pytest
from etils import epath

from mdg import checkpoint, evaluate, storage, train, workdir_guard
from mdg.report import clips as clip_table
from mdg.report import plots


def test_write_atomic_text_and_bytes_leave_no_temporary_file(tmp_path):
    path = tmp_path / "new" / "folder" / "report.md"
    returned = evaluate.write_atomic(path, "a\r\nb\n")
    assert isinstance(returned, epath.Path) and os.fspath(returned) == os.fspath(path)
    assert path.read_bytes() == b"a\r\nb\n"          # UTF-8, line ends untouched
    evaluate.write_atomic(epath.Path(path), b"\x00\xff")
    assert path.read_bytes() == b"\x00\xff"
    assert os.listdir(path.parent) == ["report.md"]


def test_write_atomic_replaces_in_one_step(tmp_path):
    """A reader polling the file while it is rewritten sees only one whole version or the other."""
    path = tmp_path / "summary.json"
    versions = [("x" * 200_000 + "\n").encode(), ("y" * 300_000 + "\n").encode()]
    path.write_bytes(versions[0])
    seen, done = set(), threading.Event()

    def read():
        while not done.is_set():
            seen.add(path.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for index in range(40):
            evaluate.write_atomic(path, versions[(index + 1) % 2])
    finally:
        done.set()
        reader.join()
    assert seen <= set(versions) and seen
    assert os.listdir(tmp_path) == ["summary.json"]


def test_write_atomic_error_keeps_old_file_and_removes_temporary(tmp_path):
    path = tmp_path / "config.json"
    evaluate.write_atomic(path, "old\n")
    with pytest.raises(TypeError):
        evaluate.write_atomic(path, 12345)
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["config.json"]


def test_absolute_keeps_urls_and_makes_local_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert os.fspath(storage.absolute("run/checkpoints")) == os.fspath(tmp_path / "run" / "checkpoints")
    assert storage.is_url("gs://bucket/run") and not storage.is_url(tmp_path)
    assert os.fspath(storage.absolute("gs://bucket/run")) == "gs://bucket/run"


def test_workdir_pieces_with_epath_paths(tmp_path):
    """config.json, metrics.jsonl, a checkpoint, a clips table and a plot in an epath workdir."""
    import ml_collections
    workdir = epath.Path(tmp_path) / "run"
    config = ml_collections.ConfigDict({"model": {"name": "ae"}, "seed": 0})
    assert workdir_guard.claim(config, workdir) is None
    assert json.loads((workdir / "config.json").read_text())["model"]["name"] == "ae"

    metrics = workdir / "metrics.jsonl"
    for epoch in (1, 2):
        train.append_jsonl(metrics, {"unit": "u", "epoch": epoch, "loss": 1.0 / epoch})
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2]
    assert [r["loss"] for r in plots.read_metrics(metrics)["u"]] == [1.0, 0.5]

    ckpt = checkpoint.Checkpointer(workdir / "checkpoints" / "u", save_every_steps=1, keep=2)
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    ckpt.save_now(3, state, {"epoch": 1})
    restored, data_state = ckpt.restore(state)
    ckpt.close()
    np.testing.assert_array_equal(np.asarray(restored["w"]), state["w"])
    assert data_state == {"epoch": 1} and checkpoint.damage(ckpt.directory / "3") is None

    import pyarrow as pa
    table = pa.table({"x": [1, 2, 3]}, metadata={"mdg": json.dumps({"k": 1})})
    clip_table.write_table(workdir / "results" / "clips.parquet", table)
    columns, metadata = clip_table.read_table(workdir / "results" / "clips.parquet")
    assert columns["x"].tolist() == [1, 2, 3] and metadata == {"k": 1}
    if plots.available():
        png = plots._save(plots.training_figure("u", plots.read_metrics(metrics)["u"]), workdir / "u.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.rglob("*.tmp")]
