"""docs/window_offsets.py on models whose answer is known: one that knows only the grid's windows
(right on the grid, wrong off it) and one that reads the sound (right everywhere)."""

import importlib.util
import pathlib

import numpy as np

_PATH = pathlib.Path(__file__).resolve().parents[1] / "docs" / "window_offsets.py"
_SPEC = importlib.util.spec_from_file_location("window_offsets", _PATH)
window_offsets = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(window_offsets)

CLIPS, FRAMES, MELS, WINDOW, HOP = 6, 40, 4, 8, 5


def clips_and_classes():
    """Frame f of clip c holds c in mel 0 (the 'sound'), f in mel 1 (the position)."""
    log_mels = np.zeros((CLIPS, FRAMES, MELS), np.float32)
    log_mels[:, :, 0] = np.arange(CLIPS)[:, None]
    log_mels[:, :, 1] = np.arange(FRAMES)[None, :]
    return log_mels, np.arange(CLIPS) % 3


def one_hot(index):
    return np.eye(3, dtype=np.float32)[index]


def test_a_model_that_knows_the_grid_is_right_on_it_and_wrong_off_it():
    log_mels, classes = clips_and_classes()

    def grid_memorizer(x):   # right iff the window starts on the grid, else the next class
        clip, start = x[:, 0, 0].astype(int), x[:, 0, 1].astype(int)
        return one_hot((classes[clip] + (start % HOP != 0)) % 3)

    accuracy = window_offsets.accuracy_by_offset(grid_memorizer, log_mels, classes, np.arange(CLIPS),
                                                 WINDOW, HOP, [0, 1, 3], batch_size=7)
    assert accuracy == {0: 1.0, 1: 0.0, 3: 0.0}


def test_a_model_that_reads_the_sound_is_right_at_every_offset_of_the_chosen_clips():
    log_mels, classes = clips_and_classes()
    seen = set()

    def listener(x):
        seen.update(x[:, 0, 0].astype(int).tolist())
        return one_hot(classes[x[:, 0, 0].astype(int)])

    accuracy = window_offsets.accuracy_by_offset(listener, log_mels, classes, np.array([1, 4]), WINDOW, HOP,
                                                 [0, 2, 4])
    assert accuracy == {0: 1.0, 2: 1.0, 4: 1.0} and seen == {1, 4}
