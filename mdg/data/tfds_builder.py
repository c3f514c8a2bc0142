"""Precomputed log-Mel features as TFDS array_record shards, one dataset per machine type.

:func:`prepare` scans ``<root>/<machine>/{train,test}/`` (:mod:`mdg.data.layout`), reads the
WAVs (:mod:`mdg.data.audio`), computes log-Mel spectrograms (:func:`mdg.data.features.log_mel`)
and writes one record per clip with TFDS's array_record format, readable at random without
TensorFlow. Each record holds::

    log_mel           float32 (frames, n_mels), dB
    file_name         str, e.g. "section_00_source_train_normal_0000_vel_8_loc_A.wav"
    machine           str
    section           int32
    domain            int32, 0 source, 1 target, -1 unknown
    label             int32, 0 normal, 1 anomaly, -1 unknown
    index             int32, the clip number in the file name
    attribute_names   tuple of str
    attribute_values  tuple of str

Versioning and reuse. The TFDS config name is ``<machine>_<hash>``, where the hash covers a
manifest of everything the records depend on: the resolved data root, every clip's metadata,
size and modification time, the complete log-Mel settings, ``on_error``, the record format
(:attr:`MdgLogMel.VERSION`) and :data:`FEATURES_VERSION`, the version of what ``audio.py`` and
``features.py`` compute. The same inputs
therefore find the same folder and reuse it; any change builds a new folder beside the old one.
Old builds are kept (switching feature settings back and forth in ablations costs nothing); the
log names the other builds of the machine type so they can be deleted by hand.

A build is complete when TFDS's completion marker (``dataset_info.json``) is in the version
folder: TFDS writes into ``incomplete.*`` and renames it at the end, and on an exception removes
it. A folder without the marker is rebuilt, never reused. A process killed hard may leave an
``incomplete.*`` folder behind; it is never mistaken for a dataset and may be deleted.

Memory. The builder is a ``tfds.core.ShardBasedBuilder``: each shard of ``clips_per_shard``
clips is generated and written in turn, with no shuffling step. (``GeneratorBasedBuilder``
instead buffers a whole split in memory up to 1 GB before spilling to temporary files through
``tf.io.gfile``, which needs TensorFlow.) TFDS's shard writer keeps one shard's records until the
shard is written, so the build holds about ``clips_per_shard * frames * n_mels * 4`` bytes of
features (41 MB for 256 clips of 10 s) plus one batch of waveforms and XLA's buffers, however many
clips there are. Measured peak RSS with default settings on CPU: the process holds ~330 MB before
the build (JAX, TFDS); building 600 clips of 10 s adds 143 MB, 1800 clips 153 MB (with
``clips_per_shard=64``: 121 MB; one shard per split: 184 MB for 600 clips).
Records are stored in file-name order, so reading them back needs no sorting.

Splits with no clips (or no folder) are omitted from the dataset; a machine type with no clips
at all is an error.

Concurrency: building a config holds a lock (:mod:`mdg.data.cache_lock`,
``<data_dir>/mdg_log_mel/<config name>.lock``), so of several processes preparing the same
dataset at once one builds and the others wait and then reuse its build.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import itertools
import json
import os
import pathlib
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from absl import logging
import numpy as np
import tensorflow_datasets as tfds
import tqdm

from mdg.data import audio, cache_lock, features, layout, lazy_log_mels

SPLITS = ("train", "test")
DOMAIN_CODES = {"source": 0, "target": 1, "unknown": -1}
TEXT_FIELDS = ("file_name", "machine")
INT_FIELDS = ("section", "domain", "label", "index")
ATTRIBUTE_FIELDS = ("attribute_names", "attribute_values")

# Records fetched per read when loading a whole split; bounds the temporary list of records.
_LOAD_CHUNK = 256


def feature_settings(feature_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """All keyword arguments of :func:`features.log_mel`: its defaults updated by ``feature_kwargs``.

    Filling in the defaults makes ``{}`` and ``{"n_mels": 128}`` the same settings (same hash).
    Raises ValueError on a name ``log_mel`` does not take.
    """
    parameters = inspect.signature(features.log_mel).parameters
    defaults = {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}
    feature_kwargs = dict(feature_kwargs or {})
    unknown = sorted(set(feature_kwargs) - set(defaults))
    if unknown:
        raise ValueError(f"unknown log-Mel settings {unknown}; log_mel takes {sorted(defaults)}")
    return {**defaults, **feature_kwargs}


# Version of the records' content as computed from the WAVs (audio.read_wav, features.log_mel):
# part of every build's hash. Bump it when what they compute changes (not for comments or
# refactors); tests/test_tfds_builder.py holds golden log-Mel values that fail until it is bumped.
FEATURES_VERSION = 1


def manifest(root: str | os.PathLike, machine: str, clips_by_split: dict[str, Sequence[layout.Clip]],
             settings: dict[str, Any], on_error: str) -> dict[str, Any]:
    """JSON-serialisable description of everything a build's records depend on."""
    def clip_entry(clip: layout.Clip) -> list:
        stat = os.stat(clip.path)
        return [clip.file_name, stat.st_size, stat.st_mtime_ns, clip.section, clip.domain, clip.label,
                clip.index, [list(pair) for pair in clip.attributes]]

    return {
        "record_format": str(MdgLogMel.VERSION),
        "features_version": FEATURES_VERSION,
        "root": str(pathlib.Path(root).resolve()),
        "machine": machine,
        "features": settings,
        "on_error": on_error,
        "splits": {split: [clip_entry(clip) for clip in clips] for split, clips in clips_by_split.items()},
    }


