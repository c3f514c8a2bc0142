"""A sweep's comparison table: each method's official score over seeds, and its difference to a
baseline with an interval that reflects both clip sampling and seed variance.

A *method* is a sweep variant and one of its scoring methods, written ``variant/score`` (e.g.
``arcface/knn``). Per method and seed the figures come from the run's ``results/summary.json``; the
interval needs the per-clip scores of ``results/clips.parquet``.

Columns per method, each a mean over the seeds: the official score (and its std over the seeds);
the harmonic means over (machine type, section) of the AUC per domain and of the pAUC (what the
official score combines); the arithmetic means of the AUC per domain (as papers average, e.g. the
MIMII DG paper's Table 3: AE 67.21 / 53.99 %, MobileNetV2 68.72 / 56.42 % source / target on the
real data); the official score per machine type (and its std); the difference to the baseline.

Difference to the baseline: ``mean over seeds of official(method) - mean over seeds of
official(baseline)``. Its 95 % interval is a percentile interval of a two-level bootstrap
(``bootstrap`` replicates): each replicate resamples the test clips with replacement within every
(machine type, section, domain, label) cell, the same clips for both methods (they are scored on
the same clips, so clip-level noise they share cancels), and resamples each method's seeds with
replacement (one draw for both sides when they are two scores of the same training runs, so a
method against itself is 0 in every replicate); the replicate's difference is the difference of
the seed means of the official scores computed on the resampled clips. Seed-to-seed spread of
training and the finite test set both widen it. The DCASE evaluator's jackknife "CI95" covers
only the pooled clips of one run and is far narrower, so it is not used for comparisons.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import pyarrow.parquet as pq

from mdg import metrics
from mdg.evaluate import write_atomic

@dataclasses.dataclass
class RunScores:
    """Test clips of one run, in a fixed order (sorted by machine type and file name)."""

    summary: dict                      # results/summary.json
    keys: np.ndarray                   # (clips,) "<machine>/<file name>"
    group: np.ndarray                  # (clips,) int (machine type, section) index
    is_target: np.ndarray              # (clips,) bool
    is_anomaly: np.ndarray             # (clips,) bool
    scores: dict[str, np.ndarray]      # score method -> (clips,) float64


def load_run(run_dir: pathlib.Path) -> RunScores:
    """The labelled test clips and scores of a finished run."""
    results = pathlib.Path(run_dir) / "results"
    summary = json.loads((results / "summary.json").read_text(encoding="utf-8"))
    table = pq.read_table(results / "clips.parquet").to_pandas()
    table = table[(table["split"] == "test") & table["label"].notna() & table["domain"].notna()]
    table = table.sort_values(["class", "file_name"])
    cells = table["class"].astype(str) + "/" + table["section"].astype(str)
    _, group = np.unique(cells.to_numpy(), return_inverse=True)
    return RunScores(
        summary=summary,
        keys=(table["class"].astype(str) + "/" + table["file_name"].astype(str)).to_numpy(),
        group=group.astype(np.int64),
        is_target=table["domain"].to_numpy() == 1, is_anomaly=table["label"].to_numpy() == 1,
        scores={m: table[f"anomaly_score_{m}"].to_numpy(np.float64) for m in summary["official_scores"]})


def stratified_resamples(group: np.ndarray, is_target: np.ndarray, is_anomaly: np.ndarray,
                         replicates: int, rng: np.random.Generator) -> np.ndarray:
    """``(replicates, clips)`` clip indices, each row a resample with replacement within every
    (group, domain, label) cell (so every cell keeps its size)."""
    cell = group * 4 + is_target * 2 + is_anomaly
    rows = np.empty((replicates, len(cell)), np.int64)
    for value in np.unique(cell):
        members = np.flatnonzero(cell == value)
        rows[:, members] = rng.choice(members, size=(replicates, len(members)))
    return rows


def resampled_official(run: RunScores, method: str, resamples: np.ndarray) -> np.ndarray:
    """Official score of ``method`` on each clip resample: ``(replicates,)``, in one metrics call."""
    replicates, clips = resamples.shape
    num_groups = int(run.group.max()) + 1
    groups = (np.arange(replicates)[:, None] * num_groups + run.group[resamples]).ravel()
    figures = metrics.section_metrics(run.scores[method][resamples].ravel(), groups,
                                      run.is_target[resamples].ravel(), run.is_anomaly[resamples].ravel(),
                                      num_groups=replicates * num_groups)
    stacked = np.concatenate([np.reshape(f, (replicates, num_groups))
                              for f in (figures.auc_source, figures.auc_target, figures.pauc)], axis=1)
    return metrics.harmonic_mean(stacked, axis=1)


class Bootstrap:
    """The clip resamples of a sweep's comparisons, and each method's per-seed official scores on
    them, computed once however many rows compare against the same baseline (module docstring)."""

    def __init__(self, reference: RunScores, replicates: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.reference = reference
        self.replicates = replicates
        self.resamples = stratified_resamples(reference.group, reference.is_target, reference.is_anomaly,
                                              replicates, rng)
        self._state_after_resamples = rng.bit_generator.state   # every interval draws its seeds from here
        self._per_seed: dict[tuple[int, str], tuple[list[RunScores], np.ndarray]] = {}

    def per_seed_official(self, runs: list[RunScores], method: str) -> np.ndarray:
        """``(seeds, replicates)`` official scores of ``method`` of each run on the clip resamples."""
        key = (id(runs), method)
        if key not in self._per_seed:   # the list is kept with its figures, so its id stays its own
            for run in runs:
                if not np.array_equal(run.keys, self.reference.keys):
                    raise ValueError("runs of a comparison must be scored on the same test clips")
            self._per_seed[key] = runs, np.stack([resampled_official(r, method, self.resamples) for r in runs])
        return self._per_seed[key][1]

    def difference_interval(self, runs: list[RunScores], method: str, baseline_runs: list[RunScores],
                            baseline_method: str) -> tuple[float, float]:
        """95 % percentile interval of the seed-mean official-score difference (module docstring).

        ``runs is baseline_runs`` (two scores of the same training runs) pairs the seed resamples."""
        rng = np.random.default_rng()
        rng.bit_generator.state = self._state_after_resamples
        columns = np.arange(self.replicates)[None, :]
        picks = rng.integers(0, len(runs), size=(len(runs), self.replicates))
        baseline_picks = (picks if runs is baseline_runs
                          else rng.integers(0, len(baseline_runs), size=(len(baseline_runs), self.replicates)))
        difference = (self.per_seed_official(runs, method)[picks, columns].mean(axis=0)
                      - self.per_seed_official(baseline_runs, baseline_method)[baseline_picks, columns].mean(axis=0))
        low, high = np.percentile(difference, [2.5, 97.5])
        return float(low), float(high)


def difference_interval(runs: list[RunScores], method: str, baseline_runs: list[RunScores],
                        baseline_method: str, replicates: int, seed: int = 0) -> tuple[float, float]:
    """One comparison's interval (:meth:`Bootstrap.difference_interval`)."""
    return Bootstrap(baseline_runs[0], replicates, seed).difference_interval(runs, method, baseline_runs,
                                                                            baseline_method)


