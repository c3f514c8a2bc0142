"""Tests for mdg.data.layout: real DCASE 2023 names and CSVs, synthetic names, bad input."""
import csv
import dataclasses
import os
import pathlib

import pytest

from mdg.data import layout
from mdg.data.layout import LayoutError

DEV_MACHINES = ["ToyCar", "ToyTrain", "bearing", "fan", "gearbox", "slider", "valve"]
ADDITIONAL_MACHINES = ["ToyDrone", "ToyNscale", "ToyTank", "Vacuum", "bandsaw", "grinder", "shaker"]


def _csv_rows(path):
    """The CSV read with the csv module alone: (file_name cell, pairs) per data row."""
    with open(path, newline="") as file:
        rows = list(csv.reader(file))[1:]
    return [(row[0], tuple(zip(row[1::2], row[2::2]))) for row in rows]


# ---------------------------------------------------------------- real DCASE 2023 data


@pytest.mark.parametrize("machine", DEV_MACHINES)
def test_every_row_of_real_attribute_csv_parses(real_data, machine):
    path = real_data / "attributes" / machine / "attributes_00.csv"
    attributes = layout.read_attributes_csv(path, machine=machine)
    rows = _csv_rows(path)
    assert len(attributes) == len(rows) == 1200
    for cell, pairs in rows:
        folder_machine, split, name = cell.split("/")
        assert folder_machine == machine
        clip = layout.parse_clip_name(name, machine, split)
        # The dev CSVs list exactly the pairs spelled in the name.
        assert clip.attributes == pairs == attributes[name]
        source, target = "_source_" in name, "_target_" in name
        assert clip.domain == ("source" if source else "target") and source != target
        assert clip.label == (1 if "_anomaly_" in name else 0)
        assert clip.section == 0 and clip.split == split
        assert f"_{clip.index:04d}_" in name


def test_real_attribute_csv_values_keep_their_spelling(real_data):
    slider = layout.read_attributes_csv(real_data / "attributes/slider/attributes_00.csv")
    assert slider["section_00_source_train_normal_0001_vel_500_ac_0.30.wav"] == (
        ("vel", "500"), ("ac", "0.30"))
    valve = layout.read_attributes_csv(real_data / "attributes/valve/attributes_00.csv")
    assert valve["section_00_source_train_normal_0000_pat_00.wav"] == (("pat", "00"),)


def test_every_real_clip_parses_and_agrees_with_its_csv(real_dataset):
    root = real_dataset.root / "dev_data"
    assert layout.list_machine_types(root) == DEV_MACHINES
    total = 0
    for machine in DEV_MACHINES:
        clips = layout.scan_split(root, machine, "train") + layout.scan_split(root, machine, "test")
        on_disk = sorted(p.name for p in (root / machine).glob("*/*.wav"))
        assert sorted(clip.file_name for clip in clips) == on_disk
        for clip in clips:
            assert clip.machine == machine and os.path.isfile(clip.path)
            assert pathlib.Path(clip.path).parent.name == clip.split
            assert clip.split == "test" or clip.label == 0
        csv_path = real_dataset.root / "attributes" / machine / "attributes_00.csv"
        attributes = layout.read_attributes_csv(csv_path, machine=machine)
        layout.check_attributes(clips, attributes, csv_path)
        for clip in clips:
            assert clip.attributes == attributes[clip.file_name]
        total += len(clips)
    assert total == real_dataset.num_clips


def test_scan_split_is_sorted(real_dataset):
    root = real_dataset.root / "dev_data"
    for machine in DEV_MACHINES:
        for split in ("train", "test"):
            names = [clip.file_name for clip in layout.scan_split(root, machine, split)]
            assert names == sorted(p.name for p in (root / machine / split).glob("*.wav"))


def test_check_attributes_reports_real_clip_that_disagrees(real_data):
    machine = "gearbox"
    csv_path = real_data / "attributes" / machine / "attributes_00.csv"
    attributes = dict(layout.read_attributes_csv(csv_path))
    clip = layout.scan_split(real_data / "dev_data", machine, "test")[0]
    attributes[clip.file_name] = (("volt", "1.5"), ("wt", "999"))
    with pytest.raises(LayoutError, match=r"(?s)attributes_00\.csv.*" + clip.file_name + ".*wt"):
        layout.check_attributes([clip], attributes, csv_path)


