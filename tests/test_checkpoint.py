"""Damaged checkpoints are never restored silently: fall back to the previous one, or a clear error."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdg import checkpoint


def state_of(step):
    return {"w": jnp.arange(2048, dtype=jnp.float32) + step, "step": jnp.array(step, jnp.int32)}


def saved(tmp_path, steps=(10, 20, 30)):
    ckpt = checkpoint.Checkpointer(tmp_path / "fan", save_every_steps=10, keep=5)
    for step in steps:
        ckpt.save(step, state_of(step), {"step_in_epoch": step})
    ckpt.close()
    return tmp_path / "fan"


def largest_file(folder: pathlib.Path) -> pathlib.Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def truncate(path: pathlib.Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


DAMAGES = {
    "truncated state file": lambda d: truncate(largest_file(d / "state")),
    "missing data item": lambda d: [p.unlink() for p in (d / "data").iterdir()] and (d / "data").rmdir(),
    "missing state item commit marker": lambda d: (d / "state" / checkpoint.COMMIT_MARKER).unlink(),
    "step folder without commit marker": lambda d: (d / checkpoint.COMMIT_MARKER).unlink(),
    "garbage in the state metadata": lambda d: (d / "state" / "_METADATA").write_text("{not json"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_newest_falls_back_to_previous_with_warning(tmp_path, damage, caplog):
    folder = saved(tmp_path)
    DAMAGES[damage](folder / "30")
    ckpt = checkpoint.Checkpointer(folder, 10, 5)
    state, data = ckpt.restore(state_of(0))
    assert int(state["step"]) == 20 and data == {"step_in_epoch": 20}
    np.testing.assert_array_equal(state["w"], np.arange(2048, dtype=np.float32) + 20)
    assert f"{folder / '30'} is damaged" in caplog.text
    assert not (folder / "30").exists() and len(list((tmp_path / "fan.damaged").iterdir())) == 1
    # Training goes on from 20 and can save step 30 again.
    assert ckpt.latest_step() == 20
    assert ckpt.save(30, state_of(30), {"step_in_epoch": 30})
    ckpt.close()


def test_no_usable_checkpoint_is_a_clear_error(tmp_path):
    folder = saved(tmp_path, steps=(10, 20))
    for step in ("10", "20"):
        (folder / step / checkpoint.COMMIT_MARKER).unlink()
    ckpt = checkpoint.Checkpointer(folder, 10, 5)
    with pytest.raises(checkpoint.CheckpointError) as error:
        ckpt.restore(state_of(0))
    message = str(error.value)
    assert str(folder) in message and "no usable checkpoint" in message
    assert "step 20: missing commit_success.txt" in message and "from scratch" in message
    assert ckpt.latest_step() is None
    ckpt.close()


def test_checkpoint_of_the_nnx_variable_format_resumes(tmp_path, caplog):
    """Checkpoints written while the train state held nnx.State (each Variable saved as
    {"value": array}) restore into today's plain-dict state, values and shardings intact."""
    from flax import nnx

    from mdg import sharding, train
    from mdg.models.autoencoder import AutoEncoder

    model = AutoEncoder(input_dim=20, hidden_dim=8, num_hidden_layers=1, bottleneck_dim=2, rngs=nnx.Rngs(0))
    mesh = sharding.make_mesh()
    tx = train.optimizer(1e-3)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    params = jax.tree.map(lambda x: x + 1.0, params)    # differs from a fresh state
    old = sharding.replicate({"params": params, "rest": rest, "opt_state": tx.init(params),
                              "step": jnp.array(7, jnp.int32), "rng": jnp.zeros(2, jnp.uint32)}, mesh)
    ckpt = checkpoint.Checkpointer(tmp_path / "fan", save_every_steps=1, keep=2)
    ckpt.save_now(7, old, {"step_in_epoch": 7})
    ckpt.close()

    fresh = sharding.replicate(train.initial_state(model, tx, seed=0), mesh)
    ckpt = checkpoint.Checkpointer(tmp_path / "fan", save_every_steps=1, keep=2)
    state, data = ckpt.restore(fresh)
    ckpt.close()
    assert data == {"step_in_epoch": 7} and int(state["step"]) == 7
    assert jax.tree.structure(state) == jax.tree.structure(fresh)
    np.testing.assert_array_equal(state["params"]["encoder"][0]["dense"]["kernel"],
                                  nnx.to_pure_dict(params)["encoder"][0]["dense"]["kernel"])
    assert "earlier nnx Variable format" in caplog.text and not (tmp_path / "fan.damaged").exists()
