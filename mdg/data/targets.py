"""Class targets for the classification-based detectors.

The MobileNetV2 baseline of MIMII DG / DCASE 2022 Task 2 classifies which section a clip comes from
and scores a clip by how little probability the classifier gives its true class; the DCASE 2022/2023
top systems train the same kind of auxiliary classifier on finer classes. A *class key* is a
readable string per clip; the class list is the sorted set of the training clips' keys.

Kinds of class
--------------
``"section"``            the section within one machine type:  ``section_00``
``"section_attribute"``  section x the clip's full attribute tuple, in name order (needed when a
                         machine type has a single section, as in DCASE 2023):
                         ``section_00|car=C2|spd=34V|mic=1``; a clip without attributes
                         (``noAttribute`` in its name) is ``section_00|noAttribute``, its own class
                         per section.
``"machine_section"``    machine type x section, all machine types at once:  ``fan|section_00``

Each key belongs to a *section group*: the key without its attribute part (``section_00`` for
``section_00|car=C2|...``; for the other two kinds the key itself).

Test keys not among the training classes
----------------------------------------
A test clip's attribute combination may be missing from the training data (DCASE 2023 dev:
bearing, gearbox and slider target-domain test clips), and evaluation clips
(``section_03_0000.wav``) carry no attributes at all: pass ``attributes_known=False`` for them,
which gives the key ``section_03|unknownAttribute`` (never a training class). With
``unknown="section"``, `encode` marks such a clip with -1 and `true_class_mask` gives it the
candidate classes of its section group; with ``unknown="raise"`` (the default) it is an error.
A key whose *section group* has no training class (a section or machine type not trained on)
cannot be scored and is an error under both policies.

Negative-logit score with candidate classes: per patch, ``p = max`` over the clip's candidate
classes of the softmax probability, so ``log p`` is the largest candidate logit minus the
log-sum-exp of all logits and ``log(1 - p)`` the log-sum-exp of the other logits minus the same.
A clip with a training class has one candidate, which is the baseline's score exactly. An unseen
combination gets the highest probability of any class of its section (the maximum softmax
probability, a standard confidence score), on the assumption that a normal clip from a new
operating condition still looks confidently like *some* known condition of its section.
The section's summed probability is not used because with one section per machine type (DCASE
2023) it is 1 for every clip and the score would carry no information; `section_class_mask`
offers the grouping for scorers that want it in multi-section data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from mdg.data import layout

KINDS = ("section", "section_attribute", "machine_section")
UNKNOWN_POLICIES = ("raise", "section")
NO_ATTRIBUTE = layout.NO_ATTRIBUTE
UNKNOWN_ATTRIBUTE = "unknownAttribute"

# Characters that separate the parts of a key; a name, value or machine type containing one would
# make the key ambiguous.
_SEPARATORS = ("|", "=")
_SECTION = r"section_\d{2,}"
_PAIR = r"[^|=]+=[^|=]+"
_KEY_PATTERNS = {
    "section": re.compile(rf"(?P<group>{_SECTION})"),
    "section_attribute": re.compile(
        rf"(?P<group>{_SECTION})\|(?P<attributes>{NO_ATTRIBUTE}|{UNKNOWN_ATTRIBUTE}"
        rf"|{_PAIR}(?:\|{_PAIR})*)"),
    "machine_section": re.compile(rf"(?P<group>[^|=]+\|{_SECTION})"),
}
# Most offending keys quoted in one error message.
_MAX_LISTED = 5


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"class kind {kind!r} is not one of {KINDS}")


def _as_keys(keys: Sequence[str], what: str) -> list[str]:
    """`keys` as a list of plain str (numpy string arrays accepted)."""
    for key in keys:
        if not isinstance(key, str):
            raise ValueError(f"{what} must be str, got {key!r}")
    return [str(key) for key in keys]


def _parse_key(key: str) -> tuple[str, str]:
    """(kind, section group) of a class key; ValueError if it is no key of any kind."""
    for kind, pattern in _KEY_PATTERNS.items():
        match = pattern.fullmatch(key)
        if match:
            return kind, match["group"]
    raise ValueError(
        f"{key!r} is not a class key (expected 'section_XX', 'section_XX|<name>=<value>|...', "
        f"'section_XX|{NO_ATTRIBUTE}', 'section_XX|{UNKNOWN_ATTRIBUTE}' or '<machine>|section_XX')")


def _parse_keys(keys: Sequence[str], what: str) -> tuple[list[str], str, list[str]]:
    """`keys` as plain str, their one kind and the section group of each.

    Raises ValueError on a non-str or malformed key, or keys of more than one kind.
    """
    keys = _as_keys(keys, what)
    kinds, groups = [], []
    for key in keys:
        kind, group = _parse_key(key)
        kinds.append(kind)
        groups.append(group)
    found = sorted(set(kinds))
    if len(found) > 1:
        examples = [keys[kinds.index(kind)] for kind in found]
        raise ValueError(f"{what} mix class kinds {found}, e.g. {examples}")
    return keys, (found[0] if found else ""), groups


def _quoted(items: Sequence[str]) -> str:
    shown = ", ".join(repr(item) for item in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _text(value, what: str, clip: int) -> str:
    """A key part: a non-empty str without separators."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"clip {clip}: {what} must be a non-empty str, got {value!r}")
    if any(separator in value for separator in _SEPARATORS):
        raise ValueError(f"clip {clip}: {what} {value!r} contains one of {_SEPARATORS}, which "
                         "separate the parts of a class key")
    return str(value)


