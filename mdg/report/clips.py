"""The per-clip table ``results/clips.parquet``: one row per training and test clip.

Columns follow the enriched DCASE 2023 Task 2 dataset by Renumics (``renumics/dcase23-task2-enriched``),
so tools built for it (Renumics Spotlight layouts, pandas notebooks) read ours:

=====================================  =======================  ===========================================
column                                 Arrow type               meaning
=====================================  =======================  ===========================================
``path``                               string (null: no root)   ``<data_root>/<class>/<split>/<file_name>``
``file_name``                          string                   WAV base name, as in the submission CSVs
``split``                              string                   ``"train"`` or ``"test"``
``class``                              string                   machine type (Renumics: a class index)
``section``                            int32                    section number
``d1p``, ``d1v`` ... ``dNp``, ``dNv``  string (null: absent)    attribute name / value pairs, N >= 3
``domain``                             int8 (null: unknown)     0 source, 1 target
``label``                              int8 (null: unknown)     0 normal, 1 anomaly
``anomaly_score_<m>``                  float64 (null: unscored) larger = more anomalous
``prediction_<m>``                     int8 (null: unscored)    1 = score above the machine type's threshold
``prediction_correct_<m>``             int8 (null: no label)    1 where prediction == label
``embeddings_<model>``                 fixed_size_list<float32> clip-level embedding, see below
``projection_x``, ``projection_y``     float32                  2-D PCA of the embedding per machine type
=====================================  =======================  ===========================================

``<m>`` is the scoring method's name, except that the local outlier factor on the embedding
(method ``lof``) is spelled ``embedding_lof`` as in the Renumics dataset. The schema metadata
key ``mdg`` holds JSON: model name, methods -> column suffixes, the embedding's source width and
how it was reduced.

Embeddings: the model's clip-level representation (autoencoder: clip-mean bottleneck code;
classifiers: clip-mean embedding). Widths up to :data:`EMBEDDING_MAX_DIM` are stored as they are
(a rotation would only hide the model's own coordinates); wider ones are reduced by a PCA per
machine type, fitted on all clips of that type, to ``EMBEDDING_MAX_DIM`` components (zero-padded
where a type has fewer clips than components), which is how the Renumics dataset stores its
autoencoder embeddings. The 2-D projection is the first two principal components of the
(unreduced) embedding, per machine type.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from etils import epath
from sklearn.decomposition import PCA

from mdg import storage

EMBEDDING_MAX_DIM = 32
MIN_ATTRIBUTE_SLOTS = 3
SPLITS = ("train", "test")
# Method name -> column suffix where the Renumics dataset has its own spelling.
COLUMN_SUFFIX = {"lof": "embedding_lof"}
CLIP_FIELDS = ("split", "file_name", "machine", "section", "domain", "label",
               "attribute_names", "attribute_values")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def column_suffix(method: str) -> str:
    """The ``<m>`` of ``anomaly_score_<m>`` for a scoring method."""
    if not _NAME.match(method):
        raise ValueError(f"scoring method name {method!r} must be letters, digits, '_', '.', '-'")
    return COLUMN_SUFFIX.get(method, method)


def _check_clips(clips: Mapping[str, np.ndarray]) -> int:
    """Number of rows; raises naming the field when one is missing, misshaped or out of range."""
    missing = [name for name in CLIP_FIELDS if name not in clips]
    if missing:
        raise KeyError(f"clips lacks field(s) {missing}; needs {list(CLIP_FIELDS)}")
    num_rows = len(clips["file_name"])
    for name in CLIP_FIELDS:
        if np.shape(clips[name]) != (num_rows,):
            raise ValueError(f"clips[{name!r}] has shape {np.shape(clips[name])}, expected ({num_rows},)")
    bad_split = ~np.isin(np.asarray(clips["split"], dtype=str), SPLITS)
    if bad_split.any():
        raise ValueError(f"{clips['file_name'][bad_split][0]}: split {clips['split'][bad_split][0]!r} "
                         f"is not one of {SPLITS}")
    for name, allowed in (("domain", (-1, 0, 1)), ("label", (-1, 0, 1))):
        bad = ~np.isin(np.asarray(clips[name]), allowed)
        if bad.any():
            raise ValueError(f"{clips['file_name'][bad][0]}: {name} {clips[name][bad][0]} is not one "
                             f"of {allowed} (-1 = unknown)")
    return num_rows


def reduce_embeddings(embeddings: np.ndarray, machine: np.ndarray,
                      max_dim: int = EMBEDDING_MAX_DIM) -> np.ndarray:
    """Fixed-width embeddings, float32 (n, min(d, max_dim)), see the module docstring.

    embeddings: (n, d) float; machine: (n,) str, the PCA is fitted per machine type.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.shape[1] <= max_dim:
        return embeddings.astype(np.float32)
    return _pca_per_machine(embeddings, machine, max_dim)


