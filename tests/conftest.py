"""Test setup: CPU only, 8 fake devices for the multi-device paths."""
import os
import pathlib

import jax
import pytest

jax.config.update("jax_platforms", "cpu")
jax.config.update("jax_num_cpu_devices", 8)

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
REAL_DATA = PROJECT_ROOT.parent / "shared" / "data" / "dcase2023_dev_slice"


@pytest.fixture(scope="session")
def real_data() -> pathlib.Path:
    """The real DCASE 2023 development slice beside the project (../shared/data/...)."""
    if not REAL_DATA.is_dir():
        pytest.fail(f"real test data missing: {REAL_DATA} (CI has it beside the project)")
    return REAL_DATA


@pytest.fixture(scope="session")
def trained_classifier(tmp_path_factory):
    """A tiny MobileNetV2 trained with dynamic AdaCos on the fake classifier unit (test_train's
    helpers), shared by the objective and score-method tests: (config, unit, workdir,
    eval graphdef, final train state)."""
    from mdg import sharding, train
    from test_train import fake_classifier_unit, tiny_classifier_config

    config, unit = tiny_classifier_config("adacos"), fake_classifier_unit()
    workdir = tmp_path_factory.mktemp("trained_classifier")
    graphdef, state = train.train_unit(config, unit, sharding.make_mesh(1), workdir)
    return config, unit, workdir, graphdef, state
