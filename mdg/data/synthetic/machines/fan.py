"""Fan: blade-pass harmonics of one fan model per section over broadband flow noise.

What identifies a section (fan model): the shaft rate and the blade count, i.e. a harmonic series
of the shaft rate whose every B-th member (the blade-pass harmonics) dominates, plus the corner of
its flow noise. Fan attributes are environment dimensions (see ``domain_shifts``).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from mdg.data.synthetic import primitives as p

# Fan models per section: blades, shaft rate (Hz) and flow-noise corner (Hz).
FAN_UNITS = ({"blades": 5, "shaft_hz": 28.0, "flow_hz": 900.0},
             {"blades": 7, "shaft_hz": 24.0, "flow_hz": 700.0},
             {"blades": 9, "shaft_hz": 16.5, "flow_hz": 1200.0})


def sound(ctx: p.Ctx, section: int, attrs: Mapping[str, str], anomaly: str | None,
          intensity: float, severity: float = 1.0) -> np.ndarray:
    """Shaft harmonics dominated by the blade-pass ones; flow noise pulsing at the blade pass."""
    unit = FAN_UNITS[section]
    blades = unit["blades"]
    speed_up = intensity / 100 if anomaly == "clogging" else 0.0
    wobble = 1 + 0.01 * ctx.rng.standard_normal()
    shaft = unit["shaft_hz"] * (1 + speed_up) * wobble
    # The harmonics' random draws are sized at full fault severity (p.drawn_for).
    draws = p.harmonic_count(ctx, unit["shaft_hz"] * (1 + speed_up / severity) * wobble)
    index = p.phase_index(p.cycles(ctx, shaft, p.fluctuation(ctx, 0.002)))

    k = np.arange(1, p.harmonic_count(ctx, shaft) + 1)
    blade_pass = k % blades == 0
    levels_db = np.where(blade_pass, -4.0 * (k / blades - 1), -30.0 - 4 * np.log2(k))
    if anomaly == "imbalance":  # 1x, 2x and the +-1 sidebands of the blade-pass harmonics
        sidebands = (k <= 2) | (k % blades == 1) | (k % blades == blades - 1)
        levels_db = np.where(sidebands, levels_db + intensity, levels_db)
    elif anomaly == "blade_damage":  # uneven rotor: the in-between harmonics rise
        levels_db = np.where(blade_pass, levels_db - intensity / 4, levels_db + intensity)
    jitter_db = 1.5 * p.drawn_for(ctx.rng.standard_normal, k.size, draws)
    tonal = p.harmonics(ctx, index, levels_db + jitter_db, draws)

    freqs = ctx.freqs
    flow_hz = unit["flow_hz"] * (1 - 0.04 * speed_up * 100) * ctx.rng.uniform(0.95, 1.05)
    flow = p.shaped_noise(ctx, p.band(freqs, 60.0, flow_hz) * p.tilt(freqs, -1.0))
    flow *= np.float32(1) + np.float32(0.25) * p.sine(ctx, index, blades)
    flow_db = -0.8 * intensity if anomaly == "clogging" else 0.0
    sound_ = ctx.db((6.0, 1.0)) * p.unit_rms(tonal) + p.db_to_amp(flow_db) * flow
    if anomaly == "imbalance":
        sound_ *= np.float32(1) + np.float32(intensity / 50) * p.sine(ctx, index, 1)
    return p.unit_rms(sound_)
