"""CLI: ``python -m mdg.data.synthetic --out DIR [--machines fan,valve] [--seed N] ...``."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from mdg.data.layout import MIMII_DG_MACHINE_TYPES
from mdg.data.synthetic.domain_shifts import DEFAULT_SNR_SPREAD_DB
from mdg.data.synthetic.writer import generate


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: python -m mdg.data.synthetic --out DIR [--machines fan,valve] [--seed N] ..."""
    parser = argparse.ArgumentParser(
        prog="python -m mdg.data.synthetic",
        description="Write the deterministic synthetic MIMII DG dataset in the real DCASE layout.")
    parser.add_argument("--out", required=True, help="output root folder")
    parser.add_argument("--machines", default=",".join(MIMII_DG_MACHINE_TYPES),
                        help="comma-separated machine types (default: all five)")
    parser.add_argument("--sections", default="0,1,2", help="comma-separated sections (0-2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_source_train", type=int, default=990,
                        help="source-domain training clips per section")
    parser.add_argument("--num_target_train", type=int, default=10,
                        help="target-domain training clips per section")
    parser.add_argument("--num_test", type=int, default=50,
                        help="test clips per (domain, label) and section")
    parser.add_argument("--duration", type=float, default=10.0, help="clip length in seconds")
    parser.add_argument("--sample_rate", type=int, default=16000, help="Hz")
    parser.add_argument("--fault_severity", type=float, default=1.0,
                        help="scales every anomaly's intensity (1: the documented ranges; 0.5: half "
                             "the boosts and shifts, faults at half the amplitude)")
    parser.add_argument("--snr_spread_db", type=float, default=DEFAULT_SNR_SPREAD_DB,
                        help="standard deviation (dB) of each clip's machine-to-background ratio "
                             "where no attribute sets it")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace machine folders generated with other settings")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes writing clips in parallel (output is identical)")
    args = parser.parse_args(argv)
    try:
        generate(args.out, machines=[m for m in args.machines.split(",") if m],
                 sections=[int(s) for s in args.sections.split(",") if s],
                 num_source_train=args.num_source_train, num_target_train=args.num_target_train,
                 num_test=args.num_test, seed=args.seed, sample_rate=args.sample_rate,
                 duration_s=args.duration, fault_severity=args.fault_severity, snr_spread_db=args.snr_spread_db,
                 overwrite=args.overwrite, workers=args.workers)
    except (ValueError, FileExistsError) as error:
        parser.exit(2, f"error: {error}\n")
