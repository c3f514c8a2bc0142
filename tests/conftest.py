"""Test setup: CPU only, 8 fake devices for the multi-device paths; the real DCASE 2023 test data."""
import dataclasses
import pathlib

import jax
import pytest

jax.config.update("jax_platforms", "cpu")
jax.config.update("jax_num_cpu_devices", 8)

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
# In the project: one clip per development machine type and all attribute CSVs (tests/data/LICENSE.md).
FIXTURE_DATA = PROJECT_ROOT / "tests" / "data" / "dcase2023"
# Optional, beside the project: 4 whole clips per development machine type, the same CSVs.
DEV_SLICE = PROJECT_ROOT.parent / "shared" / "data" / "dcase2023_dev_slice"

# Samples per clip of the DCASE 2023 development set at 16 kHz: 12 s for the toys, 10 s otherwise.
DCASE2023_CLIP_LENGTHS = {"ToyCar": 192000, "ToyTrain": 192000, "bearing": 160000, "fan": 160000,
                          "gearbox": 160000, "slider": 160000, "valve": 160000}


@dataclasses.dataclass(frozen=True)
class RealDataset:
    """A DCASE 2023 development tree: ``dev_data/<machine>/<split>/*.wav``, ``attributes/``,
    ``attributes_additional_train/``; ``num_clips`` WAV files, ``clip_lengths`` samples per clip."""
    root: pathlib.Path
    num_clips: int
    clip_lengths: dict


REAL_DATASETS = {
    # ToyCar and fan keep their whole length; the other five are their first 2 s.
    "fixture": RealDataset(FIXTURE_DATA, 7, {**{machine: 32000 for machine in DCASE2023_CLIP_LENGTHS},
                                             "ToyCar": 192000, "fan": 160000}),
    "dev_slice": RealDataset(DEV_SLICE, 28, DCASE2023_CLIP_LENGTHS),
}


@pytest.fixture(scope="session")
def real_data() -> pathlib.Path:
    """The in-project DCASE 2023 fixture (tests/data/dcase2023): whole attribute CSVs, 7 clips."""
    return FIXTURE_DATA


@pytest.fixture(scope="session", params=list(REAL_DATASETS))
def real_dataset(request) -> RealDataset:
    """Each real clip set in turn: the in-project fixture, then the larger slice when it is present."""
    dataset = REAL_DATASETS[request.param]
    if not dataset.root.is_dir():
        pytest.skip(f"DCASE 2023 development slice not found at {dataset.root}: "
                    f"these real-clip tests ran on the in-project fixture only")
    return dataset


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
