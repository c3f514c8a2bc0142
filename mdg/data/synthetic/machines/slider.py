"""Slide rail: a carriage driven back and forth by a ball screw, with a trapezoidal speed profile.

What identifies a section (slider unit): its ball-screw lead (screw revolutions = speed / lead, so
the harmonic frequencies at a given speed), the level pattern of the screw harmonics (the formant
peaks of the unit's mechanics), the stroke length (reversal rhythm) and the carriage resonance.
Attributes: velocity and acceleration of the strokes (the machine's own sound), or the factory
noise of section 02.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from mdg.data.synthetic import anomalies
from mdg.data.synthetic import primitives as p

# Slide-rail units per section: stroke (m), ball-screw lead (m), carriage resonance (Hz) and the
# screw harmonics (orders) where the unit's harmonic levels peak.
SLIDER_UNITS = ({"stroke": 0.8, "lead": 0.010, "resonance": 2300.0, "peaks": (4.5, 9.0)},
                {"stroke": 0.6, "lead": 0.012, "resonance": 2900.0, "peaks": (3.0, 7.0)},
                {"stroke": 0.7, "lead": 0.008, "resonance": 1900.0, "peaks": (6.0, 11.0)})
# Operating point (vel in mm/s, ac in G) of the sections whose attributes do not set it.
SLIDER_DEFAULTS = {"vel": "700", "ac": "0.30"}
SLIDER_DWELL_S = 0.25
_GRAVITY = 9.81


def slider_motion(ctx: p.Ctx, stroke: float, speed: float, accel: float
                  ) -> tuple[np.ndarray, float, np.ndarray]:
    """Back-and-forth trapezoidal speed profile |v(t)| (m/s, float32 (n,)), its peak speed (m/s)
    and the stroke start times (s).

    Each stroke accelerates at `accel` (m/s^2) to at most `speed` (m/s), cruises, decelerates to
    rest after `stroke` metres, then dwells for SLIDER_DWELL_S before the return stroke.
    """
    peak = min(speed, np.sqrt(accel * stroke))
    move_s = stroke / peak + peak / accel
    period = move_s + SLIDER_DWELL_S
    offset = ctx.rng.uniform(0, period)
    tau = np.fmod(ctx.time + np.float32(offset), np.float32(period))  # fmod: arguments are > 0
    velocity = np.minimum(np.minimum(np.float32(accel) * tau, np.float32(peak)),
                          np.float32(accel) * (np.float32(move_s) - tau))
    return np.maximum(velocity, 0), peak, np.arange(-offset, ctx.duration, period)


def sound(ctx: p.Ctx, section: int, attrs: Mapping[str, str], anomaly: str | None,
          intensity: float, severity: float = 1.0) -> np.ndarray:
    """Ball-screw tones sweeping with the carriage speed, rolling noise and reversal clunks."""
    unit = SLIDER_UNITS[section]
    settings = {**SLIDER_DEFAULTS, **attrs}
    speed = float(settings["vel"]) / 1000 * (1 + 0.02 * ctx.rng.standard_normal())
    accel = float(settings["ac"]) * _GRAVITY * (1 + 0.03 * ctx.rng.standard_normal())
    velocity, peak, stroke_starts = slider_motion(ctx, unit["stroke"], speed, accel)
    if anomaly == "loose_belt":  # the belt slips: the screw speed ripples
        ripple = p.sine(ctx, p.tone_index(ctx, ctx.rng.uniform(4.0, 7.0)))
        velocity = velocity * (np.float32(1) + np.float32(intensity) * ripple)
    moving = velocity / np.float32(peak)
    index = p.phase_index(p.cycles(ctx, velocity / np.float32(unit["lead"])))  # screw revolutions

    k = np.arange(1, int(p.NYQUIST_MARGIN * ctx.sr * unit["lead"] / (1.2 * peak)) + 1)
    first, second = unit["peaks"]
    levels_db = -3 * np.log2(k) + 8 * np.exp(-0.5 * (k - first) ** 2) \
        + 5 * np.exp(-0.5 * (k - second) ** 2) + 2 * ctx.rng.standard_normal(k.size)
    if anomaly == "no_grease":  # dry contact: the high screw harmonics rise
        levels_db = np.where(k > 6, levels_db + intensity, levels_db)
    tonal = p.harmonics(ctx, index, levels_db) * moving
    freqs = ctx.freqs
    rolling = p.shaped_noise(ctx, p.band(freqs, 800.0, 5000.0) * p.resonance(
        freqs, unit["resonance"] * ctx.rng.uniform(0.97, 1.03), 2.0)) * moving
    hum = p.harmonics(ctx, p.tone_index(ctx, 50.0), np.array([-60.0, 0.0, -60.0, -6.0]))
    clunk = p.resonate(ctx, stroke_starts, 1.0, ((unit["resonance"] / 2, 150.0, 1.0),))
    clunk_db = -10.0 + (6.0 * severity if anomaly == "loose_belt" else 0.0)
    sound_ = p.unit_rms(tonal) + ctx.db((-3.0, 1.0)) * p.unit_rms(rolling) \
        + ctx.db((-20.0, 1.0)) * p.unit_rms(hum) + ctx.db((clunk_db, 1.0)) * clunk

    if anomaly == "no_grease":
        squeal = p.shaped_noise(ctx, p.band(freqs, 3000.0, 6500.0, 2)) * moving
        sound_ += p.db_to_amp(intensity - 14.0 + anomalies.severity_db(severity)) * p.unit_rms(squeal)
    elif anomaly == "rail_damage":
        travelled = np.cumsum(velocity, dtype=np.float64) / (ctx.sr * unit["stroke"])
        crossings = np.arange(np.floor(travelled[-1]) + 1) + ctx.rng.uniform(0.1, 0.9)
        times = np.searchsorted(travelled, crossings) / ctx.sr
        impact = p.resonate(ctx, times, 1.0,
                            ((unit["resonance"] * 1.3, 150.0, 1.0), (4100.0, 300.0, 0.5)))
        sound_ += p.db_to_amp(intensity) * p.unit_rms(impact)
    return p.unit_rms(sound_)
