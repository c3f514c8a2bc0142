"""The bad-input catalogue of docs/reliability.md: each input is either read correctly (a documented
accepted case, checked against an independent reader) or stops with an error naming the file and
the problem. Cases already covered elsewhere are listed in the table with their own tests."""

import os
import pathlib

import numpy as np
import pytest
import scipy.io.wavfile
import soundfile

from mdg import errors, evaluate, evaluate_csv
from mdg.data import audio, layout
from test_evaluate import dev_set  # noqa: F401  (fixture: a labelled test tree and its scores)

RATE = 16000
CLIP = "section_00_source_train_normal_0000_vel_1_loc_A.wav"


def samples(n=64):
    return 0.9 * np.sin(np.linspace(0, 20, n))


# ---------------------------------------------------------------- WAV encodings: accepted


def scipy_reference(path) -> np.ndarray:
    """Independent decoding to [-1, 1] (scipy): ints by their full scale, unsigned 8-bit offset by 128."""
    rate, data = scipy.io.wavfile.read(path)
    assert rate == RATE
    if data.dtype == np.uint8:
        return (data.astype(np.float64) - 128) / 128
    if data.dtype.kind == "i":  # 24-bit comes left-justified in int32
        return data.astype(np.float64) / (np.iinfo(data.dtype).max + 1)
    return data.astype(np.float64)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_encodings_are_accepted_and_scaled_to_unit_range(tmp_path, subtype):
    path = tmp_path / f"{subtype}.wav"
    soundfile.write(path, samples(), RATE, subtype=subtype)
    waveform = audio.read_wav(path)
    assert waveform.dtype == np.float32 and waveform.shape == (64,)
    np.testing.assert_allclose(waveform, scipy_reference(path), rtol=0, atol=1e-7)


# ---------------------------------------------------------------- WAV contents: errors


def write_header_only(path):
    soundfile.write(path, samples(), RATE, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:44])


def write_float(values):
    return lambda path: soundfile.write(path, np.asarray(values, np.float32), RATE, subtype="FLOAT")


WAV_ERRORS = {
    "8 kHz": (lambda p: soundfile.write(p, samples(), 8000), "sample rate 8000 Hz, expected 16000 Hz"),
    "header only": (write_header_only, r"empty \(0 samples\)"),
    "+inf float": (write_float([0.5, np.inf]), "not finite"),
    "-inf float": (write_float([-np.inf, 0.5]), "not finite"),
    "text named .wav": (lambda p: p.write_text("id,score\n1,0.5\n"), "unreadable or corrupt audio file"),
    "MP3-like bytes": (lambda p: p.write_bytes(b"ID3\x04\x00" + bytes(200)), "unreadable or corrupt audio file"),
}


@pytest.mark.parametrize("case", WAV_ERRORS)
def test_bad_wav_contents_name_the_file(tmp_path, case):
    write, problem = WAV_ERRORS[case]
    path = tmp_path / CLIP
    write(path)
    with pytest.raises(audio.AudioError, match=problem) as error:
        audio.read_wav(path)
    assert str(path) in str(error.value) and isinstance(error.value, errors.UserError)


# ---------------------------------------------------------------- the folder tree


def clip_tree(root: pathlib.Path, names=(CLIP,)) -> pathlib.Path:
    for name in names:
        (root / "fan" / "train").mkdir(parents=True, exist_ok=True)
        soundfile.write(root / "fan" / "train" / name, samples(), RATE, subtype="PCM_16")
    return root


@pytest.mark.parametrize("case, make, problem", [
    ("a folder named like a WAV", lambda p: p.mkdir(), "named like a WAV file but is a folder"),
    ("a broken symlink", lambda p: p.symlink_to(p.with_name("gone.wav")),
     "named like a WAV file but is a broken symlink"),
])
def test_wav_named_entries_that_are_not_files(tmp_path, caplog, case, make, problem):
    root = clip_tree(tmp_path)
    bad = root / "fan" / "train" / "section_00_source_train_normal_0001_vel_1_loc_A.wav"
    make(bad)
    with pytest.raises(layout.LayoutError, match=problem) as error:
        layout.scan_split(root, "fan", "train")
    assert str(bad) in str(error.value)
    kept = layout.scan_split(root, "fan", "train", on_error="skip")  # data.on_error=skip: logged, left out
    assert [c.file_name for c in kept] == [CLIP] and str(bad) in caplog.text


def test_symlinked_wavs_and_folders_are_followed(tmp_path):
    real = clip_tree(tmp_path / "real")
    linked = tmp_path / "linked"
    (linked / "fan" / "train").mkdir(parents=True)
    (linked / "fan" / "train" / CLIP).symlink_to(real / "fan" / "train" / CLIP)
    (tmp_path / "root_link").symlink_to(linked)
    clips = layout.scan_split(tmp_path / "root_link", "fan", "train")
    np.testing.assert_array_equal(audio.read_wav(clips[0].path), audio.read_wav(real / "fan" / "train" / CLIP))


