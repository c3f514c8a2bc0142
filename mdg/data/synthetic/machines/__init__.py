"""The machine types of the synthetic dataset, one module each: `sound(ctx, section, attrs,
anomaly, intensity)` returns the machine's own sound (unit RMS, float32 (n,)) before the
environment (``domain_shifts.render``) is added."""

from typing import Callable

import numpy as np

from mdg.data.synthetic.machines import bearing, fan, gearbox, slider, valve

SOUNDS: dict[str, Callable[..., np.ndarray]] = {
    "fan": fan.sound, "gearbox": gearbox.sound, "bearing": bearing.sound,
    "slider": slider.sound, "valve": valve.sound}