def test_check_attributes_missing_row_strict_and_lenient(real_data, caplog):
    clips = layout.scan_split(real_data / "dev_data", "valve", "train")
    with pytest.raises(LayoutError, match="no row"):
        layout.check_attributes(clips, {}, "attributes_00.csv")
    layout.check_attributes(clips, {}, "attributes_00.csv", strict=False)
    assert "no row in attributes_00.csv" in caplog.text


@pytest.mark.parametrize("machine", ADDITIONAL_MACHINES)
def test_irregular_additional_train_csvs(real_data, machine):
    path = real_data / "attributes_additional_train" / machine / "attributes_00.csv"
    attributes = layout.read_attributes_csv(path, machine=machine)
    assert len(attributes) == 1000
    assert all(name.endswith(".wav") and "/" not in name for name in attributes)
    clips = [layout.parse_clip_name(name, machine, "train") for name in attributes]
    assert all(clip.split == "train" and clip.label == 0 for clip in clips)
    # 'speed' columns for 'spd' names, missing columns and unordered rows are all consistent.
    layout.check_attributes(clips, attributes, path)


def test_irregular_additional_train_csv_contents(real_data):
    folder = real_data / "attributes_additional_train"
    drone = layout.read_attributes_csv(folder / "ToyDrone/attributes_00.csv")
    name = "section_00_source_train_normal_0001_car_A1_spd_3_mic_1.wav"
    assert drone[name] == (("car", "A1"), ("speed", "3"), ("mic", "1"))
    assert layout.parse_clip_name(name, "ToyDrone", "train").attributes == (
        ("car", "A1"), ("spd", "3"), ("mic", "1"))
    tank = layout.read_attributes_csv(folder / "ToyTank/attributes_00.csv")
    assert tank["section_00_source_train_normal_0001_car_A1_spd_4_mic_1.wav"] == (
        ("car", "A1"), ("speed", "4"))
    vacuum = layout.read_attributes_csv(folder / "Vacuum/attributes_00.csv")
    assert vacuum["section_00_source_train_normal_0001_car_A1_spd_M_mic_1.wav"] == (
        ("car", "A1"), ("mic", "1"))


def test_alias_does_not_hide_a_different_value(real_data):
    name = "section_00_source_train_normal_0001_car_A1_spd_3_mic_1.wav"
    clip = layout.parse_clip_name(name, "ToyDrone", "train")
    with pytest.raises(LayoutError, match=r"speed='4' but the name says speed='3'"):
        layout.check_attributes([clip], {name: (("car", "A1"), ("speed", "4"))}, "x.csv")
    with pytest.raises(LayoutError, match="nothing about 'noise'"):
        layout.check_attributes([clip], {name: (("noise", "6"),)}, "x.csv")


def test_attribute_name_mismatch_like_dcase2022_valve():
    # The DCASE 2022 evaluator's valve section 05 CSV lists v1pat for names that say v2pat.
    name = "section_05_source_test_normal_0001_v2pat_05.wav"
    clip = layout.parse_clip_name(name, "valve", "test")
    with pytest.raises(LayoutError, match=name):
        layout.check_attributes([clip], {name: (("v1pat", "05"),)}, "attributes_05.csv")


def test_check_attributes_ignores_rows_without_files_and_eval_names():
    eval_clip = layout.parse_clip_name("section_03_0000.wav", "fan", "test")
    layout.check_attributes(
        [eval_clip],
        {"section_03_0000.wav": (("m-n", "X"),), "section_03_0001.wav": (("m-n", "W"),)},
        "attributes_03.csv")


# ---------------------------------------------------------------- synthetic names


