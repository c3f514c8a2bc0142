"""Anomaly kinds of the synthetic machines: what each fault changes in the machine's own sound.

Every kind changes the features that identify the machine's section (its product signature) or
attribute (its operating point), as the real faults do; none is only an added event. The fault
list follows the anomaly conditions recorded for MIMII DG (fan: wing damage, imbalance, clogging;
gearbox: gear damage, overload, over-voltage; bearing: damaged races, contamination; slider:
damaged rail, loose belt, no grease; valve: contamination / clogging of the valve). Each clip of
the "anomaly" label gets one kind, drawn uniformly from its machine type's kinds, with an intensity
drawn uniformly from the kind's range. The implementations are in ``machines/<machine>.py``.

The fault severity (``generate(..., fault_severity=)``, config ``data.synthetic.fault_severity``)
scales every fault: 1 is the ranges below; 0.5 halves each boost, speed or voltage change, extra
load, delay, ripple depth and share of sticking closings, and halves the amplitude of the faults
whose intensity is a level re. the machine sound (6 dB lower). What a fault changes besides its
intensity scales too: a sound it adds (an impact, a squeal, a whistle, a rebound click) by
`severity_db`, a ratio (a lower click ring, more damping, more micro-impacts) by `severity_ratio`.
So as the severity goes to 0 every fault vanishes and the clip becomes a normal one (its
fault-free twin, ``docs/fault_kinds.py --paired``). Only anomalous clips depend on it, so models
trained on one severity can be scored on another.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class AnomalyKind:
    """One fault of one machine type.

    Attributes:
      low, high: range of the intensity, drawn uniformly per clip.
      unit: what the intensity measures.
      change: what the fault changes in the sound (for docs and reports).
      level_db: the intensity is a level in dB re. the machine sound (a fault severity scales
        its amplitude); otherwise 0 means no change and a severity scales the intensity itself.
    """

    low: float
    high: float
    unit: str
    change: str
    level_db: bool = False


def at_severity(kind: AnomalyKind, intensity: float, severity: float) -> float:
    """The intensity ``intensity`` (drawn from ``kind``'s range) at fault severity ``severity`` > 0."""
    return intensity + severity_db(severity) if kind.level_db else intensity * severity


def severity_db(severity: float) -> float:
    """The level change (dB) of a fault's added sound at fault severity ``severity`` > 0: its
    amplitude scales with the severity (0 dB at 1), so the sound vanishes with the fault."""
    return 20 * math.log10(severity)


def severity_ratio(ratio: float, severity: float) -> float:
    """A fault's change by the factor ``ratio`` (a frequency, damping or rate) at fault severity
    ``severity`` > 0: ``ratio ** severity``, the full ratio at 1 and none (1) as the severity goes to 0."""
    return ratio ** severity


ANOMALIES: dict[str, dict[str, AnomalyKind]] = {
    "fan": {
        "imbalance": AnomalyKind(
            14.0, 24.0, "dB added to the 1x/2x shaft tones and the blade-pass +-1 sidebands",
            "once-per-revolution force: the shaft-rate tones and the sidebands around the "
            "blade-pass harmonics rise, and the sound is amplitude-modulated at the shaft rate"),
        "blade_damage": AnomalyKind(
            14.0, 24.0, "dB added to the shaft harmonics between the blade-pass ones",
            "an uneven rotor: the blade-pass pattern that tells the fan models apart weakens "
            "(blade-pass harmonics lose a quarter of the boost) and the in-between harmonics rise"),
        "clogging": AnomalyKind(
            3.0, 7.0, "% speed rise of the unloaded impeller",
            "a clogged intake unloads the impeller: the shaft rate (all tones, blade-pass "
            "included) rises, the flow noise drops by 0.8 dB per % and its corner moves down"),
    },
    "gearbox": {
        "gear_damage": AnomalyKind(
            5.0, 11.0, "dB added to the mesh sidebands (+-1..3 shaft orders)",
            "a damaged tooth modulates the mesh once per revolution: the sidebands around the "
            "mesh harmonics rise and an impact rings the housing at (boost - 22) dB"),
        "overload": AnomalyKind(
            150.0, 400.0, "grams of extra load",
            "the motor slows (0.05 % per gram) and the mesh tones grow with the load; the "
            "commutator noise grows with the motor current"),
        "over_voltage": AnomalyKind(
            10.0, 25.0, "% of extra motor voltage",
            "the shaft rate (mesh and sideband frequencies) rises in proportion; the "
            "commutator noise rises by 0.25 dB per %"),
    },
    "bearing": {
        "outer_race": AnomalyKind(
            -8.0, 0.0, "dB of the defect impulses re. the rolling noise",
            "flaking on the outer race: impulses at the outer-race ball-pass rate that ring "
            "broad structural modes, filling the spectrum around the section's resonance",
            level_db=True),
        "inner_race": AnomalyKind(
            -9.0, -1.0, "dB of the defect impulses re. the rolling noise",
            "flaking on the inner race: impulses at the inner-race rate, amplitude-modulated at "
            "the shaft rate, ringing the same broad modes",
            level_db=True),
        "contamination": AnomalyKind(
            3.0, 8.0, "dB added to the rolling noise",
            "particles in the grease: louder, whiter rolling noise (less of the resonance "
            "colour that tells the bearings apart) and three times the micro-impacts"),
    },
    "slider": {
        "rail_damage": AnomalyKind(
            -14.0, -6.0, "dB of the impact re. the machine sound",
            "a dent in the rail: an impact each time the carriage passes it, ringing a carriage "
            "mode 1.3x the section's resonance",
            level_db=True),
        "no_grease": AnomalyKind(
            6.0, 13.0, "dB added to the screw harmonics above the 6th",
            "dry contact: the ball-screw harmonic pattern that tells the sliders apart gains "
            "high harmonics, and friction noise (3-6.5 kHz) follows the speed at (boost - 14) dB"),
        "loose_belt": AnomalyKind(
            0.05, 0.14, "depth of the speed ripple",
            "the drive belt slips: the carriage speed ripples at 4-7 Hz (the screw tones warble) "
            "and the reversal clunk is 6 dB louder"),
    },
    "valve": {
        "contamination": AnomalyKind(
            -26.0, -16.0, "dB of the leak hiss while closed re. the flow while open",
            "debris on the seat: the closing click rings lower (x0.8) and twice as damped, the "
            "plunger rebounds off the debris (a second click 5-20 ms later at -6 dB), and gas "
            "leaks while the valve is closed",
            level_db=True),
        "clogging": AnomalyKind(
            15.0, 45.0, "ms of opening delay",
            "a clogged orifice: the valve opens late (timing of the pattern), the opening click "
            "rings lower (x0.85), and the jet through the narrowed gap whistles (3-4.5 kHz) while "
            "open at (delay / 3 - 12) dB re. the flow hiss"),
        "sticking": AnomalyKind(
            0.3, 0.7, "fraction of the closings that stick",
            "a sticking plunger: that share of the closings comes 40-150 ms late, changing the "
            "open/close timing that identifies the pattern"),
    },
}
ANOMALY_LEVELS: dict[str, dict[str, tuple[float, float]]] = {
    machine: {kind: (spec.low, spec.high) for kind, spec in kinds.items()}
    for machine, kinds in ANOMALIES.items()}
ANOMALY_KINDS: dict[str, tuple[str, ...]] = {
    machine: tuple(kinds) for machine, kinds in ANOMALIES.items()}
