"""Deterministic synthetic MIMII DG dataset in the real DCASE 2022 / 2023 Task 2 layout (+ CLI).

The offline benchmark and the main job's default dataset: five machine types (fan, gearbox,
bearing, slider, valve), sections 00-02 each. A section is one machine unit with its own sound
(product/model signature); its attributes are the operating point (speed, load, pattern) and/or
the environment dimension that its target domain shifts (MIMII DG paper, Table 1), with several
attribute values in each source domain as in DCASE 2023. Anomalies are faults that change that
same signature. See docs/synthetic.md.

The parts, one module each:

* :mod:`~mdg.data.synthetic.primitives`: tones, harmonic series, shaped noise, resonances.
* :mod:`~mdg.data.synthetic.machines`: one module per machine type (its units and its sound).
* :mod:`~mdg.data.synthetic.anomalies`: the anomaly kinds, their intensity ranges and what they change.
* :mod:`~mdg.data.synthetic.domain_shifts`: attributes per section and domain, and the environment.
* :mod:`~mdg.data.synthetic.clips`: one clip (seed, attributes, samples, name); GENERATOR_VERSION.
* :mod:`~mdg.data.synthetic.writer`: the tree (WAVs, CSVs, manifest), atomic per machine type.
* :mod:`~mdg.data.synthetic.cli`: ``python -m mdg.data.synthetic --out DIR [--machines fan,valve]``.
"""

from mdg.data.layout import MIMII_DG_MACHINE_TYPES
from mdg.data.synthetic.anomalies import ANOMALIES, ANOMALY_KINDS, ANOMALY_LEVELS, AnomalyKind
from mdg.data.synthetic.cli import main
from mdg.data.synthetic.clips import (DOMAINS, GENERATOR_VERSION, LABELS, RenderSettings, SyntheticClip,
                                      check_duration, check_fault_severity, check_sample_rate,
                                      clip_file_name, clip_seed_sequence, synthesize_clip)
from mdg.data.synthetic.domain_shifts import (DEFAULT_SNR_SPREAD_DB, SECTIONS, SectionSpec,
                                              check_snr_spread)
from mdg.data.synthetic.writer import (MANIFEST_NAME, check_machines, check_non_negative_integer,
                                       generate, read_manifest)

__all__ = ["ANOMALIES", "ANOMALY_KINDS", "ANOMALY_LEVELS", "AnomalyKind", "DEFAULT_SNR_SPREAD_DB", "DOMAINS",
           "GENERATOR_VERSION", "LABELS", "MANIFEST_NAME", "MIMII_DG_MACHINE_TYPES", "RenderSettings", "SECTIONS",
           "SectionSpec", "SyntheticClip", "check_duration", "check_fault_severity",
           "check_machines", "check_non_negative_integer", "check_sample_rate", "check_snr_spread", "clip_file_name",
           "clip_seed_sequence", "generate", "main", "read_manifest", "synthesize_clip"]