def comparison_rows(runs: dict[str, list[RunScores]], run_dirs: dict[str, list[str]], baseline: str,
                    replicates: int) -> list[dict]:
    """One row per ``variant/score`` method (see module docstring for the columns)."""
    base_variant, base_method = baseline.split("/")
    if base_variant not in runs or base_method not in runs[base_variant][0].scores:
        raise ValueError(f"baseline {baseline!r} is not among the sweep's methods")
    base_mean = float(np.mean([r.summary["official_scores"][base_method] for r in runs[base_variant]]))
    bootstrap = Bootstrap(runs[base_variant][0], replicates)
    rows = []
    for variant, variant_runs in runs.items():
        for method in variant_runs[0].summary["official_scores"]:
            summaries = [r.summary["methods"][method] for r in variant_runs]
            official = np.array([s["official_score"] for s in summaries], np.float64)
            row = {"method": f"{variant}/{method}", "seeds": len(variant_runs),
                   "official_mean": float(official.mean()),
                   "official_std": float(official.std(ddof=1)) if len(official) > 1 else float("nan")}
            for figure in ("auc_source", "auc_target", "pauc"):
                row[f"hmean_{figure}_mean"] = float(np.mean([s["harmonic_mean"][figure] for s in summaries]))
            for figure in ("auc_source", "auc_target"):   # as papers average (module docstring)
                row[f"amean_{figure}_mean"] = float(np.mean([s["arithmetic_mean"][figure] for s in summaries]))
            for machine in sorted(summaries[0]["machines"]):
                per_seed = np.array([s["machines"][machine]["official_score"] for s in summaries], np.float64)
                row[f"official_{machine}"] = float(per_seed.mean())
                row[f"official_{machine}_std"] = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan")
            row["diff_to_baseline"] = row["official_mean"] - base_mean
            row["diff_low"], row["diff_high"] = bootstrap.difference_interval(
                variant_runs, method, runs[base_variant], base_method)
            row["reports"] = [str(pathlib.Path(d) / "results" / "report.html") for d in run_dirs[variant]]
            rows.append(row)
    return sorted(rows, key=lambda r: -r["official_mean"])


