"""Gearbox: gear-mesh harmonics with shaft-rate sidebands, DC-motor commutator noise, housing.

What identifies a section (gearbox unit): the tooth count (mesh frequency = teeth x shaft rate,
sidebands one shaft order apart) and the housing resonance. Attributes are the operating point:
motor voltage (shaft rate 9 Hz per volt) and load weight (slower and louder mesh), or the unit.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from mdg.data.synthetic import anomalies
from mdg.data.synthetic import primitives as p

# Gearbox units: pinion teeth and housing resonance (Hz) of sections 00 and 01, and of the
# units that section 02 ("id") switches between.
GEARBOX_UNITS = {0: (19, 1400.0), 1: (23, 1100.0)}
GEARBOX_ID_UNITS = {"01": (27, 1700.0), "03": (29, 1800.0), "05": (31, 1650.0),
                    "02": (28, 1750.0), "04": (33, 1600.0)}
# Operating point of the sections whose attribute does not set it.
GEARBOX_DEFAULTS = {"volt": "1.5", "wt": "0"}
# Shaft rate (Hz) per volt, and relative slow-down per gram of load.
GEARBOX_HZ_PER_VOLT = 9.0
GEARBOX_SLIP_PER_GRAM = 0.0005


def _shaft_hz(volt: float, weight_g: float, wobble: float) -> float:
    """The shaft rate (Hz) at motor voltage `volt` under `weight_g` grams of load, times the
    clip's random speed factor `wobble`."""
    return GEARBOX_HZ_PER_VOLT * volt * (1 - GEARBOX_SLIP_PER_GRAM * weight_g) * wobble


def sound(ctx: p.Ctx, section: int, attrs: Mapping[str, str], anomaly: str | None,
          intensity: float, severity: float = 1.0) -> np.ndarray:
    """Mesh harmonics with sidebands, commutator noise at 6x shaft rate, housing resonance."""
    teeth, housing = GEARBOX_ID_UNITS[attrs["id"]] if "id" in attrs else GEARBOX_UNITS[section]
    settings = {**GEARBOX_DEFAULTS, **attrs}
    volt, weight = float(settings["volt"]), float(settings["wt"])
    full_volt, full_weight = volt, weight  # at full fault severity: sizes the harmonics' draws
    if anomaly == "over_voltage":
        volt *= 1 + intensity / 100
        full_volt *= 1 + intensity / severity / 100
    elif anomaly == "overload":
        weight += intensity
        full_weight += intensity / severity
    wobble = 1 + 0.01 * ctx.rng.standard_normal()
    shaft = _shaft_hz(volt, weight, wobble)
    draws = p.harmonic_count(ctx, _shaft_hz(full_volt, full_weight, wobble))
    index = p.phase_index(p.cycles(ctx, shaft, p.fluctuation(ctx, 0.003)))

    count = p.harmonic_count(ctx, shaft)
    levels_db = np.full(count, -60.0)
    load_db = 20 * np.log10(1 + weight / 200)
    sideband_boost = intensity if anomaly == "gear_damage" else 0.0
    for mesh in range(1, 5):
        centre = mesh * teeth
        for offset, level in ((0, -5.0 * (mesh - 1) + load_db), (1, -18.0), (2, -26.0), (3, -34.0)):
            for harmonic in (centre - offset, centre + offset):
                if 1 <= harmonic <= count:
                    boost = sideband_boost if offset else 0.0
                    levels_db[harmonic - 1] = level + boost - 2.0 * (mesh - 1)
    levels_db[:2] = (-20.0, -26.0)
    jitter_db = 2.0 * p.drawn_for(ctx.rng.standard_normal, count, draws)
    tonal = p.unit_rms(p.harmonics(ctx, index, levels_db + jitter_db, draws))

    freqs = ctx.freqs
    brush = p.shaped_noise(ctx, p.band(freqs, 2500.0, 7000.0, 2))
    brush *= np.float32(1) + np.float32(0.6) * p.sine(ctx, index, 6)
    brush_db = -9.0 + 0.5 * load_db
    if anomaly == "over_voltage":
        brush_db += 0.25 * intensity
    body = p.shaped_noise(ctx, p.mix_shapes(
        (p.resonance(freqs, housing * ctx.rng.uniform(0.97, 1.03), 4.0), 1.0),
        (p.tilt(freqs, -3.0), 0.3)))
    sound_ = tonal + ctx.db((brush_db, 1.0)) * brush + ctx.db((-8.0, 1.0)) * body
    if anomaly == "gear_damage":
        impact = p.resonate(ctx, p.periodic_times(ctx, shaft, 0.002), 1.0,
                            ((housing, 120.0, 1.0), (2.7 * housing, 300.0, 0.6)))
        sound_ += p.db_to_amp(intensity - 22.0 + anomalies.severity_db(severity)) * p.unit_rms(impact)
    return p.unit_rms(sound_)