def test_spaces_and_non_ascii_in_folders_and_attribute_values_are_accepted(tmp_path):
    names = ("section_00_source_train_normal_0000_vél_1_loc_A B.wav",
             "section_00_source_train_normal_0001_機械_2.wav")
    root = clip_tree(tmp_path / "my data" / "données", names)
    clips = layout.scan_split(root, "fan", "train")
    assert [c.attributes for c in clips] == [(("vél", "1"), ("loc", "A B")), (("機械", "2"),)]
    assert all(audio.read_wav(c.path).shape == (64,) for c in clips)


def test_a_space_in_the_fixed_part_of_a_name_is_an_error(tmp_path):
    root = clip_tree(tmp_path, ("section 00_source_train_normal_0000_a_1.wav",))
    with pytest.raises(layout.LayoutError, match="section 00_source_train_normal_0000_a_1.wav: file name matches neither"):
        layout.scan_split(root, "fan", "train")


def wavs_directly_in(root):
    clip_tree(root)
    os.rename(root / "fan" / "train" / CLIP, root / CLIP)
    (root / "fan" / "train").rmdir()
    (root / "fan").rmdir()


@pytest.mark.parametrize("case, make, found", [
    ("empty folder", lambda root: None, r"found nothing \(empty folder\)"),
    ("WAVs directly in the root", wavs_directly_in, f"found {CLIP}"),
    ("a dev_data wrapper folder", lambda root: clip_tree(root / "dev_data"), "found dev_data/"),
])
def test_data_root_with_the_wrong_layout_says_what_it_expected_and_found(tmp_path, case, make, found):
    root = tmp_path / "root"
    root.mkdir()
    make(root)
    with pytest.raises(layout.LayoutError, match=found) as error:
        layout.list_machine_types(root)
    assert str(root) in str(error.value) and "expected <root>/<machine>/train/" in str(error.value)


# ---------------------------------------------------------------- attribute CSVs


def test_attribute_csv_with_bom_crlf_and_repeated_identical_rows_is_accepted(tmp_path):
    rows = ["file_name,d1p,d1v", "fan/train/a.wav,vel,1", "fan/train/b.wav,vel,2", "fan/train/a.wav,vel,1"]
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(rows[:3]) + "\n", encoding="utf-8")
    windows = tmp_path / "windows.csv"
    windows.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n")
    assert layout.read_attributes_csv(windows, "fan") == layout.read_attributes_csv(plain, "fan") == {
        "a.wav": (("vel", "1"),), "b.wav": (("vel", "2"),)}


# ---------------------------------------------------------------- submission CSVs (evaluate_csv)


def rewrite_first_name(new_name):
    return lambda lines: [new_name(lines[0].split(",")[0]) + "," + lines[0].split(",")[1]] + lines[1:]


@pytest.mark.parametrize("edit, message", [
    (rewrite_first_name(lambda name: "../" + name), r":1: '\.\./section_01_.*' is not a test clip of fan section 01"),
    (rewrite_first_name(lambda name: "/data/fan/test/" + name), r":1: '/data/fan/test/section_01_.*' is not a test clip"),
    (lambda lines: [lines[0].split(",")[0] + ",inf\n"] + lines[1:], r":1: value 'inf' is not a finite number"),
    (lambda lines: [lines[0].split(",")[0] + ",-Infinity\n"] + lines[1:], r":1: value '-Infinity' is not a finite"),
    (lambda lines: [], "no row for 19 of the 19 test clips"),
    (lambda lines: lines[:3] + ["\n"] + lines[3:], r":4: expected .* got 0 field"),
])
def test_bad_submission_csvs_name_the_file_and_line(dev_set, tmp_path, edit, message):  # noqa: F811
    _, clips, test = dev_set
    evaluate.write_submission(tmp_path, test, evaluate.decide(test, 2.5))
    path = tmp_path / "anomaly_score_fan_section_01_test.csv"
    path.write_text("".join(edit(path.read_text().splitlines(keepends=True))))
    with pytest.raises(evaluate_csv.SubmissionError, match=message) as error:
        evaluate_csv.read_submission(tmp_path, clips)
    assert str(path) in str(error.value)


def test_submission_csvs_with_bom_and_crlf_are_accepted(dev_set, tmp_path):  # noqa: F811
    _, clips, test = dev_set
    evaluate.write_submission(tmp_path, test, evaluate.decide(test, 2.5))
    expected = evaluate_csv.read_submission(tmp_path, clips)[0].score
    for path in tmp_path.glob("*.csv"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    np.testing.assert_array_equal(evaluate_csv.read_submission(tmp_path, clips)[0].score, expected)


def test_hidden_folders_are_not_machine_types(tmp_path):
    """E.g. a concurrent run's half-generated synthetic machine type."""
    clip_tree(tmp_path)
    (tmp_path / ".fan.partial-host-123-abc" / "train").mkdir(parents=True)
    assert layout.list_machine_types(tmp_path) == ["fan"]
