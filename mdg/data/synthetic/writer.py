"""Writes the synthetic dataset tree: WAVs, attribute CSVs and a manifest, atomically per machine type.

Layout written (identical to the real development set)::

    <out>/<machine>/train/section_XX_<source|target>_train_normal_NNNN_<attributes>.wav
    <out>/<machine>/test/section_XX_<source|target>_test_<normal|anomaly>_NNNN_<attributes>.wav
    <out>/<machine>/attributes_XX.csv   header file_name,d1p,d1v[,d2p,d2v]; one row per clip,
                                        file_name = <machine>/<split>/<name>.wav
    <out>/<machine>/.synthetic.json     manifest (generator version and settings), written last

Interrupted runs: each machine type is written into a hidden temporary folder
``<out>/.<machine>.partial-<host>-<pid>-*`` that is renamed to ``<out>/<machine>`` only after every
WAV, CSV and the manifest (written last) are in place. A machine folder therefore exists only when
complete; a partial folder left by a killed process of this host is deleted by the next run. An
existing folder whose manifest matches the request is reused as it is.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import multiprocessing
import os
import pathlib
import shutil
import socket
import tempfile
from typing import Sequence

import soundfile
import tqdm

from mdg import preemption
from mdg.data.layout import MIMII_DG_MACHINE_TYPES
from mdg.data.synthetic import clips, domain_shifts

MANIFEST_NAME = ".synthetic.json"
# Clips per unit of work (and per progress-bar step) when writing a machine type.
_CHUNK_CLIPS = 32


def _clip_plan(sections: Sequence[int], num_source_train: int, num_target_train: int,
               num_test: int) -> list[tuple[int, str, str, str, int]]:
    """(section, domain, split, label, index) of every clip of one machine type, in write order."""
    plan = []
    for section in sections:
        for domain, count in (("source", num_source_train), ("target", num_target_train)):
            plan += [(section, domain, "train", "normal", i) for i in range(count)]
        for domain in clips.DOMAINS:
            for label in clips.LABELS:
                plan += [(section, domain, "test", label, i) for i in range(num_test)]
    return plan


def _write_attribute_csvs(machine_dir: pathlib.Path, machine: str, sections: Sequence[int],
                          rows: Sequence[tuple[int, str, str, tuple[tuple[str, str], ...]]]
                          ) -> None:
    """attributes_XX.csv per section from (section, split, name, attributes) rows: the train
    rows, then the test rows, each in name order (as in the real files)."""
    for section in sections:
        entries = [row[1:] for row in rows if row[0] == section]
        names = domain_shifts.SECTIONS[machine][section].attribute_names
        header = ["file_name"] + [f"d{i}{kind}" for i in range(1, len(names) + 1)
                                  for kind in ("p", "v")]
        ordered = sorted(entries, key=lambda e: (e[0] != "train", e[1]))
        with open(machine_dir / f"attributes_{section:02d}.csv", "w", newline="",
                  encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            for split, name, attributes in ordered:
                writer.writerow([f"{machine}/{split}/{name}"]
                                + [cell for pair in attributes for cell in pair])


def _write_clips(machine_dir: pathlib.Path, machine: str,
                 jobs: Sequence[tuple[int, str, str, str, int]], settings: clips.RenderSettings
                 ) -> list[tuple[int, str, str, tuple[tuple[str, str], ...]]]:
    """Synthesizes and writes the clips `jobs` (see `_clip_plan`); returns their CSV rows as
    (section, split, file name, attributes)."""
    rows = []
    for section, domain, split, label, index in jobs:
        clip = clips.synthesize_clip(machine, section, domain, split, label, index,
                                     **dataclasses.asdict(settings))
        soundfile.write(machine_dir / split / clip.file_name, clip.pcm, settings.sample_rate,
                        subtype="PCM_16")
        rows.append((section, split, clip.file_name, clip.attributes))
    return rows


def _write_machine(machine_dir: pathlib.Path, machine: str, sections: Sequence[int],
                   settings: clips.RenderSettings, sizes: Sequence[int], progress: bool,
                   workers: int) -> None:
    """Writes one machine type's WAVs and attribute CSVs into `machine_dir`."""
    plan = _clip_plan(sections, *sizes)
    for split in ("train", "test"):
        (machine_dir / split).mkdir()
    chunks = [plan[i:i + _CHUNK_CLIPS] for i in range(0, len(plan), _CHUNK_CLIPS)]
    args = (machine_dir, machine)
    rows = []
    with tqdm.tqdm(total=len(plan), desc=machine, unit="clip", disable=not progress,
                   dynamic_ncols=True) as bar:
        if workers <= 1:
            for chunk in chunks:
                rows += _write_clips(*args, chunk, settings)
                bar.update(len(chunk))
        else:
            # "spawn": forking a process that has started JAX's threads is unsafe.
            pool = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"))
            try:
                # Submitting spawns the workers. A SIGTERM / Ctrl-C raised in the middle of a spawn
                # would leave a child reading a half-written start-up pipe (it dies with a
                # traceback): the signal is held until every submit returned, then raised.
                boundary = preemption.StepBoundary()
                try:
                    futures = {pool.submit(_write_clips, *args, chunk, settings): len(chunk)
                               for chunk in chunks}
                finally:
                    boundary.close()
                for future in concurrent.futures.as_completed(futures):
                    rows += future.result()
                    bar.update(futures[future])
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    _write_attribute_csvs(machine_dir, machine, sections, rows)