def _percent(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.2f}"


def markdown_table(rows: list[dict], baseline: str) -> str:
    machines = [k[len("official_"):-len("_std")] for k in rows[0]
                if k.startswith("official_") and k.endswith("_std") and k != "official_std"]
    header = (["method", "seeds", "official mean (%)", "std (%)", "h-mean AUC source (%)", "h-mean AUC target (%)",
               "h-mean pAUC (%)", "mean AUC source (%)", "mean AUC target (%)"] + [f"{m} (%)" for m in machines]
              + [f"diff to {baseline} (points)", "95 % interval (points)", "reports"])
    lines = ["| " + " | ".join(header) + " |", "| --- | ---: |" + " ---: |" * (len(header) - 3) + " --- |"]
    for r in rows:
        links = " ".join(f"[{i}]({path})" for i, path in enumerate(r["reports"]))
        cells = ([r["method"], str(r["seeds"]), _percent(r["official_mean"]), _percent(r["official_std"]),
                  _percent(r["hmean_auc_source_mean"]), _percent(r["hmean_auc_target_mean"]),
                  _percent(r["hmean_pauc_mean"]), _percent(r["amean_auc_source_mean"]),
                  _percent(r["amean_auc_target_mean"])]
                 + [f"{_percent(r[f'official_{m}'])} ± {_percent(r[f'official_{m}_std'])}" for m in machines]
                 + [f"{100 * r['diff_to_baseline']:+.2f}",
                    f"{100 * r['diff_low']:+.2f} to {100 * r['diff_high']:+.2f}", links])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict]) -> str:
    import csv
    import io
    columns = [k for k in rows[0] if k != "reports"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([repr(r[c]) if isinstance(r[c], float) else r[c] for c in columns])
    return out.getvalue()


def write_plot(rows: list[dict], path: pathlib.Path, baseline: str) -> pathlib.Path | None:
    """Official score mean +- std per method, the baseline's mean as a line (needs matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8.0, 0.35 * len(rows) + 1.5))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, [100 * r["official_mean"] for r in rows],
            xerr=[100 * np.nan_to_num(r["official_std"]) for r in rows], color="tab:blue", alpha=0.7, capsize=3)
    base = next(r for r in rows if r["method"] == baseline)
    ax.axvline(100 * base["official_mean"], color="black", linestyle="--", linewidth=1, label=f"baseline {baseline}")
    ax.axvline(50, color="tab:red", linestyle=":", linewidth=1, label="chance")
    ax.set_yticks(y, [r["method"] for r in rows], fontsize=8)
    ax.set_xlabel("official score (%), mean +- std over seeds")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_comparison(sweep_dir: pathlib.Path, run_dirs: dict[str, list[str]], baseline: str,
                     replicates: int) -> str:
    """Writes ``comparison.md``, ``comparison.csv`` and ``comparison.png`` into ``sweep_dir``;
    ``run_dirs``: variant -> its runs' folders relative to ``sweep_dir``. Returns the markdown."""
    runs = {v: [load_run(sweep_dir / d) for d in dirs] for v, dirs in run_dirs.items()}
    rows = comparison_rows(runs, run_dirs, baseline, replicates)
    markdown = markdown_table(rows, baseline)
    write_atomic(sweep_dir / "comparison.md", markdown)
    write_atomic(sweep_dir / "comparison.csv", csv_text(rows))
    write_plot(rows, sweep_dir / "comparison.png", baseline)
    return markdown
