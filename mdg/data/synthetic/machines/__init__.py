"""The machine types of the synthetic dataset, one module each: `sound(ctx, section, attrs,
anomaly, intensity, severity)` returns the machine's own sound (unit RMS, float32 (n,)) before the
environment (``domain_shifts.render``) is added. ``intensity`` is the fault's, already at the fault
severity (``anomalies.at_severity``); ``severity`` scales the parts of a fault that its intensity
does not set (``anomalies.severity_db``, ``anomalies.severity_ratio``); a fan fault has none."""

from typing import Callable

import numpy as np

from mdg.data.synthetic.machines import bearing, fan, gearbox, slider, valve

SOUNDS: dict[str, Callable[..., np.ndarray]] = {
    "fan": fan.sound, "gearbox": gearbox.sound, "bearing": bearing.sound,
    "slider": slider.sound, "valve": valve.sound}