def _config_prefix(machine: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", machine)


def config_name(machine: str, manifest_: dict[str, Any]) -> str:
    """TFDS config name ``<machine>_<12 hex digits of the manifest's sha256>``."""
    digest = hashlib.sha256(json.dumps(manifest_, sort_keys=True).encode()).hexdigest()[:12]
    return f"{_config_prefix(machine)}_{digest}"


def _record(clip: layout.Clip, log_mel: np.ndarray) -> dict[str, Any]:
    return {
        "log_mel": log_mel,
        "file_name": clip.file_name,
        "machine": clip.machine,
        "section": clip.section,
        "domain": DOMAIN_CODES[clip.domain],
        "label": clip.label,
        "index": clip.index,
        "attribute_names": [name for name, _ in clip.attributes],
        "attribute_values": [value for _, value in clip.attributes],
    }


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class MdgLogMel(tfds.core.ShardBasedBuilder, skip_registration=True):
    """TFDS builder of one machine type's log-Mel records; use :func:`prepare` rather than this class.

    Args beyond TFDS's own (``data_dir``, ``config``, ``file_format``):
      clips_by_split: split name -> clips, in file-name order; the splits to write.
      settings: complete :func:`features.log_mel` keyword arguments (see :func:`feature_settings`).
      on_error: "raise" or "skip", passed to :func:`audio.read_clips`.
      batch_size: clips per ``log_mel`` call (:func:`features.log_mel_stream` pads the last batch
        of a shard, so the function compiles once).
      clips_per_shard: clips per array_record shard; bounds the build's memory.
      metadata: stored in the dataset's ``metadata.json`` (``builder.info.metadata``).
    """

    # Bump when the record layout changes; part of the manifest, so old builds are not reused.
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "log-Mel spectrogram and clip metadata per record.",
                     "1.1.0": "log-Mel stored as raw bytes (Encoding.BYTES), not a float list."}

    def __init__(self, *, clips_by_split: dict[str, Sequence[layout.Clip]], settings: dict[str, Any],
                 on_error: str, batch_size: int, clips_per_shard: int, metadata: dict[str, Any], **kwargs):
        self._clips_by_split = clips_by_split
        self._settings = settings
        self._on_error = on_error
        self._batch_size = batch_size
        self._clips_per_shard = clips_per_shard
        self._metadata = metadata
        self._num_samples: int | None = None  # set when a build starts
        self._progress: tqdm.tqdm | None = None
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        text_sequence = tfds.features.Sequence(tfds.features.Text())
        return tfds.core.DatasetInfo(
            builder=self,
            description="Log-Mel spectrograms (dB) and metadata of one machine type's clips.",
            features=tfds.features.FeaturesDict({
                # Raw little-endian bytes: TFDS's default float-list encoding converts every value in
                # Python (13 ms per 10 s clip, ~3/4 of a build's time; bytes: 0.1 ms).
                "log_mel": tfds.features.Tensor(shape=(None, self._settings["n_mels"]), dtype=np.float32,
                                                encoding=tfds.features.Encoding.BYTES),
                **{name: tfds.features.Text() for name in TEXT_FIELDS},
                **{name: np.int32 for name in INT_FIELDS},
                **{name: text_sequence for name in ATTRIBUTE_FIELDS},
            }),
            metadata=tfds.core.MetadataDict(self._metadata),
            disable_shuffling=True,
        )

    def _download_and_prepare(self, dl_manager, download_config=None) -> None:
        all_clips = [clip for clips in self._clips_by_split.values() for clip in clips]
        # One length for every shard and split, so log_mel compiles once and frames agree.
        self._num_samples = audio.clip_num_samples(all_clips, self._settings["sample_rate"])
        total = len(all_clips)
        with tqdm.tqdm(total=total, desc=f"log-Mel {self._metadata['machine']}", unit="clip") as progress:
            self._progress = progress
            super()._download_and_prepare(dl_manager, download_config)

    def _shard_iterators_per_split(self, dl_manager):
        del dl_manager  # nothing to download
        return {
            split: [functools.partial(self._shard_examples, shard)
                    for shard in _batches(clips, self._clips_per_shard)]
            for split, clips in self._clips_by_split.items()
        }

    def _shard_examples(self, clips: list[layout.Clip]) -> Iterator[tuple[str, dict[str, Any]]]:
        """(file name, record) for the readable clips of one shard, in order."""
        waveforms = audio.read_clips(clips, sample_rate=self._settings["sample_rate"],
                                     num_samples=self._num_samples, on_error=self._on_error)
        log_mels = features.log_mel_stream(waveforms, batch_size=self._batch_size, **self._settings)
        for clip, log_mel in log_mels:
            self._progress.update()
            yield clip.file_name, _record(clip, log_mel)

    # TFDS prints these two messages to stdout; route them to the log instead.
    def _log_download_bytes(self) -> None:
        logging.info("building %s", self.data_dir)

    def _log_download_done(self) -> None:
        logging.info("wrote %s", self.data_dir)


