"""The input pipeline against direct numpy slicing: every window once per epoch, resumable order,
process slices, and lazy (shard-backed) clips read a bounded block at a time."""

import numpy as np
import pytest

from mdg.data import lazy_log_mels, pipeline

NUM_CLIPS, NUM_FRAMES, NUM_MELS = 11, 9, 3


def coded_clips():
    """(clips, frames, mels) whose value encodes where it is: clip * 1000 + frame * 10 + mel."""
    c, f, m = np.meshgrid(np.arange(NUM_CLIPS), np.arange(NUM_FRAMES), np.arange(NUM_MELS), indexing="ij")
    return (c * 1000 + f * 10 + m).astype(np.float32)


class CountingReader:
    """A shard stand-in: reads rows of an array and records how many rows each call asked for."""

    def __init__(self, data):
        self.data, self.calls = data, []

    def __call__(self, rows):
        self.calls.append(len(rows))
        return self.data[rows].copy()


def lazy(data):
    reader = CountingReader(data)
    return lazy_log_mels.LazyLogMels(reader, np.arange(len(data)), data.shape[1:]), reader


def decode(x, window):
    """(clip, start) of each window of ``x`` (b, window, mels) built from coded_clips."""
    first = x.reshape(len(x), window, NUM_MELS)[:, 0, 0]
    return (first // 1000).astype(int), ((first % 1000) // 10).astype(int)


def batches_of(stream, count):
    return [next(stream) for _ in range(count)]


@pytest.mark.parametrize("shuffle_clips", [1, 3, 4, 64])
def test_an_epoch_gives_every_window_once_with_its_clip_label(shuffle_clips):
    data, window, hop, batch = coded_clips(), 3, 2, 6
    labels = np.arange(NUM_CLIPS, dtype=np.int32) * 7
    stream = pipeline.TrainBatches(data, window=window, hop=hop, global_batch_size=batch, seed=1,
                                   flatten=True, clip_labels=labels, shuffle_clips=shuffle_clips)
    starts = range(0, NUM_FRAMES - window + 1, hop)
    assert stream.num_windows == NUM_CLIPS * len(starts)
    seen = []
    for b in batches_of(stream, stream.steps_per_epoch):
        assert b["x"].shape == (batch, window * NUM_MELS)
        clip, start = decode(b["x"], window)
        for row in range(batch):   # the window itself, frame-major, against direct slicing
            np.testing.assert_array_equal(b["x"][row], data[clip[row], start[row]:start[row] + window].ravel())
        np.testing.assert_array_equal(b["y"], labels[clip])
        seen += list(zip(clip, start))
    assert stream.epoch == 1 and stream.step_in_epoch == 0
    expected = {(c, s) for c in range(NUM_CLIPS) for s in starts}
    assert len(seen) == len(set(seen)) and set(seen) <= expected   # no repeats; only the last partial batch is dropped
    assert len(expected) - len(seen) == stream.num_windows % batch


@pytest.mark.parametrize("window, hop", [(3, 4), (4, 4), (2, 3)])
def test_jittered_windows_take_each_grid_slot_once_per_epoch_at_offsets_that_change(window, hop):
    """Grid of 9 frames: window 3 / hop 4 gives starts 0, 4 and offsets 0..2 (the last window must
    end in the clip), window 4 / hop 4 starts 0, 4 and offsets 0..1, window 2 / hop 3 offsets 0..2."""
    data, batch = coded_clips(), 4
    stream = pipeline.TrainBatches(data, window=window, hop=hop, global_batch_size=batch, seed=2,
                                   flatten=False, shuffle_clips=4, jitter=True)
    grid = np.arange(0, NUM_FRAMES - window + 1, hop)
    max_offset = min(hop - 1, NUM_FRAMES - window - grid[-1])
    assert stream.num_windows == NUM_CLIPS * len(grid)
    offsets_by_epoch = []
    for _ in range(3):
        slots, offsets = [], []
        for b in batches_of(stream, stream.steps_per_epoch):
            clip, start = decode(b["x"], window)
            for row in range(batch):
                np.testing.assert_array_equal(b["x"][row], data[clip[row], start[row]:start[row] + window])
            slot = np.searchsorted(grid, start, side="right") - 1
            slots += list(zip(clip, slot))
            offsets += list(start - grid[slot])
        assert len(slots) == len(set(slots)) == stream.steps_per_epoch * batch   # each slot at most once
        assert min(offsets) >= 0 and max(offsets) <= max_offset
        offsets_by_epoch.append(offsets)
    everything = np.concatenate(offsets_by_epoch)
    assert set(everything) == set(range(max_offset + 1))     # every offset occurs
    assert offsets_by_epoch[0] != offsets_by_epoch[1]


def test_without_jitter_or_at_hop_1_the_windows_stay_on_the_grid():
    kwargs = dict(window=2, global_batch_size=8, seed=4, flatten=True, shuffle_clips=3)
    for hop, jitter in ((3, False), (1, True)):
        for b in batches_of(pipeline.TrainBatches(coded_clips(), hop=hop, jitter=jitter, **kwargs), 12):
            assert set(decode(b["x"], 2)[1] % hop) == {0}


@pytest.mark.parametrize("hop, jitter", [(1, False), (3, True)])
def test_the_order_is_a_function_of_seed_and_position_so_a_resumed_stream_continues_exactly(hop, jitter):
    make = lambda seed: pipeline.TrainBatches(coded_clips(), window=2, hop=hop, global_batch_size=8, seed=seed,
                                              flatten=False, shuffle_clips=3, jitter=jitter)
    straight = batches_of(make(0), 40)   # crosses epoch boundaries (11 or 4 steps per epoch)
    resumed = make(0)
    first = batches_of(resumed, 17)
    again = make(0)
    again.set_state(resumed.get_state())
    for a, b in zip(straight, first + batches_of(again, 23)):
        np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(straight[0]["x"], batches_of(make(1), 1)[0]["x"])
    with pytest.raises(ValueError, match="seed"):
        make(1).set_state(resumed.get_state())


def test_processes_take_contiguous_slices_of_the_same_global_batch():
    kwargs = dict(window=2, hop=1, global_batch_size=8, seed=3, flatten=True, shuffle_clips=4)
    whole = batches_of(pipeline.TrainBatches(coded_clips(), **kwargs), 15)
    parts = [batches_of(pipeline.TrainBatches(coded_clips(), process_index=p, process_count=2, **kwargs), 15)
             for p in range(2)]
    for step, batch in enumerate(whole):
        np.testing.assert_array_equal(batch["x"], np.concatenate([parts[0][step]["x"], parts[1][step]["x"]]))


def test_lazy_clips_give_the_same_batches_reading_at_most_two_blocks_at_a_time():
    data = coded_clips()
    view, reader = lazy(data)
    kwargs = dict(window=3, hop=1, global_batch_size=10, seed=5, flatten=True, shuffle_clips=4)
    from_array = batches_of(pipeline.TrainBatches(data, **kwargs), 30)
    stream = pipeline.TrainBatches(view, **kwargs)
    from_shards = batches_of(stream, 30)
    for a, b in zip(from_array, from_shards):
        np.testing.assert_array_equal(a["x"], b["x"])
    assert max(reader.calls) <= 4   # one block per read, never the split
    epochs_touched = 30 // stream.steps_per_epoch + 1
    assert sum(reader.calls) <= NUM_CLIPS * epochs_touched   # each clip read once per epoch

    one_block, reader = lazy(data)   # a split that fits in one block is read once and kept
    kwargs["shuffle_clips"] = NUM_CLIPS
    for a, b in zip(batches_of(pipeline.TrainBatches(data, **kwargs), 30),
                    batches_of(pipeline.TrainBatches(one_block, **kwargs), 30)):
        np.testing.assert_array_equal(a["x"], b["x"])
    assert reader.calls == [NUM_CLIPS]


@pytest.mark.parametrize("process_count", [1, 2])
def test_eval_batches_cover_all_windows_in_order_from_arrays_and_lazy_clips(process_count):
    data, window, hop, batch = coded_clips(), 4, 1, 10
    view, reader = lazy(data)
    candidates = np.eye(NUM_CLIPS, dtype=bool)
    for p in range(process_count):
        eager = list(pipeline.eval_batches(data, window, hop, batch, False, candidates, p, process_count))
        streamed = list(pipeline.eval_batches(view, window, hop, batch, False, candidates, p, process_count,
                                              chunk_clips=2))
        for a, b in zip(eager, streamed, strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
        clips = np.concatenate([b["clip"][b["mask"]] for b in eager])
        for b in eager:
            clip, start = decode(b["x"], window)
            np.testing.assert_array_equal(clip, b["clip"])
            np.testing.assert_array_equal(b["y"], candidates[b["clip"]])
        if process_count == 1:   # clip-major order, every window once
            windows = NUM_FRAMES - window + 1
            np.testing.assert_array_equal(clips, np.repeat(np.arange(NUM_CLIPS), windows))
    assert max(reader.calls) <= 3 and sum(reader.calls) <= process_count * (NUM_CLIPS + 6)


def test_lazy_views_index_like_numpy_and_concatenate():
    data = coded_clips()
    view, reader = lazy(data)
    assert view.shape == data.shape and len(view) == NUM_CLIPS
    mask = np.arange(NUM_CLIPS) % 3 != 1
    sub = view[2:][mask[2:]][np.array([4, 0, 2])]
    assert isinstance(sub, lazy_log_mels.LazyLogMels) and not reader.calls   # views read nothing
    np.testing.assert_array_equal(np.asarray(sub), data[2:][mask[2:]][np.array([4, 0, 2])])
    np.testing.assert_array_equal(view[5], data[5])
    other, _ = lazy(data[:4] + 0.5)
    for parts, expected in [([view[:3], data[7:], other], np.concatenate([data[:3], data[7:], data[:4] + 0.5])),
                            ([data[:2], data[3:5]], np.concatenate([data[:2], data[3:5]]))]:
        joined = lazy_log_mels.concatenate(parts)
        np.testing.assert_array_equal(np.asarray(joined), expected)
        rows = np.array([len(expected) - 1, 0, 2, 0])
        np.testing.assert_array_equal(lazy_log_mels.read_rows(joined, rows), expected[rows])
    with pytest.raises(ValueError, match="different log-Mel shapes"):
        lazy_log_mels.concatenate([view, data[:, :4]])