def project_2d(embeddings: np.ndarray, machine: np.ndarray) -> np.ndarray:
    """First two principal components of each machine type's embeddings, float32 (n, 2)."""
    return _pca_per_machine(np.asarray(embeddings, dtype=np.float64), machine, 2)


def _pca_per_machine(embeddings: np.ndarray, machine: np.ndarray, num_components: int) -> np.ndarray:
    """(n, num_components) float32 principal-component scores, zero where a type has too few clips."""
    machine = np.asarray(machine, dtype=str)
    out = np.zeros((embeddings.shape[0], num_components), np.float32)
    for name in np.unique(machine):
        rows = machine == name
        usable = min(num_components, int(rows.sum()) - 1, embeddings.shape[1])
        if usable >= 1:
            out[rows, :usable] = PCA(n_components=usable, svd_solver="full").fit_transform(embeddings[rows])
    return out


def clip_path(data_root: str | os.PathLike | None, machine: str, split: str, file_name: str) -> str | None:
    """``<data_root>/<machine>/<split>/<file_name>`` as str, None without a data root."""
    if data_root is None:
        return None
    return str(pathlib.Path(data_root) / machine / split / file_name)


def _attribute_columns(names: np.ndarray, values: np.ndarray, file_names: np.ndarray) -> dict[str, list]:
    """``d1p``, ``d1v``, ... lists (None where a clip has fewer pairs)."""
    slots = max([MIN_ATTRIBUTE_SLOTS] + [len(n) for n in names])
    columns: dict[str, list] = {f"d{i + 1}{kind}": [] for i in range(slots) for kind in "pv"}
    for row_names, row_values, file_name in zip(names, values, file_names):
        if len(row_names) != len(row_values):
            raise ValueError(f"{file_name}: {len(row_names)} attribute names but {len(row_values)} values")
        for i in range(slots):
            columns[f"d{i + 1}p"].append(str(row_names[i]) if i < len(row_names) else None)
            columns[f"d{i + 1}v"].append(str(row_values[i]) if i < len(row_values) else None)
    return columns


