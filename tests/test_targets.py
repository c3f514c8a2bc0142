"""Tests for mdg.data.targets: key formats, classes, encoding, unseen keys, real DCASE 2023 CSVs."""
import csv

import numpy as np
import pytest

from mdg.data import layout, targets

DEV_MACHINES = ["ToyCar", "ToyTrain", "bearing", "fan", "gearbox", "slider", "valve"]
# Distinct attribute tuples among the 1000 training rows of attributes_00.csv (DCASE 2023 dev),
# counted by hand from the CSVs; the test below also recounts them with the csv module.
SECTION_ATTRIBUTE_CLASSES = {"ToyCar": 26, "ToyTrain": 26, "bearing": 22, "fan": 4,
                             "gearbox": 19, "slider": 18, "valve": 4}
# Test clips (of 200) whose attribute tuple no training clip has.
UNSEEN_TEST_CLIPS = {"ToyCar": 0, "ToyTrain": 0, "bearing": 48, "fan": 0, "gearbox": 26,
                     "slider": 52, "valve": 0}


def _object_array(rows):
    """An object array of tuples, as `tfds_builder.load_split` returns attribute columns."""
    array = np.empty(len(rows), dtype=object)
    for row, value in enumerate(rows):
        array[row] = tuple(value)
    return array


def _clips(machine, section, pairs):
    """Per-clip arrays in the shard loader's dtypes from (machine, section, pairs) lists."""
    return dict(machine=np.array(machine, dtype=str), section=np.array(section, np.int32),
                attribute_names=_object_array([[n for n, _ in p] for p in pairs]),
                attribute_values=_object_array([[v for _, v in p] for p in pairs]))


def _real_split(real_data, machine, split):
    """Name-parsed clips of one split of attributes_00.csv and the CSV's raw attribute cells."""
    path = real_data / "attributes" / machine / "attributes_00.csv"
    with open(path, newline="") as file:
        rows = [row for row in list(csv.reader(file))[1:] if row[0].split("/")[1] == split]
    clips = [layout.parse_clip_name(row[0].split("/")[2], machine, split) for row in rows]
    arrays = _clips([c.machine for c in clips], [c.section for c in clips],
                    [c.attributes for c in clips])
    return arrays, [tuple(row[1:]) for row in rows]


# ---------------------------------------------------------------- key formats


def test_key_formats():
    arrays = _clips(["ToyCar", "fan", "fan"], [0, 2, 11],
                    [[("car", "C2"), ("spd", "34V"), ("mic", "1")], [], [("m-n", "W")]])
    assert targets.class_keys("section", **arrays) == ["section_00", "section_02", "section_11"]
    assert targets.class_keys("section_attribute", **arrays) == [
        "section_00|car=C2|spd=34V|mic=1", "section_02|noAttribute", "section_11|m-n=W"]
    assert targets.class_keys("machine_section", **arrays) == [
        "ToyCar|section_00", "fan|section_02", "fan|section_11"]
    known = targets.class_keys("section_attribute", **arrays, attributes_known=[True, False, True])
    assert known[1] == "section_02|unknownAttribute"


# ---------------------------------------------------------------- "section" kind


def test_one_section_is_one_class():
    arrays = _clips(["fan"] * 4, [0] * 4, [[("m-n", v)] for v in "WXYW"])
    keys = targets.class_keys("section", **arrays)
    classes = targets.build_classes("section", keys)
    assert classes == ("section_00",)
    np.testing.assert_array_equal(targets.encode(keys, classes), np.zeros(4, np.int32))


def test_three_sections_match_numpy_unique():
    sections = np.random.default_rng(0).integers(0, 3, size=40)
    arrays = _clips(["valve"] * 40, sections, [[]] * 40)
    keys = targets.class_keys("section", **arrays)
    classes = targets.build_classes("section", keys)
    unique, inverse = np.unique(sections, return_inverse=True)
    assert classes == tuple(f"section_{s:02d}" for s in unique) == (
        "section_00", "section_01", "section_02")
    codes = targets.encode(keys, classes)
    assert codes.dtype == np.int32
    np.testing.assert_array_equal(codes, inverse)
    groups, mask = targets.section_class_mask(classes)
    assert groups == classes
    np.testing.assert_array_equal(mask, np.eye(3, dtype=bool))


