"""A full disk (OSError ENOSPC injected where the bytes are written) while writing synthetic WAVs,
shards, checkpoints or results: the error surfaces, nothing half-written is left for a rerun to
trust, and the rerun succeeds once there is space again."""

import errno
import os
import pathlib
import types

import jax
import numpy as np
import pytest
import soundfile
from etils import epath
from orbax.checkpoint._src.path import async_path
from tensorflow_datasets.core import file_adapters

from mdg import checkpoint, evaluate, sharding, train
from mdg.data import synthetic, tfds_builder
from test_tfds_builder import FEATURES, LAYOUT, write_tree
from test_train import fake_unit, tiny_config


def disk_full(*_):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def after(calls: int, real):
    """``real``, except that call number ``calls`` (1-based) and later raise ENOSPC."""
    count = [0]
    def wrapper(*args, **kwargs):
        count[0] += 1
        if count[0] >= calls:
            disk_full()
        return real(*args, **kwargs)
    return wrapper


def tree_digest(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_synthetic_generation(tmp_path, monkeypatch):
    args = dict(machines=("valve",), num_source_train=2, num_target_train=1, num_test=1, duration_s=0.5,
                progress=False)
    monkeypatch.setattr(synthetic.writer.soundfile, "write", after(5, soundfile.write))
    with pytest.raises(OSError, match="No space left"):
        synthetic.generate(tmp_path / "full", **args)
    assert os.listdir(tmp_path / "full") == [], "a partial machine folder was left or published"
    monkeypatch.undo()
    synthetic.generate(tmp_path / "full", **args)
    synthetic.generate(tmp_path / "straight", **args)
    assert tree_digest(tmp_path / "full") == tree_digest(tmp_path / "straight")


def test_shards(tmp_path, monkeypatch):
    root = write_tree(tmp_path / "wavs")
    real = file_adapters.array_record_module.ArrayRecordWriter

    class FullDiskWriter:
        """The real writer, failing at the third record: the disk filled mid-shard."""
        records = 0

        def __init__(self, *args):
            self._writer = real(*args)

        def write(self, record):
            FullDiskWriter.records += 1
            if FullDiskWriter.records == 3:
                disk_full()
            self._writer.write(record)

        def close(self):
            self._writer.close()

    monkeypatch.setattr(file_adapters, "array_record_module", types.SimpleNamespace(ArrayRecordWriter=FullDiskWriter))
    data_dir = tmp_path / "tfds"
    with pytest.raises(OSError, match="No space left"):
        tfds_builder.prepare(root, "fan", data_dir, FEATURES, **LAYOUT)
    assert not list(data_dir.rglob("dataset_info.json")) and not list(data_dir.rglob("incomplete*"))
    monkeypatch.undo()
    builder = tfds_builder.prepare(root, "fan", data_dir, FEATURES, **LAYOUT)
    straight = tfds_builder.prepare(root, "fan", tmp_path / "straight", FEATURES, **LAYOUT)
    for split in ("train", "test"):
        np.testing.assert_array_equal(tfds_builder.load_split(builder, split)["log_mel"],
                                      tfds_builder.load_split(straight, split)["log_mel"])


def test_checkpoints(tmp_path, monkeypatch):
    config, unit, mesh = tiny_config(save_every_steps=4), fake_unit(), sharding.make_mesh(1)
    _, straight = train.train_unit(config, unit, mesh, tmp_path / "straight")
    # The disk fills while step 8 is committed, after its items are written (orbax leaves the step
    # in its temporary folder). Failing earlier, inside an item, races orbax's own clean-up with the
    # other item's writer threads, and the error then surfaces as that clean-up's.
    real_write_text = async_path.write_text

    async def write_text(path, text):
        if path.name == checkpoint.COMMIT_MARKER and path.parent.name.startswith("8."):
            disk_full()
        return await real_write_text(path, text)

    monkeypatch.setattr(async_path, "write_text", write_text)
    with pytest.raises(Exception, match="No space left"):
        train.train_unit(config, unit, mesh, tmp_path / "full")
    monkeypatch.undo()
    folder = tmp_path / "full" / "checkpoints" / "fake"
    assert sorted(p.name for p in folder.iterdir() if p.name.isdigit()) == ["4"]
    _, resumed = train.train_unit(config, unit, mesh, tmp_path / "full")
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not [p for p in folder.iterdir() if "tmp" in p.name]


def test_results(tmp_path, monkeypatch):
    path = tmp_path / "results" / "summary.json"
    evaluate.write_atomic(path, "old\n")
    def half_then_full(self, data):
        with open(self, "wb") as file:
            file.write(data[:len(data) // 2])
        disk_full()

    monkeypatch.setattr(type(epath.Path(path)), "write_bytes", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        evaluate.write_atomic(path, "new content\n")
    assert path.read_text() == "old\n" and os.listdir(path.parent) == ["summary.json"]
    monkeypatch.undo()
    evaluate.write_atomic(path, "new content\n")
    assert path.read_text() == "new content\n"
