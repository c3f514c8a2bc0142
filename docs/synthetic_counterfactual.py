"""Counterfactual clips: how a trained run scores its own test clips re-rendered in another environment.

Takes a finished run on the built-in synthetic data (``python -m mdg.main ... --workdir RUN``) and
writes its dataset again with the *source-domain test clips* re-rendered with environment values
replaced, e.g. the fan's noise level L1, L2 -> L3, L4 (the target values of fan section 02): the
same machine sound and attribute, anomaly and pool draws, only the environment rendered around it
differs (``synthesize_clip(environment_replace=...)``). A copy of the run's checkpoints then scores the
altered test set (``mdg.main`` resumes at the last step and only scores), and the script prints,
per machine type, score, section, domain and label, the median anomaly score of the run and of
the counterfactual. Sections whose attributes name a replaced dimension keep their clips, and so do
all training and target clips: an identity replacement reproduces the run's scores exactly.
docs/synthetic.md ("What moves the classifier's confidence on target clips") reads it.

    python docs/synthetic_counterfactual.py --run RUN --replace "n-lv=L1:L3,L2:L4" --out DIR \\
        -- --config configs/mobilenet_v2.py --config.data.synthetic.machines=fan [RUN's other flags]

``--replace``: ``dimension=from:to[,from:to...]``, several dimensions separated by ``;``. The flags
after ``--`` are the run's own ``mdg.main`` flags (without ``--workdir``), so the model and the
scores are the run's.
"""

import argparse
import dataclasses
import pathlib
import shutil
import subprocess
import sys

import ml_collections
import pandas as pd
import soundfile

from mdg import workdir_guard
from mdg.data import prepare, synthetic
from mdg.data.synthetic import domain_shifts


def parse_replace(text: str) -> dict[str, dict[str, str]]:
    """"n-lv=L1:L3,L2:L4;f-n=A:C" -> {"n-lv": {"L1": "L3", "L2": "L4"}, "f-n": {"A": "C"}}."""
    replace = {}
    for part in text.split(";"):
        dimension, _, pairs = part.partition("=")
        mapping = dict(pair.split(":", 1) for pair in pairs.split(",") if ":" in pair)
        if not dimension or not mapping or len(mapping) != len(pairs.split(",")):
            raise SystemExit(f"--replace {text!r}: expected dimension=from:to[,from:to...][;...]")
        replace[dimension.strip()] = mapping
    return replace


def synthetic_settings(run: pathlib.Path) -> dict:
    """The run's built-in dataset settings (its config.json, as `prepare.synthetic_settings`);
    exits when it used a data root."""
    config = ml_collections.ConfigDict(workdir_guard.read_run_config(run))
    if config.data.root:
        raise SystemExit(f"{run} scored the dataset at {config.data.root}, not the built-in "
                         "synthetic data: there is nothing to re-render")
    return prepare.synthetic_settings(config)


def write_counterfactual(out: pathlib.Path, settings: dict, replace: dict) -> pathlib.Path:
    """The run's dataset under `out`, its source test clips re-rendered with `replace`."""
    common = dataclasses.asdict(synthetic.RenderSettings.of(settings))
    root = synthetic.generate(out, machines=settings["machines"],
                              num_source_train=settings["num_source_train"],
                              num_target_train=settings["num_target_train"],
                              num_test=settings["num_test"], progress=False, **common)
    for machine in settings["machines"]:
        for section in range(len(synthetic.SECTIONS[machine])):
            for label in synthetic.LABELS:
                for index in range(settings["num_test"]):
                    clip = synthetic.synthesize_clip(machine, section, "source", "test", label, index,
                                                     environment_replace=replace, **common)
                    soundfile.write(root / machine / "test" / clip.file_name, clip.pcm,
                                    settings["sample_rate"], subtype="PCM_16")
    return root


def median_scores(results: pathlib.Path) -> pd.DataFrame:
    """Median of every anomaly score per machine type, section, domain and label of the test clips."""
    clips = pd.read_parquet(results / "clips.parquet")
    clips = clips[clips["split"] == "test"]
    columns = [c for c in clips.columns if c.startswith("anomaly_score_")]
    medians = clips.groupby(["class", "section", "domain", "label"])[columns].median()
    medians.columns = [c.removeprefix("anomaly_score_") for c in columns]
    return medians


def main(argv: list[str]) -> None:
    cut = argv.index("--") if "--" in argv else len(argv)
    ours, flags = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=pathlib.Path, required=True, help="finished mdg.main workdir")
    parser.add_argument("--replace", required=True, help="dimension=from:to[,from:to...][;...]")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="new folder: data/ and run/")
    args = parser.parse_args(ours)
    if not (args.run / "results" / "clips.parquet").is_file():
        raise SystemExit(f"{args.run}: no results/clips.parquet; pass a finished run's workdir")
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; pass a new folder")
    replace = parse_replace(args.replace)
    settings = synthetic_settings(args.run)
    for machine in settings["machines"]:
        domain_shifts.check_replace(machine, replace)

    root = write_counterfactual(args.out / "data", settings, replace)
    shutil.copytree(args.run / "checkpoints", args.out / "run" / "checkpoints")
    subprocess.run([sys.executable, "-m", "mdg.main", *flags, f"--config.data.root={root}",
                    f"--workdir={args.out / 'run'}"], check=True)

    before, after = median_scores(args.run / "results"), median_scores(args.out / "run" / "results")
    table = pd.concat({"run": before, "counterfactual": after}, axis=1).swaplevel(axis=1)
    table = table[[(score, which) for score in before.columns for which in ("run", "counterfactual")]]
    table.index = table.index.set_levels([["source", "target"], ["normal", "anomaly"]], level=[2, 3])
    print(f"median anomaly score, source test clips re-rendered with {replace}:")
    print(table.round(3).to_string())


if __name__ == "__main__":
    main(sys.argv[1:])