def test_section_attribute_groups_by_section():
    arrays = _clips(["fan"] * 5, [1, 0, 1, 0, 0],
                    [[("m-n", "X")], [("m-n", "W")], [("m-n", "W")], [("m-n", "W")], []])
    classes = targets.build_classes("section_attribute",
                                    targets.class_keys("section_attribute", **arrays))
    assert classes == ("section_00|m-n=W", "section_00|noAttribute", "section_01|m-n=W",
                       "section_01|m-n=X")
    groups, mask = targets.section_class_mask(classes)
    assert groups == ("section_00", "section_01")
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [0, 0, 1, 1]])


def test_machine_section_across_types():
    arrays = _clips(["valve", "fan", "ToyCar", "fan", "valve", "fan"], [0, 1, 0, 0, 0, 1],
                    [[("pat", "00")], [], [], [("m-n", "W")], [("pat", "01")], []])
    keys = targets.class_keys("machine_section", **arrays)
    classes = targets.build_classes("machine_section", keys)
    # Plain code-point order: upper-case letters sort before lower-case ones.
    assert classes == ("ToyCar|section_00", "fan|section_00", "fan|section_01",
                       "valve|section_00")
    np.testing.assert_array_equal(targets.encode(keys, classes), [3, 2, 0, 1, 3, 2])
    with pytest.raises(ValueError, match=r"'gearbox\|section_00'.*no training class"):
        targets.encode(["gearbox|section_00"], classes, unknown="section")


# ---------------------------------------------------------------- unseen keys


def test_unseen_attribute_combination_policy():
    classes = ("section_00|car=A1", "section_00|car=B1", "section_01|car=A1")
    keys = ["section_00|car=B1", "section_00|car=Z9", "section_01|car=A1", "section_01|car=Q"]
    with pytest.raises(ValueError, match=r"2 key\(s\) are not training classes.*car=Q"):
        targets.encode(keys, classes)
    np.testing.assert_array_equal(targets.encode(keys, classes, unknown="section"), [1, -1, 2, -1])
    np.testing.assert_array_equal(targets.true_class_mask(keys, classes, unknown="section"),
                                  [[0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1]])


def test_unknown_attributes_of_evaluation_clips_use_their_section():
    train = _clips(["ToyTank"] * 3, [0, 0, 1], [[("car", "A1")], [("car", "B1")], []])
    classes = targets.build_classes("section_attribute",
                                    targets.class_keys("section_attribute", **train))
    names = ["section_00_0000.wav", "section_01_0001.wav",
             "section_01_source_test_normal_0002_noAttribute.wav"]
    known = [not layout.is_unlabelled_name(name) for name in names]
    assert known == [False, False, True]
    test = _clips(["ToyTank"] * 3, [0, 1, 1], [[], [], []])
    keys = targets.class_keys("section_attribute", **test, attributes_known=known)
    np.testing.assert_array_equal(targets.true_class_mask(keys, classes, unknown="section"),
                                  [[1, 1, 0], [0, 0, 1], [0, 0, 1]])
    with pytest.raises(ValueError, match="known attributes"):
        targets.build_classes("section_attribute", keys)


def test_section_unseen_in_training_is_an_error_under_both_policies():
    for policy in targets.UNKNOWN_POLICIES:
        with pytest.raises(ValueError, match="not training classes|no training class"):
            targets.encode(["section_00", "section_03"], ("section_00", "section_01"), policy)
        with pytest.raises(ValueError, match=r"'section_03'.*no training class"):
            targets.encode(["section_03|car=A1"], ("section_00|car=A1",), unknown="section")


# ---------------------------------------------------------------- determinism


def test_classes_do_not_depend_on_clip_order():
    pairs = [[("vel", str(v)), ("loc", loc)] for v in (8, 16) for loc in "AB"] + [[]]
    arrays = _clips(["bearing"] * 10, [0, 1] * 5, pairs * 2)
    keys = targets.class_keys("section_attribute", **arrays)
    classes = targets.build_classes("section_attribute", keys)
    assert list(classes) == sorted(set(keys))
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(keys))
        shuffled = [keys[i] for i in order]
        assert targets.build_classes("section_attribute", shuffled) == classes
        np.testing.assert_array_equal(targets.encode(shuffled, classes),
                                      targets.encode(keys, classes)[order])


# ---------------------------------------------------------------- real DCASE 2023 CSVs