def _manifest(machine: str, sections: Sequence[int], sizes: Sequence[int],
              settings: clips.RenderSettings) -> dict:
    return {"generator": "mdg.data.synthetic", "version": clips.GENERATOR_VERSION, "machine": machine,
            "sections": list(sections),
            **dict(zip(("num_source_train", "num_target_train", "num_test"), sizes)),
            **dataclasses.asdict(settings)}


def read_manifest(machine_dir: str | os.PathLike) -> dict | None:
    """The manifest of a generated machine folder, or None if it has none (or an unreadable one)."""
    path = pathlib.Path(machine_dir) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _exists_error(final: pathlib.Path, existing: dict | None, manifest: dict) -> FileExistsError:
    what = ("was generated with other settings: " + json.dumps(existing) if existing
            else "has no synthetic-dataset manifest " + MANIFEST_NAME)
    return FileExistsError(
        f"{final} exists and {what}; requested {json.dumps(manifest)}. Pass overwrite=True "
        "(CLI: --overwrite) to replace it, or choose another folder.")


def _partial_prefix(machine: str) -> str:
    """Name prefix of this process's temporary folder for `machine`: host and PID tell whether
    a left-over folder's writer is still running."""
    return f".{machine}.partial-{socket.gethostname()}-{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _remove_stale_partials(out: pathlib.Path, machine: str) -> None:
    """Deletes the temporary folders of `machine` whose writer, a process of this host, is gone
    (killed runs). Folders of running processes, or of other hosts, are left alone."""
    host = socket.gethostname()
    for path in out.glob(f".{machine}.partial-*"):
        owner = path.name[len(f".{machine}.partial-"):].rsplit("-", 2)  # host, pid, random
        if (len(owner) == 3 and owner[0] == host and owner[1].isdigit()
                and not _process_alive(int(owner[1]))):
            shutil.rmtree(path, ignore_errors=True)


def _publish(partial: pathlib.Path, final: pathlib.Path, manifest: dict, overwrite: bool) -> None:
    """Renames the finished tree `partial` to `final` (atomic on one file system)."""
    if not final.exists():
        try:
            os.replace(partial, final)
            return
        except OSError:
            if not final.exists():
                raise
    # `final` exists: kept if another process has just written the same tree, else replaced.
    existing = read_manifest(final)
    if existing == manifest:
        return
    if not overwrite:
        raise _exists_error(final, existing, manifest)
    old = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    os.replace(final, old / final.name)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)