@pytest.mark.parametrize("name, expected", [
    ("section_00_source_train_normal_0000_m-n_W.wav",
     dict(section=0, domain="source", split="train", label=0, index=0,
          attributes=(("m-n", "W"),))),
    ("section_01_target_test_anomaly_0003_f-n_B.wav",
     dict(section=1, domain="target", split="test", label=1, index=3,
          attributes=(("f-n", "B"),))),
    ("section_02_target_train_normal_0009_vel_6_loc_A.wav",
     dict(section=2, domain="target", split="train", label=0, index=9,
          attributes=(("vel", "6"), ("loc", "A")))),
    ("section_03_source_test_normal_0000_car_G2_spd_34V_mic_1_noise_6.wav",
     dict(section=3, domain="source", split="test", label=0, index=0,
          attributes=(("car", "G2"), ("spd", "34V"), ("mic", "1"), ("noise", "6")))),
    ("section_00_source_test_normal_0027_vel_730_ac_0.11.wav",
     dict(section=0, domain="source", split="test", label=0, index=27,
          attributes=(("vel", "730"), ("ac", "0.11")))),
    ("section_00_source_test_normal_0026_volt_1.5_wt_150.wav",
     dict(attributes=(("volt", "1.5"), ("wt", "150")))),
    ("section_00_target_test_anomaly_0044_pat_03.wav",
     dict(label=1, attributes=(("pat", "03"),))),
    ("section_00_source_train_normal_0835_car_C2_spd_34V_mic_1.wav",
     dict(index=835, attributes=(("car", "C2"), ("spd", "34V"), ("mic", "1")))),
    ("section_00_source_train_normal_0000_noAttribute.wav", dict(attributes=())),
    ("section_00_source_train_normal_0000.wav", dict(attributes=())),
    ("section_00_source_train_normal_0001_temp_-5_gain_-0.5.wav",
     dict(attributes=(("temp", "-5"), ("gain", "-0.5")))),
])
def test_labelled_names(name, expected):
    split = expected.get("split", "test" if "_test_" in name else "train")
    clip = layout.parse_clip_name(name, "machine", split, path=f"/data/machine/{split}/{name}")
    for field, value in expected.items():
        assert getattr(clip, field) == value, field
    assert clip.file_name == name and clip.path == f"/data/machine/{split}/{name}"


@pytest.mark.parametrize("name, section, index", [
    ("section_03_0000.wav", 3, 0), ("section_04_0123.wav", 4, 123),
    ("section_05_0199.wav", 5, 199), ("section_00_0042.wav", 0, 42)])
def test_unlabelled_eval_names(name, section, index):
    clip = layout.parse_clip_name(name, "ToyDrone", "test")
    assert (clip.section, clip.index, clip.domain, clip.label, clip.attributes) == (
        section, index, "unknown", -1, ())
    assert clip.path == name


@pytest.mark.parametrize("name, split, problem", [
    ("section_00_source_train_normal.wav", "train", "matches neither"),
    ("section_0_source_train_normal_0000_a_b.wav", "train", "matches neither"),
    ("section_00_sauce_train_normal_0000_a_b.wav", "train", "matches neither"),
    ("section_00_source_train_normal_0000_.wav", "train", "matches neither"),
    ("section_03_0000_extra.wav", "test", "matches neither"),
    ("recording.wav", "train", "matches neither"),
    ("section_00_source_train_normal_0000_a_b.WAV", "train", "not a .wav"),
    ("section_00_source_train_normal_0000_car_A1_spd.wav", "train", "odd number"),
    ("section_00_source_train_normal_0000_car__A1.wav", "train", "empty"),
    ("section_00_source_train_normal_0000_a_b.wav", "test", "split 'train'"),
    ("section_00_source_train_anomaly_0000_a_b.wav", "train", "anomalous"),
    ("section_03_0000.wav", "train", "unlabelled"),
])
def test_bad_names_name_the_file(name, split, problem):
    with pytest.raises(LayoutError, match=problem) as error:
        layout.parse_clip_name(name, "fan", split, path=f"/x/fan/{split}/{name}")
    assert f"/x/fan/{split}/{name}" in str(error.value)


def test_clip_rejects_invalid_fields():
    with pytest.raises(ValueError, match="domain"):
        layout.Clip("a.wav", "fan", 0, "both", "test", 0, 0)
    with pytest.raises(ValueError, match="label"):
        layout.Clip("a.wav", "fan", 0, "source", "test", 2, 0)


