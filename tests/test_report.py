"""mdg.report end to end on synthetic inputs: files, HTML in headless Chromium, TensorBoard events."""
import logging
import os
import pathlib
import shutil
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from mdg import report
from mdg.report import html, plots, tensorboard

import report_inputs

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


def _write_all(tmp_path, **kwargs):
    run = report_inputs.make_run(tmp_path)
    written = report.write_all(run.results_dir, run.workdir, run.clips, run.scores, run.decisions,
                               run.embeddings, "ae", run.data_root, **kwargs)
    return run, written


def _events(directory: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar under directory, read back by TensorBoard's own event reader."""
    accumulator = event_accumulator.EventAccumulator(str(directory))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def test_write_all_end_to_end(tmp_path):
    run, written = _write_all(tmp_path)
    results = run.results_dir
    assert written["clips"] == [results / "clips.parquet"]
    names = sorted(p.name for p in written["plots"])
    assert names == sorted(f"{m}_{kind}.png" for m in report_inputs.SECTIONS
                           for kind in ("roc", "scores", "embedding", "training"))
    for path in written["plots"]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (results / "report.html").read_text()
    assert written["report"] == [results / "report.html"]
    assert page.count('src="data:image/png;base64,') == len(written["plots"])
    # one worst-normal and one best-anomalous clip per labelled section and method, all small WAVs
    num_sections = sum(len(s) for s in report_inputs.SECTIONS.values())
    assert page.count('src="data:audio/wav;base64,') == 2 * num_sections * len(report_inputs.METHODS)
    for method, summary in run.summaries.items():
        assert f"{100 * summary['official_score']:.2f}" in page
    # the highest-scored normal test clip of fan section 00 under mse is named in the page
    clips = run.clips
    rows = np.flatnonzero((clips["split"] == "test") & (clips["machine"] == "fan")
                          & (clips["section"] == 0) & (clips["label"] == 0))
    assert clips["file_name"][rows[np.argmax(run.scores["mse"][rows])]] in page

    events = _events(tensorboard.logdir(run.workdir))
    for method, summary in run.summaries.items():
        assert events[f"final/official_score/{method}"] == [(0, pytest.approx(summary["official_score"]))]
        assert events[f"final/hmean_auc_target/{method}"] == [
            (0, pytest.approx(summary["harmonic_mean"]["auc_target"]))]


def test_audio_cap_and_missing_wavs(tmp_path):
    run, _ = _write_all(tmp_path, audio_budget_bytes=20_000)
    page = (run.results_dir / "report.html").read_text()
    wav_bytes = (run.data_root / "fan" / "test").iterdir().__next__().stat().st_size
    assert page.count("data:audio/wav") == 20_000 // wav_bytes
    assert "report audio cap reached" in page
    shutil.rmtree(run.data_root)
    html.write_report_html(run.results_dir, [])
    page = (run.results_dir / "report.html").read_text()
    assert "data:audio/wav" not in page and "WAV not on disk" in page


def test_without_matplotlib_one_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    plots._pyplot.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            run, written = _write_all(tmp_path / "a")
            report.write_all(run.results_dir, run.workdir, run.clips, run.scores, run.decisions,
                             run.embeddings, "ae", run.data_root)
    finally:
        plots._pyplot.cache_clear()
    assert written["plots"] == [] and not (run.results_dir / "plots").exists()
    assert (run.results_dir / "report.html").exists() and (run.results_dir / "clips.parquet").exists()
    warnings = [r for r in caplog.records if "matplotlib" in r.getMessage()]
    assert len(warnings) == 1


def test_scalar_writer_round_trip(tmp_path):
    directory = tmp_path / "tensorboard"
    with tensorboard.ScalarWriter(directory) as writer:
        assert writer.enabled
        for step in (10, 20, 30):
            for unit, scale in (("fan", 1.0), ("valve", 2.0)):
                writer.write(step, {"loss": scale / step, "val_loss": None, "learning_rate": 1e-3,
                                    "samples_per_s": float("nan")}, unit)
        writer.write(10, {"compile_s": 1.5}, "fan")
    events = _events(directory)
    assert events["loss/valve"] == [(s, pytest.approx(2.0 / s)) for s in (10, 20, 30)]
    assert events["learning_rate/fan"] == [(s, pytest.approx(1e-3)) for s in (10, 20, 30)]
    assert events["compile_s/fan"] == [(10, 1.5)]
    assert not any(tag.startswith(("val_loss", "samples_per_s")) for tag in events)  # None / NaN skipped
    disabled = tmp_path / "off"
    with tensorboard.ScalarWriter(disabled, enabled=False) as writer:
        writer.write(1, {"loss": 1.0}, "fan")
    assert not disabled.exists()


def _browser_tools() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = ("headless Chromium not installed (Debian: apt-get install -y chromium chromium-driver; "
              ".ci/run installs it)")
    if os.environ.get("CI"):
        pytest.fail(reason + ": CI must run the browser test")
    pytest.skip(reason)


def test_report_renders_in_headless_chromium(tmp_path):
    chromium, driver_path = _browser_tools()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    run, written = _write_all(tmp_path / "run")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={tmp_path / 'profile'}",):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_script_timeout(30)
        driver.get((run.results_dir / "report.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);")
        tables = driver.execute_script(
            "return Array.from(document.querySelectorAll('table')).map(t => t.rows.length);")
        audio = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const players = Array.from(document.querySelectorAll('audio'));
            Promise.all(players.map(a => new Promise(resolve => {
              const report = () => resolve([a.readyState, a.error && a.error.code, a.duration]);
              if (a.readyState >= 1 || a.error) { report(); return; }
              a.addEventListener('loadedmetadata', report);
              a.addEventListener('error', report);
              a.load();
            }))).then(done);""")
        console = driver.get_log("browser")
    finally:
        driver.quit()
    assert len(images) == len(written["plots"])
    for alt, complete, width in images:
        assert complete and width > 0, f"image {alt} did not load"
    # official score, per-section table, clips to listen to
    num_methods = len(report_inputs.METHODS)
    num_sections = sum(len(s) for s in report_inputs.SECTIONS.values())
    assert tables == [1 + num_methods, 1 + num_sections, 1 + 2 * num_sections * num_methods]
    assert len(audio) == 2 * num_sections * num_methods
    for ready_state, error, duration in audio:
        assert error is None and ready_state >= 1
        assert duration == pytest.approx(report_inputs.CLIP_SECONDS, abs=1e-3)
    problems = [entry for entry in console if entry["level"] in ("SEVERE", "WARNING")]
    assert not problems, problems