def check_machines(machines: Sequence[str]) -> None:
    """Raises ValueError unless `machines` is a non-empty subset of MIMII_DG_MACHINE_TYPES."""
    unknown = [m for m in machines if m not in domain_shifts.SECTIONS]
    if unknown or not machines:
        raise ValueError(f"unknown machine types {unknown} (or none given); expected a subset of "
                         f"{MIMII_DG_MACHINE_TYPES}")


def check_non_negative_integer(name: str, value: int) -> None:
    """Raises ValueError unless `value` (the argument `name`: a clip count or the seed) is an integer >= 0."""
    if int(value) != value or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def generate(out_dir: str | os.PathLike, machines: Sequence[str] = MIMII_DG_MACHINE_TYPES,
             sections: Sequence[int] = (0, 1, 2), num_source_train: int = 990,
             num_target_train: int = 10, num_test: int = 50, seed: int = 0,
             sample_rate: int = 16000, duration_s: float = 10.0, fault_severity: float = 1.0,
             snr_spread_db: float = domain_shifts.DEFAULT_SNR_SPREAD_DB, *,
             overwrite: bool = False, progress: bool = True, workers: int = 1) -> pathlib.Path:
    """Writes the synthetic dataset in the real MIMII DG / DCASE dev layout under `out_dir`.

    Args:
      out_dir: root folder; gets one `<machine>/` folder per machine type.
      machines: machine types, a subset of MIMII_DG_MACHINE_TYPES.
      sections: section numbers (0-2).
      num_source_train: normal source-domain training clips per section.
      num_target_train: normal target-domain training clips per section.
      num_test: test clips per (domain, label) and section, so 4 * num_test per section.
      seed: dataset seed; clip bytes depend only on it and the clip's coordinates.
      sample_rate: Hz.
      duration_s: clip length in seconds.
      fault_severity: scales every anomaly's intensity (`anomalies.at_severity`); 1 = the
        documented ranges. Only anomalous clips depend on it.
      snr_spread_db: standard deviation (dB) of each clip's machine-to-background ratio where no
        attribute sets it (`domain_shifts.render`).
      overwrite: replace machine folders made with other settings (or by something else);
        without it such a folder is an error.
      progress: show a tqdm progress bar per machine type.
      workers: processes writing clips in parallel (1: in this process). The output does not
        depend on it.
    Returns:
      `out_dir` as a path.
    Raises:
      ValueError: bad arguments.
      FileExistsError: `<out_dir>/<machine>` exists with other settings and not `overwrite`.
    """
    machines = tuple(machines)
    sections = tuple(int(s) for s in sections)
    check_machines(machines)
    if not sections or any(s not in (0, 1, 2) for s in sections) or len(set(sections)) < len(
            sections):
        raise ValueError(f"sections must be distinct values of 0, 1, 2, got {sections}")
    for name, value in (("num_source_train", num_source_train),
                        ("num_target_train", num_target_train), ("num_test", num_test),
                        ("seed", seed)):
        check_non_negative_integer(name, value)
    settings = clips.RenderSettings(int(seed), int(sample_rate), float(duration_s),
                                    float(fault_severity), float(snr_spread_db))
    sizes = (int(num_source_train), int(num_target_train), int(num_test))
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for machine in machines:
        final = out / machine
        manifest = _manifest(machine, sections, sizes, settings)
        _remove_stale_partials(out, machine)
        if final.exists():
            existing = read_manifest(final)
            if existing == manifest:
                continue
            if not overwrite:
                raise _exists_error(final, existing, manifest)
        partial = pathlib.Path(tempfile.mkdtemp(prefix=_partial_prefix(machine), dir=out))
        try:
            _write_machine(partial, machine, sections, settings, sizes, progress, workers)
            (partial / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n",
                                                 encoding="utf-8")
            _publish(partial, final, manifest, overwrite)
        finally:
            if partial.exists():
                shutil.rmtree(partial, ignore_errors=True)
    return out