# ---------------------------------------------------------------- folders


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_scan_split_skip_policy_and_non_wav(tmp_path, caplog):
    folder = tmp_path / "fan" / "train"
    good = ["section_00_source_train_normal_0001_m-n_W.wav",
            "section_00_source_train_normal_0000_m-n_X.wav"]
    for name in good + ["bad_name.wav", "._section_00_source_train_normal_0000_m-n_X.wav",
                        "notes.txt", "attributes_00.csv"]:
        _touch(folder / name)
    (folder / "subfolder.wav").mkdir()
    with pytest.raises(LayoutError, match="bad_name.wav"):
        layout.scan_split(tmp_path, "fan", "train")
    clips = layout.scan_split(tmp_path, "fan", "train", on_error="skip")
    assert [clip.file_name for clip in clips] == sorted(good)
    assert [clip.path for clip in clips] == [str(folder / name) for name in sorted(good)]
    assert "bad_name.wav" in caplog.text
    with pytest.raises(ValueError, match="on_error"):
        layout.scan_split(tmp_path, "fan", "train", on_error="ignore")


def test_missing_folders(tmp_path):
    with pytest.raises(LayoutError, match=r"valve.test.*missing"):
        layout.scan_split(tmp_path, "valve", "test")
    with pytest.raises(LayoutError, match="root folder missing"):
        layout.list_machine_types(tmp_path / "nowhere")
    with pytest.raises(LayoutError, match="no machine-type folders"):
        layout.list_machine_types(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "slider" / "test").mkdir(parents=True)
    (tmp_path / "fan" / "train").mkdir(parents=True)
    _touch(tmp_path / "README.txt")
    assert layout.list_machine_types(tmp_path) == ["fan", "slider"]


# ---------------------------------------------------------------- CSV reader edge cases


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_read_attributes_csv_tolerated_irregularities(tmp_path):
    path = _write(tmp_path / "a.csv", (
        "\ufefffile_name,d1p,d1v,d2p,d2v,file_name_with_full_attributes\n"
        "valve/test/section_05_0001.wav,v1pat,05,,,valve/test/full.wav\n"
        "valve/test/section_05_0000.wav,v1pat,05,v2pat,05\n"
        "\n"
        "section_05_source_test_normal_0002_v1pat_04,v1pat,04,,,,,\n"
        "valve/test/section_05_0000.wav,v1pat,05,v2pat,05\n"))
    assert layout.read_attributes_csv(path, machine="valve") == {
        "section_05_0001.wav": (("v1pat", "05"),),
        "section_05_0000.wav": (("v1pat", "05"), ("v2pat", "05")),
        "section_05_source_test_normal_0002_v1pat_04.wav": (("v1pat", "04"),),
    }


@pytest.mark.parametrize("text, problem", [
    ("", "empty file"),
    ("name,d1p,d1v\na.wav,x,1\n", "does not start with 'file_name'"),
    ("file_name,d1p,d1v,d2p\na.wav,x,1,y\n", "only one of d2p/d2v"),
    ("file_name,d1p,d1v\na.wav,x,1,y\n", "line 2: 4 cells"),
    ("file_name,d1p,d1v\na.wav,x,\n", "line 2: column d1p='x' but d1v=''"),
    ("file_name,d1p,d1v\na.wav,,1\n", "line 2: column d1p='' but d1v='1'"),
    ("file_name,d1p,d1v\na.wav,x,1\na.wav,x,2\n", "lines 2 and 3"),
    ("file_name,d1p,d1v\nfan/train/a.wav,x,1\n", "belongs to machine type 'fan'"),
    ("file_name,d1p,d1v\nvalve/eval/a.wav,x,1\n", "split folder 'eval'"),
    ("file_name,d1p,d1v\nvalve/a.wav,x,1\n", "is not '<name>"),
    ("file_name,d1p,d1v\n,x,1\n", "is not '<name>"),
    ("file_name,d1p,d1v,d1p\na.wav,x,1,y\n", "repeats column"),
])
def test_read_attributes_csv_errors(tmp_path, text, problem):
    path = _write(tmp_path / "attributes_00.csv", text)
    with pytest.raises(LayoutError, match=problem) as error:
        layout.read_attributes_csv(path, machine="valve")
    assert str(path) in str(error.value)


def test_read_attributes_csv_missing_and_binary(tmp_path):
    with pytest.raises(LayoutError, match="missing"):
        layout.read_attributes_csv(tmp_path / "attributes_00.csv")
    path = tmp_path / "binary.csv"
    path.write_bytes(b"file_name,d1p\xff\xfe\x00")
    with pytest.raises(LayoutError, match="cannot read"):
        layout.read_attributes_csv(path)


# ---------------------------------------------------------------- evaluator ground truth


