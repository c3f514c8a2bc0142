"""results/clips.parquet: round trip through pandas, agreement with the submission CSVs, PCA."""
import csv

import numpy as np
import pandas as pd
import pytest

from mdg.report import clips as clip_table

import report_inputs


@pytest.fixture
def run(tmp_path):
    return report_inputs.make_run(tmp_path)


def _write(run):
    table = clip_table.build_table(run.clips, run.scores, run.decisions, run.embeddings, "ae",
                                   run.data_root)
    return clip_table.write_table(run.results_dir / "clips.parquet", table)


def test_round_trip_through_pandas(run):
    path = _write(run)
    frame = pd.read_parquet(path, dtype_backend="numpy_nullable")
    n = len(run.clips["file_name"])
    assert len(frame) == n
    renumics = ["path", "section", "d1p", "d1v", "d2p", "d2v", "d3p", "d3v", "domain", "label",
                "class", "split"]
    for method in ("mse", "embedding_lof"):
        renumics += [f"anomaly_score_{method}", f"prediction_{method}", f"prediction_correct_{method}"]
    assert set(renumics + ["embeddings_ae", "projection_x", "projection_y"]) <= set(frame.columns)
    assert frame["file_name"].tolist() == run.clips["file_name"].tolist()
    assert frame["class"].tolist() == run.clips["machine"].tolist()
    assert frame["split"].tolist() == run.clips["split"].tolist()
    np.testing.assert_array_equal(frame["section"].to_numpy(), run.clips["section"])
    np.testing.assert_array_equal(frame["domain"].to_numpy(), run.clips["domain"])
    np.testing.assert_array_equal(frame["label"].to_numpy(), run.clips["label"])
    first = frame.iloc[0]
    assert first["path"] == str(run.data_root / "fan" / "train" / first["file_name"])
    assert (first["d1p"], first["d2p"], first["d2v"]) == ("spd", "mic", "1")
    valve = frame[frame["class"] == "valve"].iloc[0]
    assert valve["d1p"] == "v1pat" and valve["d1v"] == "02" and pd.isna(valve["d2p"])
    np.testing.assert_array_equal(frame["anomaly_score_embedding_lof"].to_numpy(), run.scores["lof"])
    np.testing.assert_array_equal(frame["prediction_mse"].to_numpy(), run.decisions["mse"])
    correct = (run.decisions["mse"] == run.clips["label"]).astype(int)
    np.testing.assert_array_equal(frame["prediction_correct_mse"].to_numpy(), correct)
    embedding = np.stack(frame["embeddings_ae"].to_numpy())
    assert embedding.shape == (n, clip_table.EMBEDDING_MAX_DIM) and embedding.dtype == np.float32


def test_scores_and_decisions_match_the_submission_csvs(run):
    columns, metadata = clip_table.read_table(_write(run))
    assert metadata["methods"] == {"mse": "mse", "lof": "embedding_lof"}
    checked = 0
    for method, suffix in metadata["methods"].items():
        for machine, sections in report_inputs.SECTIONS.items():
            for section in sections:
                rows = ((columns["split"] == "test") & (columns["class"] == machine)
                        & (columns["section"] == section))
                by_name = dict(zip(columns["file_name"][rows], zip(
                    columns[f"anomaly_score_{suffix}"][rows], columns[f"prediction_{suffix}"][rows])))
                method_dir = run.results_dir / method
                with open(method_dir / f"anomaly_score_{machine}_section_{section:02d}_test.csv") as f:
                    csv_scores = {name: float(value) for name, value in csv.reader(f)}
                with open(method_dir / f"decision_result_{machine}_section_{section:02d}_test.csv") as f:
                    csv_decisions = {name: int(value) for name, value in csv.reader(f)}
                assert set(csv_scores) == set(by_name) == set(csv_decisions)
                for name, (score, decision) in by_name.items():
                    assert score == csv_scores[name]  # bit-exact: both are the float64 score
                    assert decision == csv_decisions[name]
                    checked += 1
    assert checked == 2 * int((run.clips["split"] == "test").sum())


def test_unknown_labels_and_unscored_clips_are_null(run):
    clips = dict(run.clips)
    clips["label"] = np.where(clips["split"] == "test", -1, clips["label"])
    clips["domain"] = np.where(clips["split"] == "test", -1, clips["domain"])
    scores = dict(run.scores)
    scores["mse"] = np.where(clips["split"] == "train", np.nan, scores["mse"])
    table = clip_table.build_table(clips, scores, run.decisions, run.embeddings, "ae", None)
    frame = table.to_pandas()
    test = frame["split"] == "test"
    assert frame.loc[test, "label"].isna().all() and frame.loc[test, "domain"].isna().all()
    assert frame.loc[test, "prediction_correct_mse"].isna().all()
    assert frame.loc[~test, "prediction_mse"].isna().all()
    assert frame.loc[~test, "anomaly_score_mse"].isna().all()
    assert frame["path"].isna().all()


def test_bad_input_is_named(run):
    clips = dict(run.clips)
    clips["label"] = clips["label"].copy()
    clips["label"][3] = 2
    with pytest.raises(ValueError, match=run.clips["file_name"][3]):
        clip_table.build_table(clips, run.scores, run.decisions, run.embeddings, "ae", None)
    with pytest.raises(ValueError, match="embeddings must be"):
        clip_table.build_table(run.clips, run.scores, run.decisions, run.embeddings[:5], "ae", None)
    decisions = dict(run.decisions, mse=run.decisions["mse"] * 2)
    with pytest.raises(ValueError, match="not 0 or 1"):
        clip_table.build_table(run.clips, run.scores, decisions, run.embeddings, "ae", None)
    with pytest.raises(KeyError, match="section"):
        clip_table.build_table({k: v for k, v in run.clips.items() if k != "section"}, run.scores,
                               run.decisions, run.embeddings, "ae", None)
    bad = run.results_dir / "broken.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="broken.parquet"):
        clip_table.read_table(bad)


def test_embedding_reduction_against_numpy_svd():
    rng = np.random.default_rng(3)
    machine = np.array(["a"] * 40 + ["b"] * 30 + ["c"] * 1)
    wide = rng.standard_normal((71, 50))
    reduced = clip_table.reduce_embeddings(wide, machine)
    assert reduced.shape == (71, clip_table.EMBEDDING_MAX_DIM) and reduced.dtype == np.float32
    for name, width in (("a", 32), ("b", 29)):  # b: 30 clips span at most 29 centred directions
        rows = machine == name
        centred = wide[rows] - wide[rows].mean(axis=0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        reference = centred @ vt[:width].T
        # principal components are defined up to sign
        signs = np.sign(np.sum(reference * reduced[rows, :width], axis=0))
        np.testing.assert_allclose(reduced[rows, :width], reference * signs, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(reduced[rows, width:], 0.0)
    np.testing.assert_array_equal(reduced[machine == "c"], 0.0)  # one clip: no direction at all
    narrow = rng.standard_normal((71, 8))
    np.testing.assert_array_equal(clip_table.reduce_embeddings(narrow, machine), narrow.astype(np.float32))
    projection = clip_table.project_2d(narrow, machine)
    rows = machine == "a"
    centred = narrow[rows] - narrow[rows].mean(axis=0)
    expected = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    np.testing.assert_allclose(np.abs(projection[rows]), np.abs(expected), rtol=1e-4, atol=1e-5)
