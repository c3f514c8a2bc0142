"""Dataset layout: WAV file names, attribute CSVs and evaluator ground truth -> `Clip` records.

Folder layout (MIMII DG, DCASE 2022 and 2023 Task 2): ``<root>/<machine>/{train,test}/<name>.wav``.

File-name schemes
-----------------
* Labelled (MIMII DG, DCASE 2022 dev/additional-train, DCASE 2023 dev/additional-train)::

      section_<XX>_<source|target>_<train|test>_<normal|anomaly>_<NNNN>[_<attribute tail>].wav

  e.g. ``section_00_source_train_normal_0000_m-n_W.wav``,
  ``section_00_target_test_anomaly_0015_car_A2_spd_6_mic_2.wav``,
  ``section_00_source_test_normal_0027_vel_730_ac_0.11.wav``,
  ``section_00_source_train_normal_0000_noAttribute.wav``.
* Unlabelled evaluation (DCASE 2022 eval, sections 03-05; DCASE 2023 eval, section 00)::

      section_<XX>_<NNNN>.wav            e.g. section_03_0000.wav

Attribute tail: split on ``_`` and paired in order, ``name_value_name_value...``: ``m-n_W`` ->
``(("m-n", "W"),)``; ``vel_730_ac_0.11`` -> ``(("vel", "730"), ("ac", "0.11"))``. Names and
values stay strings (``"0.30"`` stays ``"0.30"``, ``"00"`` stays ``"00"``). ``noAttribute`` means
no pairs. A tail that cannot be paired (odd token count, empty token) is a `LayoutError`: the name
alone is then ambiguous, and the attribute CSV is the authoritative source.

Attribute CSVs (``attributes_<XX>.csv``)
----------------------------------------
Header ``file_name,d1p,d1v[,d2p,d2v,...]``; ``file_name`` is ``<machine>/<split>/<name>.wav`` in
the official files. Irregularities seen in real files and how they are read:

* rows shorter than the header (missing trailing cells) are padded with empty cells; a pair whose
  name and value are both empty is absent; a pair with only one of them is an error;
* other columns (the DCASE 2022 evaluator's ``file_name_with_full_attributes``) are ignored;
* DCASE 2023 additional-train ToyDrone/ToyNscale/ToyTank/Vacuum: ``file_name`` without folder and
  without ``.wav`` (the key gets ``.wav`` appended), rows out of order (rows are keyed, order is
  irrelevant), column name ``speed`` where the file name says ``spd``, and fewer pairs than the
  name (ToyTank lacks ``mic``, Vacuum lacks ``spd``). DCASE 2022 evaluator CSVs show the same
  patterns (ToyTrain ``speed`` vs ``spd``; only some of the name's pairs listed).

`check_attributes` rule: every CSV pair must equal a pair parsed from the clip's name. Attribute
names are compared after mapping the aliases in `ATTRIBUTE_NAME_ALIASES` (``speed`` -> ``spd``:
the same quantity, written both ways by the dataset authors); values are compared as exact
strings, since ``0.3`` and ``0.30`` are only provably equal if the attribute is known to be
numeric. Pairs in the name but missing from the CSV are accepted (the CSV is a subset, never a
contradiction). A CSV pair absent from the name, or with another value (e.g. the DCASE 2022 eval
valve file lists ``v1pat`` for names that say ``v2pat``), is a mismatch.

Evaluator ground truth
----------------------
Checked against the official evaluators on GitHub (nttcslab/dcase2023_task2_evaluator; the DCASE
2022 Task 2 evaluator, Kota-Dohi/dcase2022_evaluator). Beside the evaluator script, per machine
type and section::

    ground_truth_data/ground_truth_<machine>_section_<XX>_test.csv     rows "<wav name>,<0|1>"
    ground_truth_domain/ground_truth_<machine>_section_<XX>_test.csv   rows "<wav name>,<0|1>"

No header; ``<wav name>`` is the evaluation file name (``section_03_0000.wav``); label 0 normal,
1 anomaly; domain 0 source, 1 target (verified against the 2022 ``ground_truth_attributes`` CSVs,
whose ``file_name_with_full_attributes`` column spells the domain out). Rows are in file-name
order. The evaluators also ship ``ground_truth_attributes/`` (2023: ``<wav name>,<dev-style name
without .wav>``; 2022: ``<machine>/attributes_<XX>.csv``), which `read_eval_ground_truth` does
not need.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import os
import re
from typing import Iterable, Mapping, Sequence

from absl import logging

from mdg import errors

MIMII_DG_MACHINE_TYPES = ("fan", "gearbox", "bearing", "slider", "valve")
SPLITS = ("train", "test")
DOMAINS = ("source", "target", "unknown")
# Attribute names written two ways by the dataset authors for the same quantity, mapped to the
# spelling used in file names.
ATTRIBUTE_NAME_ALIASES = {"speed": "spd"}
NO_ATTRIBUTE = "noAttribute"

_LABELLED_NAME = re.compile(
    r"section_(?P<section>\d{2})_(?P<domain>source|target)_(?P<split>train|test)_"
    r"(?P<condition>normal|anomaly)_(?P<index>\d+)(?:_(?P<tail>.+))?")
_EVAL_NAME = re.compile(r"section_(?P<section>\d{2})_(?P<index>\d+)")
_PAIR_COLUMN = re.compile(r"d(?P<number>\d+)(?P<kind>[pv])")
_LABELS = {"normal": 0, "anomaly": 1}
# Most problems listed in one error message; the rest are counted.
_MAX_LISTED = 10

Attributes = tuple[tuple[str, str], ...]


class LayoutError(errors.UserError):
    """A dataset file or folder does not follow the expected layout; the message names it."""


@dataclasses.dataclass(frozen=True)
class Clip:
    """One WAV clip of the dataset and what its name (or the ground truth) says about it.

    Attributes:
      path: full path of the WAV file.
      machine: machine type, the folder name, e.g. "fan", "ToyCar".
      section: section number (0-5 in MIMII DG / DCASE 2022-2023).
      domain: "source", "target", or "unknown" (unlabelled evaluation names).
      split: "train" or "test".
      label: 0 normal, 1 anomaly, -1 unknown (unlabelled evaluation names).
      index: the NNNN number of the file name.
      attributes: (name, value) pairs, strings; () for none.
    """

    path: str
    machine: str
    section: int
    domain: str
    split: str
    label: int
    index: int
    attributes: Attributes = ()

    def __post_init__(self):
        if self.domain not in DOMAINS:
            raise ValueError(f"{self.path}: domain {self.domain!r} is not one of {DOMAINS}")
        if self.split not in SPLITS:
            raise ValueError(f"{self.path}: split {self.split!r} is not one of {SPLITS}")
        if self.label not in (-1, 0, 1):
            raise ValueError(f"{self.path}: label {self.label!r} is not -1, 0 or 1")

    @property
    def file_name(self) -> str:
        """The base name of the WAV file, e.g. "section_00_source_train_normal_0000_m-n_W.wav"."""
        return os.path.basename(self.path)


def split_attribute_tail(tail: str, file_name: str) -> Attributes:
    """Splits a name's attribute tail ("vel_730_ac_0.11") into (name, value) pairs.

    Args:
      tail: the part of the file stem after "_NNNN_"; "noAttribute" means no pairs.
      file_name: the file the tail comes from, for error messages.
    Returns:
      The pairs in name order, e.g. (("vel", "730"), ("ac", "0.11")).
    Raises:
      LayoutError: the tail has an empty token or an odd number of tokens.
    """
    if tail == NO_ATTRIBUTE:
        return ()
    tokens = tail.split("_")
    if "" in tokens:
        raise LayoutError(f"{file_name}: attribute part {tail!r} has an empty '_'-separated token")
    if len(tokens) % 2:
        raise LayoutError(
            f"{file_name}: attribute part {tail!r} has an odd number ({len(tokens)}) of "
            "'_'-separated tokens, so it cannot be split into name_value pairs")
    return tuple(zip(tokens[0::2], tokens[1::2]))


def parse_clip_name(file_name: str, machine: str, split: str, path: str | None = None) -> Clip:
    """Parses one WAV file name into a `Clip`.

    Args:
      file_name: the WAV base name (a path is reduced to its base name).
      machine: machine type (the folder name).
      split: "train" or "test", the folder the file is in.
      path: full path to store in the clip; defaults to `file_name`.
    Returns:
      The clip; unlabelled evaluation names get domain "unknown" and label -1.
    Raises:
      LayoutError: the name matches no known scheme, its split differs from the folder's, it is an
        anomalous or unlabelled clip in the train split, or its attribute part cannot be paired.
    """
    base = os.path.basename(file_name)
    path = file_name if path is None else str(path)
    if split not in SPLITS:
        raise LayoutError(f"{path}: split {split!r} is not one of {SPLITS}")
    if not base.endswith(".wav"):
        raise LayoutError(f"{path}: not a .wav file name")
    stem = base[:-len(".wav")]

    labelled = _LABELLED_NAME.fullmatch(stem)
    if labelled:
        if labelled["split"] != split:
            raise LayoutError(
                f"{path}: the name says split {labelled['split']!r} but the file is in the "
                f"{split!r} folder")
        label = _LABELS[labelled["condition"]]
        if split == "train" and label == 1:
            raise LayoutError(
                f"{path}: anomalous clip in the train split (training data is normal only)")
        tail = labelled["tail"]
        return Clip(path=path, machine=machine, section=int(labelled["section"]),
                    domain=labelled["domain"], split=split, label=label,
                    index=int(labelled["index"]),
                    attributes=split_attribute_tail(tail, path) if tail else ())

    unlabelled = _EVAL_NAME.fullmatch(stem)
    if unlabelled:
        if split != "test":
            raise LayoutError(f"{path}: unlabelled evaluation name in the {split!r} split")
        return Clip(path=path, machine=machine, section=int(unlabelled["section"]),
                    domain="unknown", split=split, label=-1, index=int(unlabelled["index"]))

    raise LayoutError(
        f"{path}: file name matches neither "
        "'section_XX_<source|target>_<train|test>_<normal|anomaly>_NNNN[_<attributes>].wav' "
        "nor 'section_XX_NNNN.wav'")


def is_unlabelled_name(file_name: str) -> bool:
    """True for an unlabelled evaluation name (``section_03_0000.wav``; a path is reduced to its
    base name), whose label, domain and attributes the name does not say."""
    base = os.path.basename(file_name)
    return base.endswith(".wav") and _EVAL_NAME.fullmatch(base[:-len(".wav")]) is not None


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def scan_split(root: str | os.PathLike, machine: str, split: str,
               on_error: str = "raise") -> list[Clip]:
    """Lists the clips in `<root>/<machine>/<split>/`, sorted by file name.

    Only `.wav` names count; other files and hidden files (e.g. macOS `._*.wav` forks) are ignored.
    Symlinks to WAV files are followed; a `.wav` entry that is not a readable file (a folder, a
    broken symlink) is a bad clip like an unparsable name.

    Args:
      root: the dataset root holding `<machine>/{train,test}/`.
      machine: machine type folder name.
      split: "train" or "test".
      on_error: "raise" to fail on a name that does not parse, "skip" to log a warning and skip it.
    Raises:
      LayoutError: the folder is missing, or (with on_error="raise") a file name does not parse.
    """
    _check_on_error(on_error)
    if split not in SPLITS:
        raise LayoutError(f"split {split!r} is not one of {SPLITS}")
    folder = os.path.join(os.fspath(root), machine, split)
    if not os.path.isdir(folder):
        raise LayoutError(f"{folder}: folder missing (expected <root>/<machine>/{split}/)")
    with os.scandir(folder) as entries:
        names = sorted(entry.name for entry in entries
                       if entry.name.endswith(".wav") and not entry.name.startswith("."))
    clips = []
    for name in names:
        path = os.path.join(folder, name)
        try:
            if not os.path.isfile(path):
                kind = "a folder" if os.path.isdir(path) else "a broken symlink or special file"
                raise LayoutError(f"{path}: named like a WAV file but is {kind}")
            clips.append(parse_clip_name(name, machine, split, path=path))
        except LayoutError as error:
            if on_error == "raise":
                raise
            logging.warning("Skipping %s", error)
    return clips


def list_machine_types(root: str | os.PathLike) -> list[str]:
    """Returns the sorted names of the subfolders of `root` that hold `train/` or `test/`.

    Hidden folders are skipped: they are not machine types but, e.g., another process's
    half-written synthetic data (`.fan.partial-*`).

    Raises:
      LayoutError: `root` is missing or holds no such subfolder.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise LayoutError(f"{root}: dataset root folder missing")
    machines = sorted(
        name for name in os.listdir(root)
        if not name.startswith(".") and any(os.path.isdir(os.path.join(root, name, split)) for split in SPLITS))
    if not machines:
        raise LayoutError(f"{root}: no machine-type folders (expected <root>/<machine>/train/ or "
                          f"<root>/<machine>/test/ holding the WAV files); found {_describe_folder(root)}")
    return machines


