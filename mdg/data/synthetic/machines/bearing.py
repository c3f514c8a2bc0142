"""Bearing: motor tones, rolling noise coloured by a structural resonance, defect impulse trains.

What identifies a section (bearing unit): its structural resonance, which colours the rolling
noise and rings at micro-impacts, and its geometry (ball count, ball/pitch diameter ratio), which
sets the cage rate modulating the rolling noise. Attributes: rotation velocity (shaft rate 2 Hz per
unit; motor tones, more rolling noise at higher speed) and the environment dimension of the section.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from mdg.data.synthetic import anomalies
from mdg.data.synthetic import primitives as p

# Bearing units per section: structural resonance (Hz), balls, ball / pitch diameter (contact
# angle 0).
BEARING_UNITS = ({"resonance": 3200.0, "balls": 9, "ratio": 0.25},
                 {"resonance": 2500.0, "balls": 7, "ratio": 0.30},
                 {"resonance": 4200.0, "balls": 12, "ratio": 0.20})
# Shaft rate (Hz) per unit of the "vel" attribute.
BEARING_HZ_PER_VEL = 2.0
# Broad structural modes (Hz, bandwidth Hz, gain) that defect impacts ring besides the unit's own
# resonance: a hard impact excites the whole housing, not only the mode that colours rolling noise.
DEFECT_MODES = ((1900.0, 500.0, 0.8), (5600.0, 900.0, 0.7))


def bearing_rates(shaft_hz: float, balls: int, ratio: float) -> dict[str, float]:
    """Defect frequencies (Hz) of a bearing geometry at shaft rate `shaft_hz` (textbook formulas
    with contact angle 0)."""
    return {"outer_race": balls / 2 * shaft_hz * (1 - ratio),
            "inner_race": balls / 2 * shaft_hz * (1 + ratio),
            "ball": shaft_hz / (2 * ratio) * (1 - ratio ** 2),
            "cage": shaft_hz / 2 * (1 - ratio)}


def sound(ctx: p.Ctx, section: int, attrs: Mapping[str, str], anomaly: str | None,
          intensity: float, severity: float = 1.0) -> np.ndarray:
    """Motor tones, resonance-coloured rolling noise and micro-impacts; defects add impulses."""
    unit = BEARING_UNITS[section]
    vel = float(attrs["vel"])
    shaft = BEARING_HZ_PER_VEL * vel * (1 + 0.01 * ctx.rng.standard_normal())
    rates = bearing_rates(shaft, unit["balls"], unit["ratio"])
    resonance = unit["resonance"] * ctx.rng.uniform(0.98, 1.02)
    index = p.phase_index(p.cycles(ctx, shaft, p.fluctuation(ctx, 0.003)))

    motor = p.harmonics(ctx, index, np.array([-4.0, -10.0, -16.0, -20.0, -24.0, -28.0])
                        + 2 * ctx.rng.standard_normal(6))
    freqs = ctx.freqs
    contaminated = anomaly == "contamination"
    white = 0.4 + (0.15 * intensity if contaminated else 0.0)  # flat share of the rolling noise
    rolling = p.shaped_noise(ctx, p.mix_shapes((p.resonance(freqs, resonance, 3.0), 1.0),
                                               (p.tilt(freqs, -3.0), 0.4),
                                               (p.band(freqs, 500.0, None), white)))
    rolling *= np.float32(1) + np.float32(0.3) * p.sine(ctx, p.tone_index(ctx, rates["cage"]))
    # Micro-impacts at 150 per second, three times as many when contaminated. A contaminated clip
    # draws all of them at every fault severity and keeps a share (so its other draws, and its
    # fault-free twin, do not depend on the severity).
    drawn = int(150 * (3 if contaminated else 1) * ctx.duration)
    kept = int(150 * anomalies.severity_ratio(3.0, severity) * ctx.duration) if contaminated else drawn
    micro_times = ctx.rng.uniform(0, ctx.duration, drawn)[:kept]
    micro = p.resonate(ctx, micro_times, ctx.rng.exponential(1.0, drawn)[:kept],
                       ((resonance, 250.0, 1.0),))
    # Faster rotation: more rolling noise relative to the motor tones.
    rolling_db = 8 * np.log10(vel / 12.0) + ctx.normal(0.0, 1.0)
    extra_db = intensity if contaminated else 0.0
    sound_ = p.unit_rms(motor) + p.db_to_amp(rolling_db + extra_db) * (
        rolling + np.float32(0.3) * p.unit_rms(micro))

    if anomaly in ("outer_race", "inner_race"):
        times = p.periodic_times(ctx, rates[anomaly], 0.01)
        amplitudes = 1.0 if anomaly == "outer_race" else \
            0.5 + 0.5 * np.cos(2 * np.pi * shaft * times + ctx.rng.uniform(0, 2 * np.pi))
        defect = p.resonate(ctx, times, amplitudes, ((resonance, 400.0, 0.6),) + DEFECT_MODES)
        sound_ += p.db_to_amp(intensity + rolling_db) * p.unit_rms(defect)
    return p.unit_rms(sound_)