def _section_name(section, clip: int) -> str:
    if isinstance(section, (bool, np.bool_)) or not isinstance(section, (int, np.integer)) \
            or section < 0:
        raise ValueError(f"clip {clip}: section must be a non-negative int, got {section!r}")
    return f"section_{int(section):02d}"


def _attribute_part(names, values, clip: int) -> str:
    for what, sequence in (("attribute_names", names), ("attribute_values", values)):
        if isinstance(sequence, (str, bytes)) or not isinstance(sequence, (Sequence, np.ndarray)):
            raise ValueError(
                f"clip {clip}: {what} must be a sequence of str (one per attribute), got "
                f"{sequence!r}")
    if len(names) != len(values):
        raise ValueError(f"clip {clip}: {len(names)} attribute names {tuple(names)} but "
                         f"{len(values)} values {tuple(values)}")
    if not len(names):
        return NO_ATTRIBUTE
    return "|".join(f"{_text(name, 'attribute name', clip)}={_text(value, 'attribute value', clip)}"
                    for name, value in zip(names, values))


def class_keys(kind: str, machine: Sequence[str], section: Sequence[int],
               attribute_names: Sequence[Sequence[str]], attribute_values: Sequence[Sequence[str]],
               attributes_known: Sequence[bool] | None = None) -> list[str]:
    """One class key per clip (formats in the module docstring).

    Args:
      kind: one of `KINDS`.
      machine: (clips,) str, machine type per clip (used by "machine_section").
      section: (clips,) int >= 0, section number per clip.
      attribute_names, attribute_values: (clips,), per clip a sequence of str, as loaded from the
        shards (`tfds_builder.load_split`: object arrays of tuples); () for none (used by
        "section_attribute").
      attributes_known: (clips,) bool; False for clips whose attributes are unknown rather than
        absent (unlabelled evaluation names, see `layout.is_unlabelled_name`). None = all known.
    Returns:
      The keys, in clip order.
    Raises:
      ValueError: unknown kind, arrays of different lengths, a negative or non-integer section,
        a clip with different numbers of attribute names and values, or an empty part or one
        containing "|" or "=".
    """
    _check_kind(kind)
    columns = {"machine": machine, "section": section, "attribute_names": attribute_names,
               "attribute_values": attribute_values}
    if attributes_known is not None:
        columns["attributes_known"] = attributes_known
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"per-clip arrays differ in length: {lengths}")
    keys = []
    for clip in range(lengths["section"]):
        section_part = _section_name(section[clip], clip)
        if kind == "section":
            keys.append(section_part)
        elif kind == "machine_section":
            keys.append(f"{_text(machine[clip], 'machine type', clip)}|{section_part}")
        elif attributes_known is not None and not attributes_known[clip]:
            keys.append(f"{section_part}|{UNKNOWN_ATTRIBUTE}")
        else:
            part = _attribute_part(attribute_names[clip], attribute_values[clip], clip)
            keys.append(f"{section_part}|{part}")
    return keys