def _describe_folder(folder: str, shown: int = 8) -> str:
    """A short listing of a folder for error messages: 'nothing' or 'a/, b.wav, ... (N entries)'."""
    names = sorted(name + ("/" if os.path.isdir(os.path.join(folder, name)) else "")
                   for name in os.listdir(folder))
    if not names:
        return "nothing (empty folder)"
    more = f", ... ({len(names)} entries)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _read_csv_rows(path: str) -> list[list[str]]:
    """Reads all rows of a CSV file (UTF-8, optional BOM); LayoutError if unreadable."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            return list(csv.reader(file))
    except FileNotFoundError:
        raise LayoutError(f"{path}: file missing") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise LayoutError(f"{path}: cannot read as CSV: {error}") from error


def _pair_columns(header: Sequence[str], path: str) -> list[tuple[int, int]]:
    """(name column, value column) indices of the dKp/dKv pairs in the header, ordered by K."""
    columns: dict[int, dict[str, int]] = collections.defaultdict(dict)
    for position, column in enumerate(header):
        match = _PAIR_COLUMN.fullmatch(column)
        if match:
            kind = match["kind"]
            number = int(match["number"])
            if kind in columns[number]:
                raise LayoutError(f"{path}: header repeats column {column!r}")
            columns[number][kind] = position
    pairs = []
    for number in sorted(columns):
        if set(columns[number]) != {"p", "v"}:
            raise LayoutError(
                f"{path}: header has only one of d{number}p/d{number}v (every attribute needs a "
                "name column dKp and a value column dKv)")
        pairs.append((columns[number]["p"], columns[number]["v"]))
    return pairs


def _attribute_key(cell: str, path: str, line: int, machine: str | None) -> str:
    """The WAV base name a CSV file_name cell refers to."""
    parts = cell.split("/")
    if not cell or "" in parts or len(parts) not in (1, 3):
        raise LayoutError(
            f"{path}, line {line}: file_name {cell!r} is not '<name>[.wav]' or "
            "'<machine>/<split>/<name>.wav'")
    if len(parts) == 3:
        if parts[1] not in SPLITS:
            raise LayoutError(f"{path}, line {line}: file_name {cell!r} has split folder "
                              f"{parts[1]!r}, not one of {SPLITS}")
        if machine is not None and parts[0] != machine:
            raise LayoutError(f"{path}, line {line}: file_name {cell!r} belongs to machine type "
                              f"{parts[0]!r}, not {machine!r}")
    name = parts[-1]
    return name if name.endswith(".wav") else name + ".wav"


def read_attributes_csv(path: str | os.PathLike,
                        machine: str | None = None) -> dict[str, Attributes]:
    """Reads an attribute CSV (`file_name,d1p,d1v[,d2p,d2v,...]`), see the module docstring.

    Args:
      path: the CSV file.
      machine: if given, rows whose file_name has a folder must be in this machine type's folder.
    Returns:
      WAV base name (with ".wav") -> (name, value) pairs in column order; () for a row without
      pairs.
    Raises:
      LayoutError naming the file (and line): missing/unreadable file, header without file_name,
        a dKp column without its dKv, a pair with a name but no value (or the reverse), non-empty
        cells beyond the header, a malformed file_name, two rows for one file with different
        pairs.
    """
    path = os.fspath(path)
    rows = _read_csv_rows(path)
    if not rows:
        raise LayoutError(f"{path}: empty file (expected a header 'file_name,d1p,d1v,...')")
    header = [cell.strip() for cell in rows[0]]
    if not header or header[0] != "file_name":
        raise LayoutError(f"{path}: header {header!r} does not start with 'file_name'")
    pair_columns = _pair_columns(header, path)

    attributes: dict[str, Attributes] = {}
    first_line: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if any(cells[len(header):]):
            raise LayoutError(f"{path}, line {line}: {len(cells)} cells but the header has "
                              f"{len(header)} columns")
        cells += [""] * (len(header) - len(cells))
        key = _attribute_key(cells[0], path, line, machine)
        pairs = []
        for name_column, value_column in pair_columns:
            name, value = cells[name_column], cells[value_column]
            if bool(name) != bool(value):
                raise LayoutError(
                    f"{path}, line {line}: column {header[name_column]}={name!r} but "
                    f"{header[value_column]}={value!r}; an attribute needs both a name and a value")
            if name:
                pairs.append((name, value))
        pairs = tuple(pairs)
        if key in attributes and attributes[key] != pairs:
            raise LayoutError(f"{path}: lines {first_line[key]} and {line} give different "
                              f"attributes for {key}: {attributes[key]} vs {pairs}")
        attributes[key] = pairs
        first_line.setdefault(key, line)
    return attributes


def _canonical_name(name: str) -> str:
    return ATTRIBUTE_NAME_ALIASES.get(name, name)


def _raise_problems(header: str, problems: Sequence[str]) -> None:
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED])
        more = len(problems) - _MAX_LISTED
        suffix = f"\n  ... and {more} more" if more > 0 else ""
        raise LayoutError(f"{header} ({len(problems)} problems):\n  {listed}{suffix}")


def check_attributes(clips: Iterable[Clip], attributes: Mapping[str, Attributes],
                     csv_path: str | os.PathLike, strict: bool = True) -> None:
    """Cross-checks the attribute pairs parsed from clip names against an attribute CSV.

    Rules (see the module docstring): every CSV pair of a clip on disk must equal one of the pairs
    in its name, attribute names compared through `ATTRIBUTE_NAME_ALIASES`, values as exact
    strings; name pairs missing from the CSV are fine. CSV rows for files not on disk are fine
    (data slices), and so are rows for unlabelled evaluation names (``section_03_0000.wav``),
    which carry no pairs.

    Args:
      clips: the clips on disk (e.g. from `scan_split`).
      attributes: `read_attributes_csv(csv_path)`.
      csv_path: the CSV the attributes came from, for messages.
      strict: if True, a clip whose name has attributes but which has no CSV row is an error; if
        False it is logged as a warning.
    Raises:
      LayoutError: listing every clip that disagrees with the CSV (and, when strict, every clip with
        attributes but no row).
    """
    csv_path = os.fspath(csv_path)
    problems, unlisted = [], []
    for clip in clips:
        csv_pairs = attributes.get(clip.file_name)
        if csv_pairs is None:
            if clip.attributes:
                unlisted.append(clip.path)
            continue
        if _EVAL_NAME.fullmatch(clip.file_name[:-len(".wav")]):
            continue  # An unlabelled evaluation name says nothing the CSV could contradict.
        name_values = collections.defaultdict(list)
        for name, value in clip.attributes:
            name_values[_canonical_name(name)].append(value)
        for name, value in csv_pairs:
            in_name = name_values.get(_canonical_name(name), [])
            if value not in in_name:
                problems.append(
                    f"{clip.path}: CSV says {name}={value!r} but the name says "
                    + (f"{name}={in_name[0]!r}" if in_name else f"nothing about {name!r}"))
    if strict:
        problems.extend(f"{path}: no row in the attribute CSV" for path in unlisted)
    elif unlisted:
        logging.warning("%d clip(s) have attributes in their names but no row in %s, e.g. %s",
                        len(unlisted), csv_path, unlisted[0])
    _raise_problems(f"{csv_path}: attribute CSV and file names disagree", problems)


def _read_binary_ground_truth(path: str) -> dict[str, int]:
    """Reads evaluator rows '<wav name>,<0|1>' (no header) into name -> 0/1."""
    values: dict[str, int] = {}
    for line, row in enumerate(_read_csv_rows(path), start=1):
        cells = [cell.strip() for cell in row]
        while cells and not cells[-1]:
            cells.pop()
        if not cells:
            continue
        if len(cells) != 2 or cells[1] not in ("0", "1") or not cells[0]:
            raise LayoutError(f"{path}, line {line}: expected '<wav name>,<0|1>', got {row!r}")
        name, value = cells[0], int(cells[1])
        if values.get(name, value) != value:
            raise LayoutError(f"{path}, line {line}: {name} appears again with another value")
        values[name] = value
    return values


def read_eval_ground_truth(ground_truth_dir: str | os.PathLike, machine: str,
                           clips: Sequence[Clip]) -> list[Clip]:
    """Fills label and domain of test clips from the official evaluator's ground-truth files.

    Reads `<ground_truth_dir>/ground_truth_data/ground_truth_<machine>_section_<XX>_test.csv`
    (label) and `<ground_truth_dir>/ground_truth_domain/...` (0 source, 1 target) for every section
    present in `clips`; format in the module docstring.

    Args:
      ground_truth_dir: the evaluator folder holding ground_truth_data/ and ground_truth_domain/.
      machine: the machine type of all clips.
      clips: test clips of that machine type (usually unlabelled evaluation names).
    Returns:
      The clips in the same order with label (0/1) and domain ("source"/"target") filled.
    Raises:
      LayoutError: a ground-truth file is missing or malformed, a clip has no row, a row names a
        file that is not among the clips of its section, a clip is of another machine type or split,
        or a clip's own name contradicts the ground truth.
    """
    root = os.fspath(ground_truth_dir)
    by_section: dict[int, list[Clip]] = collections.defaultdict(list)
    for clip in clips:
        if clip.machine != machine:
            raise LayoutError(f"{clip.path}: machine type {clip.machine!r}, expected {machine!r}")
        if clip.split != "test":
            raise LayoutError(f"{clip.path}: ground truth exists for test clips only")
        by_section[clip.section].append(clip)

    filled: dict[str, Clip] = {}
    for section, section_clips in sorted(by_section.items()):
        file_name = f"ground_truth_{machine}_section_{section:02d}_test.csv"
        tables = {}
        for folder in ("ground_truth_data", "ground_truth_domain"):
            path = os.path.join(root, folder, file_name)
            table = _read_binary_ground_truth(path)
            names = {clip.file_name for clip in section_clips}
            missing = sorted(names - table.keys())
            extra = sorted(table.keys() - names)
            _raise_problems(
                f"{path}: ground truth does not match the section {section:02d} clips",
                [f"{name}: no row" for name in missing]
                + [f"{name}: row for a file that is not among the clips" for name in extra])
            tables[folder] = table
        for clip in section_clips:
            label = tables["ground_truth_data"][clip.file_name]
            domain = DOMAINS[tables["ground_truth_domain"][clip.file_name]]
            if clip.label not in (-1, label) or clip.domain not in ("unknown", domain):
                raise LayoutError(
                    f"{clip.path}: the name says label {clip.label}, domain {clip.domain!r} but "
                    f"the ground truth in {root} says label {label}, domain {domain!r}")
            filled[clip.path] = dataclasses.replace(clip, label=label, domain=domain)
    return [filled[clip.path] for clip in clips]