def _write_ground_truth(root, machine, section, labels, domains):
    for folder, values in (("ground_truth_data", labels), ("ground_truth_domain", domains)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        lines = "".join(f"section_{section:02d}_{i:04d}.wav,{v}\n" for i, v in enumerate(values))
        (root / folder / f"ground_truth_{machine}_section_{section:02d}_test.csv").write_text(lines)


def _eval_clips(machine, section, count):
    return [layout.parse_clip_name(f"section_{section:02d}_{i:04d}.wav", machine, "test",
                                   path=f"/eval/{machine}/test/section_{section:02d}_{i:04d}.wav")
            for i in range(count)]


def test_read_eval_ground_truth(tmp_path):
    _write_ground_truth(tmp_path, "fan", 3, [0, 0, 1, 1], [0, 1, 0, 1])
    _write_ground_truth(tmp_path, "fan", 4, [1, 0], [1, 1])
    clips = _eval_clips("fan", 4, 2) + _eval_clips("fan", 3, 4)
    filled = layout.read_eval_ground_truth(tmp_path, "fan", clips)
    assert [c.path for c in filled] == [c.path for c in clips]
    assert [(c.section, c.label, c.domain) for c in filled] == [
        (4, 1, "target"), (4, 0, "target"),
        (3, 0, "source"), (3, 0, "target"), (3, 1, "source"), (3, 1, "target")]
    assert all(dataclasses.replace(f, label=c.label, domain=c.domain) == c
               for f, c in zip(filled, clips))


def test_read_eval_ground_truth_checks_labelled_names(tmp_path):
    _write_ground_truth(tmp_path, "fan", 0, [1], [0])
    (tmp_path / "ground_truth_data" / "ground_truth_fan_section_00_test.csv").write_text(
        "section_00_source_test_anomaly_0000_m-n_W.wav,1\n")
    (tmp_path / "ground_truth_domain" / "ground_truth_fan_section_00_test.csv").write_text(
        "section_00_source_test_anomaly_0000_m-n_W.wav,1\n")
    clip = layout.parse_clip_name("section_00_source_test_anomaly_0000_m-n_W.wav", "fan", "test")
    with pytest.raises(LayoutError, match="domain 'source' but the ground truth"):
        layout.read_eval_ground_truth(tmp_path, "fan", [clip])


@pytest.mark.parametrize("labels, domains, count, problem", [
    ([0, 1], [0, 1], 3, "section_03_0002.wav: no row"),
    ([0, 1, 1], [0, 1, 1], 2, "section_03_0002.wav: row for a file that is not among"),
    ([0, 2], [0, 1], 2, "line 2: expected '<wav name>,<0|1>'"),
    ([0, "x"], [0, 1], 2, "line 2"),
    ([0, 1], [0, "source"], 2, "line 2"),
])
def test_read_eval_ground_truth_errors(tmp_path, labels, domains, count, problem):
    _write_ground_truth(tmp_path, "valve", 3, labels, domains)
    with pytest.raises(LayoutError, match=problem) as error:
        layout.read_eval_ground_truth(tmp_path, "valve", _eval_clips("valve", 3, count))
    assert "ground_truth_valve_section_03_test.csv" in str(error.value)


def test_read_eval_ground_truth_missing_files_and_wrong_clips(tmp_path):
    clips = _eval_clips("slider", 5, 2)
    with pytest.raises(LayoutError, match=r"slider_section_05_test\.csv: file missing"):
        layout.read_eval_ground_truth(tmp_path, "slider", clips)
    _write_ground_truth(tmp_path, "slider", 5, [0, 1], [0, 1])
    (tmp_path / "ground_truth_domain" / "ground_truth_slider_section_05_test.csv").unlink()
    with pytest.raises(LayoutError, match=r"ground_truth_domain.*file missing"):
        layout.read_eval_ground_truth(tmp_path, "slider", clips)
    with pytest.raises(LayoutError, match="machine type 'slider', expected 'fan'"):
        layout.read_eval_ground_truth(tmp_path, "fan", clips)
    train_clip = layout.parse_clip_name("section_05_source_train_normal_0000_a_b.wav", "slider",
                                        "train")
    with pytest.raises(LayoutError, match="test clips only"):
        layout.read_eval_ground_truth(tmp_path, "slider", [train_clip])
