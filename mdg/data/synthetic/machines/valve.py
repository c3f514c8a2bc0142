"""Solenoid valve: opening and closing clicks in an open/close pattern, flow hiss while open.

What identifies a section (valve model): the resonances its opening and closing clicks ring
(plunger and body), and the pattern attribute: the period and the open/close times within it.
Section 02 adds, in its target domain, a second valve of another model in its own pattern.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from mdg.data.synthetic import anomalies
from mdg.data.synthetic import primitives as p

# Valve open/close patterns: period (s) and (open, close) times (s) within one period.
VALVE_PATTERNS = {"00": (1.0, ((0.0, 0.25),)),
                  "01": (1.2, ((0.0, 0.12), (0.3, 0.42))),
                  "02": (1.6, ((0.0, 0.5),)),
                  "03": (2.0, ((0.0, 0.08), (0.2, 0.28), (0.4, 0.48)))}
# Click resonances (Hz) of the opening and closing click of the valve model of each section, and
# of the second valve of section 02.
VALVE_CLICKS = ({"open": (2100.0, 5200.0), "close": (1700.0, 4300.0)},
                {"open": (2900.0, 6300.0), "close": (2300.0, 5000.0)},
                {"open": (1500.0, 4000.0), "close": (1200.0, 3400.0)})
SECOND_VALVE_CLICKS = {"open": (3600.0, 6900.0), "close": (3000.0, 6000.0)}
# RMS of the flow hiss while open, relative to a click of amplitude 1.
VALVE_FLOW_LEVEL = 0.08
# Level (dB, mean and std) of the second valve relative to the recorded one.
SECOND_VALVE_DB = (-3.0, 1.5)


def _valve_events(ctx: p.Ctx, pattern: str, jitter_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Open and close times (s) of `pattern` repeated over the clip from a random phase."""
    period, events = VALVE_PATTERNS[pattern]
    starts = np.arange(-ctx.rng.uniform(0, period), ctx.duration, period)
    opens = (starts[:, None] + np.array([e[0] for e in events])[None, :]).ravel()
    closes = (starts[:, None] + np.array([e[1] for e in events])[None, :]).ravel()
    return (opens + jitter_s * ctx.rng.standard_normal(opens.size),
            closes + jitter_s * ctx.rng.standard_normal(closes.size))


def _one_valve(ctx: p.Ctx, pattern: str, clicks: Mapping[str, tuple[float, float]],
               anomaly: str | None, intensity: float, severity: float) -> np.ndarray:
    """Opening/closing clicks of one solenoid valve plus the flow hiss while it is open."""
    opens, closes = _valve_events(ctx, pattern, 0.004)
    open_modes, close_modes = np.array(clicks["open"]), np.array(clicks["close"])
    close_damping = 1.0
    if anomaly == "sticking":
        late = ctx.rng.random(closes.size) < intensity
        closes = closes + late * ctx.rng.uniform(0.04, 0.15, closes.size)
    elif anomaly == "clogging":
        opens = opens + intensity / 1000
        open_modes = open_modes * anomalies.severity_ratio(0.85, severity)
    elif anomaly == "contamination":
        close_modes = close_modes * anomalies.severity_ratio(0.8, severity)
        close_damping = anomalies.severity_ratio(2.0, severity)

    detune = ctx.rng.uniform(0.98, 1.02)

    def click(times: np.ndarray, modes: np.ndarray, level: float, damping: float) -> np.ndarray:
        amplitudes = level * 10 ** (1.5 * ctx.rng.standard_normal(times.size) / 20)
        return p.resonate(ctx, times, amplitudes, ((modes[0] * detune, 150.0 * damping, 1.0),
                                                   (modes[1] * detune, 400.0 * damping, 0.6)))

    sound = click(opens, open_modes, 0.7, 1.0) + click(closes, close_modes, 1.0, close_damping)
    flow = p.gate(ctx, opens, closes, 0.004)
    if anomaly == "contamination":  # held off the seat: a rebound click, and gas leaks
        sound += click(closes + ctx.rng.uniform(0.005, 0.02, closes.size), close_modes,
                       0.5 * severity, close_damping)
        flow = np.maximum(flow, p.db_to_amp(intensity))
    hiss = p.shaped_noise(ctx, p.band(ctx.freqs, 1500.0, 6000.0, 2))
    sound += np.float32(VALVE_FLOW_LEVEL) * ctx.db((0.0, 1.5)) * hiss * flow
    if anomaly == "clogging":  # the jet through the narrowed orifice whistles while open
        whistle = p.sine(ctx, p.tone_index(ctx, ctx.rng.uniform(3000.0, 4500.0)))
        sound += np.float32(VALVE_FLOW_LEVEL) * p.db_to_amp(
            intensity / 3 - 12.0 + anomalies.severity_db(severity)) * whistle * flow
    return sound


def sound(ctx: p.Ctx, section: int, attrs: Mapping[str, str], anomaly: str | None,
          intensity: float, severity: float = 1.0) -> np.ndarray:
    """A solenoid valve's click pattern over air-supply hum; section 02 may add a second valve."""
    pattern = attrs.get("pat", attrs.get("v1pat"))
    sound_ = p.unit_rms(_one_valve(ctx, pattern, VALVE_CLICKS[section], anomaly, intensity, severity))
    second = attrs.get("v2pat", "none")
    if second != "none":
        sound_ += ctx.db(SECOND_VALVE_DB) * p.unit_rms(
            _one_valve(ctx, second, SECOND_VALVE_CLICKS, None, 0.0, 1.0))
    supply = p.harmonics(ctx, p.tone_index(ctx, 50.0), np.array([0.0, -4.0, -10.0, -14.0]))
    return p.unit_rms(sound_ + ctx.db((-22.0, 1.0)) * p.unit_rms(supply))