def build_classes(kind: str, train_keys: Sequence[str]) -> tuple[str, ...]:
    """The class names: the sorted unique keys of the training clips.

    Raises:
      ValueError: no keys, a key that is not of `kind`, or a key with unknown attributes.
    """
    _check_kind(kind)
    if not len(train_keys):
        raise ValueError("no training keys to build classes from")
    train_keys, found, _ = _parse_keys(train_keys, "training keys")
    if found != kind:
        raise ValueError(f"training keys are of kind {found!r}, not {kind!r}, e.g. "
                         f"{train_keys[0]!r}")
    names = sorted(set(train_keys))
    unknown = [name for name in names if name.endswith(f"|{UNKNOWN_ATTRIBUTE}")]
    if unknown:
        raise ValueError(f"training clips must have known attributes: {_quoted(unknown)}")
    return tuple(names)


def _class_groups(class_names: Sequence[str]) -> tuple[list[str], str, list[str]]:
    """Class names as plain str, their kind and section groups; ValueError on a bad or repeated
    name."""
    if not len(class_names):
        raise ValueError("class_names is empty")
    class_names, kind, groups = _parse_keys(class_names, "class_names")
    if len(set(class_names)) != len(class_names):
        repeated = sorted({name for name in class_names if class_names.count(name) > 1})
        raise ValueError(f"class_names repeat {_quoted(repeated)}")
    return class_names, kind, groups


def section_class_mask(class_names: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Which classes belong to which section group.

    Returns:
      (groups, mask): the sorted section groups (e.g. ("section_00", "section_01")) and a bool
      array (len(groups), len(class_names)), True where the class is in the group. For the kinds
      "section" and "machine_section" every group has exactly its own class.
    """
    _, _, groups = _class_groups(class_names)
    group_names = tuple(sorted(set(groups)))
    mask = np.asarray(group_names)[:, None] == np.asarray(groups)[None, :]
    return group_names, mask


def encode(keys: Sequence[str], class_names: Sequence[str], unknown: str = "raise") -> np.ndarray:
    """Class index of each key.

    Args:
      keys: (clips,) class keys from `class_keys`.
      class_names: from `build_classes`.
      unknown: what a key that is not a class gets (module docstring): "raise" an error, or
        "section": -1, allowed only when its section group has training classes.
    Returns:
      (clips,) int32 index into `class_names`, or -1 (unknown="section" only).
    Raises:
      ValueError: unknown policy, keys of another kind than the classes, or keys that are not
        classes (unknown="raise") or whose section group has no class; the message lists them.
    """
    if unknown not in UNKNOWN_POLICIES:
        raise ValueError(f"unknown={unknown!r} is not one of {UNKNOWN_POLICIES}")
    class_names, kind, class_groups = _class_groups(class_names)
    index = {name: position for position, name in enumerate(class_names)}
    if not len(keys):
        return np.zeros((0,), np.int32)
    keys, key_kind, key_groups = _parse_keys(keys, "keys")
    if key_kind != kind:
        raise ValueError(f"keys are of kind {key_kind!r} but the classes of kind {kind!r}, e.g. "
                         f"{keys[0]!r} vs {class_names[0]!r}")
    codes = np.array([index.get(key, -1) for key in keys], np.int32)
    unseen = sorted({keys[clip] for clip in np.flatnonzero(codes < 0)})
    if unseen and unknown == "raise":
        raise ValueError(f"{len(unseen)} key(s) are not training classes: {_quoted(unseen)}; "
                         "pass unknown='section' to score them against their section's classes")
    trained_groups = set(class_groups)
    untrained = sorted({group for group in key_groups if group not in trained_groups})
    if untrained:
        raise ValueError(f"section group(s) {_quoted(untrained)} have no training class, so their "
                         f"clips cannot be scored; trained: {_quoted(sorted(trained_groups))}")
    return codes


def true_class_mask(keys: Sequence[str], class_names: Sequence[str],
                    unknown: str = "raise") -> np.ndarray:
    """The candidate true classes of each clip, for the negative-logit score.

    A key that is a class has itself as the only candidate; with unknown="section" a key that is
    not gets every class of its section group (the score then uses the largest probability among
    the candidates, see the module docstring).

    Returns:
      (clips, len(class_names)) bool, at least one True per row.
    Raises:
      ValueError: as `encode`.
    """
    codes = encode(keys, class_names, unknown)
    group_names, group_mask = section_class_mask(class_names)
    mask = np.zeros((len(codes), len(class_names)), bool)
    seen = codes >= 0
    mask[np.flatnonzero(seen), codes[seen]] = True
    group_row = {group: row for row, group in enumerate(group_names)}
    for clip in np.flatnonzero(~seen):
        mask[clip] = group_mask[group_row[_parse_key(str(keys[clip]))[1]]]
    return mask