def _masked(values: np.ndarray, unknown: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    return pa.array(np.where(unknown, 0, values), type=arrow_type, mask=np.asarray(unknown, bool))


def build_table(clips: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray],
                decisions: Mapping[str, np.ndarray], embeddings: np.ndarray, model_name: str,
                data_root: str | os.PathLike | None) -> pa.Table:
    """The per-clip table (module docstring) from per-row numpy columns.

    clips: the fields of :data:`CLIP_FIELDS`, each (n,) (domain, label: -1 unknown;
    attribute_names / attribute_values: object arrays of str tuples). scores: method -> float (n,),
    NaN where a clip was not scored. decisions: method -> 0/1 (n,) (ignored where the score is NaN).
    embeddings: (n, d) float, finite. model_name: goes into ``embeddings_<model_name>``.
    """
    num_rows = _check_clips(clips)
    if set(scores) != set(decisions):
        raise ValueError(f"scores have methods {sorted(scores)} but decisions {sorted(decisions)}")
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] != num_rows or embeddings.shape[1] < 1:
        raise ValueError(f"embeddings must be (n={num_rows}, d>=1), got shape {embeddings.shape}")
    if not np.all(np.isfinite(embeddings)):
        bad = int(np.flatnonzero(~np.isfinite(embeddings).all(axis=1))[0])
        raise ValueError(f"{clips['file_name'][bad]}: non-finite embedding")
    if not _NAME.match(model_name):
        raise ValueError(f"model name {model_name!r} must be letters, digits, '_', '.', '-'")

    machine = np.asarray(clips["machine"], dtype=str)
    split = np.asarray(clips["split"], dtype=str)
    file_name = np.asarray(clips["file_name"], dtype=str)
    domain = np.asarray(clips["domain"], dtype=np.int64)
    label = np.asarray(clips["label"], dtype=np.int64)
    columns: dict[str, pa.Array] = {
        "path": pa.array([clip_path(data_root, m, s, f) for m, s, f in zip(machine, split, file_name)],
                         type=pa.string()),
        "file_name": pa.array(file_name, type=pa.string()),
        "split": pa.array(split, type=pa.string()),
        "class": pa.array(machine, type=pa.string()),
        "section": pa.array(np.asarray(clips["section"], dtype=np.int64), type=pa.int32()),
    }
    for name, values in _attribute_columns(clips["attribute_names"], clips["attribute_values"],
                                           file_name).items():
        columns[name] = pa.array(values, type=pa.string())
    columns["domain"] = _masked(domain, domain < 0, pa.int8())
    columns["label"] = _masked(label, label < 0, pa.int8())

    suffixes = {}
    for method in scores:
        suffix = suffixes[method] = column_suffix(method)
        score = np.asarray(scores[method], dtype=np.float64)
        decision = np.asarray(decisions[method])
        if score.shape != (num_rows,) or decision.shape != (num_rows,):
            raise ValueError(f"method {method!r}: scores {score.shape} and decisions {decision.shape} "
                             f"must both be ({num_rows},)")
        unscored = np.isnan(score)
        if np.isinf(score).any():
            raise ValueError(f"method {method!r}: {file_name[np.isinf(score)][0]} has an infinite score")
        bad = ~unscored & ~np.isin(decision, (0, 1))
        if bad.any():
            raise ValueError(f"method {method!r}: {file_name[bad][0]} has decision {decision[bad][0]}, "
                             "not 0 or 1")
        decision = np.where(unscored, 0, decision).astype(np.int64)
        columns[f"anomaly_score_{suffix}"] = pa.array(score, type=pa.float64(), from_pandas=True)
        columns[f"prediction_{suffix}"] = _masked(decision, unscored, pa.int8())
        columns[f"prediction_correct_{suffix}"] = _masked(
            (decision == label).astype(np.int64), unscored | (label < 0), pa.int8())

    reduced = reduce_embeddings(embeddings, machine)
    columns[f"embeddings_{model_name}"] = pa.FixedSizeListArray.from_arrays(
        pa.array(reduced.ravel(), type=pa.float32()), reduced.shape[1])
    projection = project_2d(embeddings, machine)
    columns["projection_x"] = pa.array(projection[:, 0], type=pa.float32())
    columns["projection_y"] = pa.array(projection[:, 1], type=pa.float32())

    metadata = {
        "model": model_name,
        "methods": suffixes,
        "embedding_source_dim": int(embeddings.shape[1]),
        "embedding_reduction": ("none" if embeddings.shape[1] <= EMBEDDING_MAX_DIM else
                                f"PCA per machine type to {EMBEDDING_MAX_DIM} components"),
        "projection": "PCA per machine type, first two components",
    }
    table = pa.table(columns)
    return table.replace_schema_metadata({"mdg": json.dumps(metadata)})


def labelled_test_rows(columns: Mapping[str, np.ndarray], machine: str | None = None) -> np.ndarray:
    """Bool (n,): test clips with a known label (of one machine type if given), of read_table's columns."""
    rows = (columns["split"] == "test") & ~np.isnan(columns["label"].astype(float))
    return rows if machine is None else rows & (columns["class"] == machine)


def write_table(path: str | os.PathLike, table: pa.Table) -> epath.Path:
    """Writes the table as Parquet, atomically (see :func:`mdg.storage.write_atomic`); returns path."""
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    return storage.write_atomic(path, buffer.getvalue().to_pybytes())


def read_table(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Reads a clips.parquet back: (column -> numpy array, the ``mdg`` metadata dict).

    Nullable integer columns come back as float64 with NaN for null, string columns as object
    arrays with None; the embedding column as float32 (n, k).
    """
    path = storage.path(path)
    try:
        table = pq.read_table(pa.BufferReader(path.read_bytes()))
        metadata = json.loads((table.schema.metadata or {})[b"mdg"])
    except (OSError, pa.ArrowException, KeyError, ValueError) as error:
        raise ValueError(f"{path}: not a clips table written by mdg.report.clips ({error})") from error
    columns: dict[str, np.ndarray] = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_fixed_size_list(column.type):
            flat = column.combine_chunks().flatten().to_numpy()
            columns[name] = flat.reshape(len(column), column.type.list_size)
        elif pa.types.is_integer(column.type) and column.null_count:
            columns[name] = column.cast(pa.float64()).to_numpy()
        else:
            columns[name] = column.to_numpy(zero_copy_only=False)
    return columns, metadata