def _scan(root: pathlib.Path, machine: str, on_error: str) -> dict[str, list[layout.Clip]]:
    """Clips of each split that has any, sorted by file name."""
    clips_by_split = {}
    for split in SPLITS:
        if not (root / machine / split).is_dir():
            continue
        clips = sorted(layout.scan_split(root, machine, split, on_error=on_error), key=lambda c: c.file_name)
        if clips:
            clips_by_split[split] = clips
    if not clips_by_split:
        raise layout.LayoutError(
            f"no clips for machine type {machine!r} under {root} (looked in {list(SPLITS)})")
    return clips_by_split


def prepare(root: str | os.PathLike, machine: str, data_dir: str | os.PathLike,
            feature_kwargs: dict[str, Any] | None = None, on_error: str = "raise", *,
            batch_size: int = 8, clips_per_shard: int = 256) -> tfds.core.DatasetBuilder:
    """Builds the log-Mel dataset of ``<root>/<machine>`` under ``data_dir`` if needed; returns the builder.

    Args:
      root: folder holding ``<machine>/{train,test}/*.wav``.
      machine: machine type, e.g. "fan".
      data_dir: TFDS data folder; the dataset goes to
        ``<data_dir>/mdg_log_mel/<machine>_<hash>/<version>/``.
      feature_kwargs: keyword arguments of :func:`features.log_mel` (``sample_rate`` is also the
        rate WAVs must have); missing ones take log_mel's defaults.
      on_error: "raise" stops at the first unparsable file name or bad WAV with an error naming
        the file (:class:`layout.LayoutError`, :class:`audio.AudioError`); "skip" leaves such
        files out (they are logged by the layout and audio modules).
      batch_size: clips per log-Mel computation (memory: ``batch_size`` waveforms).
      clips_per_shard: clips per shard file (build memory: about one shard of log-Mels).
        Neither changes the records, so neither is part of the dataset's hash.

    Returns:
      The prepared builder; read it with :func:`data_source` or :func:`load_split`.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    root = pathlib.Path(root)
    settings = feature_settings(feature_kwargs)
    clips_by_split = _scan(root, machine, on_error)
    manifest_ = manifest(root, machine, clips_by_split, settings, on_error)
    name = config_name(machine, manifest_)
    with cache_lock.held(pathlib.Path(data_dir) / MdgLogMel.name / f"{name}.lock", f"the {machine} shards"):
        return _build_or_reuse(root, machine, data_dir, name, manifest_, clips_by_split, settings, on_error,
                               batch_size, clips_per_shard)


def _build_or_reuse(root, machine, data_dir, name, manifest_, clips_by_split, settings, on_error,
                    batch_size, clips_per_shard) -> tfds.core.DatasetBuilder:
    """The body of :func:`prepare`, run while holding the dataset's lock."""
    builder = MdgLogMel(
        data_dir=os.fspath(data_dir),
        config=tfds.core.BuilderConfig(name=name),
        file_format="array_record",
        clips_by_split=clips_by_split,
        settings=settings,
        on_error=on_error,
        batch_size=batch_size,
        clips_per_shard=clips_per_shard,
        metadata={"root": manifest_["root"], "machine": machine, "features": settings, "on_error": on_error},
    )
    # is_prepared() checks TFDS's completion marker; exists() first spares its warning on new builds.
    stale = builder.data_path.exists()
    if stale and builder.is_prepared():
        logging.info("reused log-Mel dataset %s", builder.data_dir)
        return builder

    start = time.perf_counter()
    # TFDS would reuse any existing version folder; one without the completion marker must be
    # replaced instead, which its overwrite mode does.
    modes = tfds.download.GenerateMode
    mode = modes.REUSE_CACHE_IF_EXISTS if stale else modes.REUSE_DATASET_IF_EXISTS
    download_config = tfds.download.DownloadConfig(download_mode=mode)
    with tempfile.TemporaryDirectory(prefix="mdg_tfds_downloads_") as download_dir:
        builder.download_and_prepare(download_dir=download_dir, download_config=download_config)
    logging.info("built log-Mel dataset %s (%s clips) in %.1f s", builder.data_dir,
                {split: len(clips) for split, clips in clips_by_split.items()}, time.perf_counter() - start)
    pattern = re.compile(rf"{_config_prefix(machine)}_[0-9a-f]{{12}}")
    others = sorted(p.name for p in pathlib.Path(builder.data_dir).parents[1].iterdir()
                    if pattern.fullmatch(p.name) and p.name != builder.builder_config.name)
    if others:
        logging.info("older builds of %s kept beside it (delete to reclaim space): %s", machine, others)
    return builder