def test_real_section_attribute_classes(real_data):
    for machine in DEV_MACHINES:
        train, train_cells = _real_split(real_data, machine, "train")
        test, test_cells = _real_split(real_data, machine, "test")
        assert len(train["section"]) == 1000 and len(test["section"]) == 200
        classes = targets.build_classes(
            "section_attribute", targets.class_keys("section_attribute", **train))
        assert len(classes) == SECTION_ATTRIBUTE_CLASSES[machine] == len(set(train_cells))
        assert all(name.startswith("section_00|") for name in classes)

        test_keys = targets.class_keys("section_attribute", **test)
        codes = targets.encode(test_keys, classes, unknown="section")
        unseen = [cells not in set(train_cells) for cells in test_cells]
        np.testing.assert_array_equal(codes < 0, unseen)
        assert sum(unseen) == UNSEEN_TEST_CLIPS[machine]
        for key, code in zip(test_keys, codes):
            assert code < 0 or classes[code] == key
        mask = targets.true_class_mask(test_keys, classes, unknown="section")
        # One section per machine type: an unseen combination's candidates are all classes.
        np.testing.assert_array_equal(mask.sum(axis=1),
                                      np.where(unseen, len(classes), 1))
        if sum(unseen):
            with pytest.raises(ValueError, match="not training classes"):
                targets.encode(test_keys, classes)


def test_real_machine_section_over_all_types(real_data):
    splits = [_real_split(real_data, machine, "train")[0] for machine in DEV_MACHINES]
    merged = {name: np.concatenate([split[name] for split in splits]) for name in splits[0]}
    keys = targets.class_keys("machine_section", **merged)
    classes = targets.build_classes("machine_section", keys)
    assert classes == tuple(f"{machine}|section_00" for machine in sorted(DEV_MACHINES))
    np.testing.assert_array_equal(np.bincount(targets.encode(keys, classes)), [1000] * 7)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("arrays, message", [
    (dict(machine=["fan"], section=[0, 1], attribute_names=[(), ()], attribute_values=[(), ()]),
     "differ in length"),
    (dict(machine=["fan"], section=[-1], attribute_names=[()], attribute_values=[()]),
     "non-negative int"),
    (dict(machine=["fan"], section=[0.0], attribute_names=[()], attribute_values=[()]),
     "non-negative int"),
    (dict(machine=["fan"], section=[0], attribute_names=[("a", "b")], attribute_values=[("1",)]),
     "2 attribute names"),
    (dict(machine=["fan"], section=[0], attribute_names=["car"], attribute_values=["A1"]),
     "sequence of str"),
    (dict(machine=["fan"], section=[0], attribute_names=[("car",)], attribute_values=[("A|1",)]),
     "contains one of"),
    (dict(machine=["fan"], section=[0], attribute_names=[("",)], attribute_values=[("1",)]),
     "non-empty str"),
])
def test_bad_clip_arrays(arrays, message):
    with pytest.raises(ValueError, match=message):
        targets.class_keys("section_attribute", **arrays)


def test_bad_machine_and_kind():
    arrays = dict(machine=["fan|x"], section=[0], attribute_names=[()], attribute_values=[()])
    with pytest.raises(ValueError, match="machine type 'fan|x'"):
        targets.class_keys("machine_section", **arrays)
    with pytest.raises(ValueError, match="class kind 'attribute'"):
        targets.class_keys("attribute", **arrays)


def test_bad_class_lists_and_policy():
    with pytest.raises(ValueError, match="of kind 'section', not 'machine_section'"):
        targets.build_classes("machine_section", ["section_00"])
    with pytest.raises(ValueError, match="mix class kinds"):
        targets.build_classes("section", ["section_00", "fan|section_00"])
    with pytest.raises(ValueError, match="not a class key"):
        targets.build_classes("section_attribute", ["section_00|car"])
    with pytest.raises(ValueError, match="no training keys"):
        targets.build_classes("section", [])
    with pytest.raises(ValueError, match="repeat 'section_00'"):
        targets.encode(["section_00"], ("section_00", "section_00"))
    with pytest.raises(ValueError, match="kind 'machine_section' but the classes of kind"):
        targets.encode(["fan|section_00"], ("section_00",))
    with pytest.raises(ValueError, match="unknown='nearest'"):
        targets.encode(["section_00"], ("section_00",), unknown="nearest")