def _decode(record: dict[str, Any]) -> dict[str, Any]:
    """TFDS record -> the same with text as str and attribute lists as tuples of str."""
    decoded = dict(record)
    for name in TEXT_FIELDS:
        decoded[name] = record[name].decode()
    for name in ATTRIBUTE_FIELDS:
        decoded[name] = tuple(value.decode() for value in record[name])
    return decoded


class ClipSource:
    """Random-access records of one split (a grain-compatible data source).

    ``source[i]`` is a dict: ``log_mel`` float32 (frames, n_mels), ``file_name`` and ``machine``
    str, ``section``/``domain``/``label``/``index`` int, ``attribute_names``/``attribute_values``
    tuples of str. Records are in file-name order.
    """

    def __init__(self, source):
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return _decode(self._source[index])

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [_decode(record) for record in self._source.__getitems__(indices)]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for start in range(0, len(self), _LOAD_CHUNK):
            yield from self.__getitems__(range(start, min(start + _LOAD_CHUNK, len(self))))

    def log_mels(self, rows: np.ndarray) -> np.ndarray:
        """The log-Mels of records ``rows`` (int ``(n,)``): float32 ``(n, frames, n_mels)``.

        Records are read in ascending order (sequential within the shards) and returned in the
        order asked for.
        """
        unique, inverse = np.unique(rows, return_inverse=True)
        records = self._source.__getitems__([int(r) for r in unique])
        stacked = np.stack([record["log_mel"] for record in records]).astype(np.float32, copy=False)
        return stacked[inverse.reshape(-1)]


def data_source(builder: tfds.core.DatasetBuilder, split: str) -> ClipSource:
    """Random-access records of ``split`` ("train" or "test"); KeyError if the dataset lacks it."""
    if split not in builder.info.splits:
        raise KeyError(f"{builder.data_dir} has no split {split!r}; it has {sorted(builder.info.splits)}")
    return ClipSource(builder.as_data_source(split))


def load_split(builder: tfds.core.DatasetBuilder, split: str) -> dict[str, Any]:
    """All records of ``split``: per-clip metadata arrays and a lazy view of the log-Mels, in
    file-name order.

    Returns:
      ``log_mel``: :class:`~mdg.data.lazy_log_mels.LazyLogMels` ``(n, frames, n_mels)`` float32
      dB, read from the shards on demand (all clips of a machine type have the same length, see
      :func:`prepare`); ``file_name``, ``machine`` str (n,); ``section``, ``domain``, ``label``,
      ``index`` int32 (n,); ``attribute_names``, ``attribute_values`` object (n,), each a tuple
      of str. Only one chunk of records is in memory at a time.
    """
    source = data_source(builder, split)
    columns: dict[str, list] = {name: [] for name in TEXT_FIELDS + INT_FIELDS + ATTRIBUTE_FIELDS}
    clip_shape = None
    for record in source:
        clip_shape = record["log_mel"].shape
        for name, values in columns.items():
            values.append(record[name])
    if clip_shape is None:
        raise ValueError(f"{builder.data_dir}: split {split!r} has no clips")
    arrays: dict[str, Any] = {"log_mel": lazy_log_mels.LazyLogMels(source.log_mels, np.arange(len(source)),
                                                                   clip_shape)}
    arrays.update({name: np.array(columns[name], dtype=str) for name in TEXT_FIELDS})
    arrays.update({name: np.array(columns[name], dtype=np.int32) for name in INT_FIELDS})
    for name in ATTRIBUTE_FIELDS:
        arrays[name] = np.empty(len(source), dtype=object)
        for row, value in enumerate(columns[name]):  # element-wise: numpy would unpack equal-length tuples
            arrays[name][row] = value
    return arrays
