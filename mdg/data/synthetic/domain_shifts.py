"""Domain shifts of the synthetic dataset: attributes per section and domain, and the environment.

A section is one machine unit (product/model, see ``machines/``); its attributes name the
operating point (speed, load, pattern: the machine's own sound) and/or the one environment
dimension its target domain shifts (MIMII DG paper, Table 1: mixed-in machine, factory noise type,
noise level, microphone location, acoustic panel, a second valve). Several attribute values lie
in each section's source domain, as in DCASE 2023.

Environment of a clip. The source-domain environment is the same for every section of a machine
type: each clip draws its background (factory noise ``A`` or ``B``), and where the machine type has
them, its mixed-in machine (fan: ``W``/``X``), noise level (fan: ``L1``/``L2``), microphone location
(bearing: ``A``-``D``) and panel (valve: ``open``/``bs-c``) from one shared pool. A section's own
shift attribute, when named in the clip's attributes, overrides that dimension: source values lie in
the shared pool, target values outside it. So in the source domain only the machine's own sound
tells the sections apart (a section classifier cannot key on the background), and the target
domain differs by shifted operating points and/or a different environment.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
import scipy.signal

from mdg.data.synthetic import primitives as p

# Output level: clip RMS in dBFS, drawn per clip from N(mean, std); peaks are kept below the limit.
OUTPUT_RMS_DBFS = (-26.0, 2.0)
PEAK_LIMIT = 0.9
# Machine-to-background power ratio (dB) where no attribute sets it: the mean per machine type,
# and the standard deviation of the per-clip draw (the generator's ``snr_spread_db``).
DEFAULT_SNR_DB = {"fan": 6.0, "gearbox": 8.0, "bearing": 6.0, "slider": 6.0, "valve": 14.0}
DEFAULT_SNR_SPREAD_DB = 1.5
# Fan noise levels ("n-lv"): SNR (dB); L1, L2 source (every fan clip), L3, L4 target of section 02.
NOISE_LEVEL_SNR_DB = {"L1": 8.0, "L2": 5.0, "L3": 1.0, "L4": -2.0}
# Level (dB, mean and std) of the mixed-in machine (fan "m-n")
# relative to the recorded machine.
INTERFERER_DB = (-8.0, 1.5)
# The source-domain pool of each environment dimension, per machine type; a clip whose attributes
# do not name the dimension draws its value from here, in every section and domain.
SOURCE_ENVIRONMENT: dict[str, dict[str, tuple[str, ...]]] = {
    "fan": {"f-n": ("A", "B"), "m-n": ("W", "X"), "n-lv": ("L1", "L2")},
    "gearbox": {"f-n": ("A", "B")},
    "bearing": {"f-n": ("A", "B"), "loc": ("A", "B", "C", "D")},
    "slider": {"f-n": ("A", "B")},
    "valve": {"f-n": ("A", "B"), "panel": ("open", "bs-c")},
}


@dataclasses.dataclass(frozen=True)
class SectionSpec:
    """What varies in one section: its domain-shift kind and the attribute values per domain.

    Attributes:
      shift: the domain-shift kind, as in MIMII DG Table 1 (for docs and reports).
      attribute_names: attribute names in file-name order, e.g. ("vel", "loc").
      source: the attribute value tuples a source-domain clip draws from.
      target: the same for the target domain.
    """

    shift: str
    attribute_names: tuple[str, ...]
    source: tuple[tuple[str, ...], ...]
    target: tuple[tuple[str, ...], ...]

    def values(self, domain: str) -> tuple[tuple[str, ...], ...]:
        """The attribute value tuples of `domain` ("source" or "target")."""
        return self.source if domain == "source" else self.target


def _single(name: str, shift: str, source: Sequence[str], target: Sequence[str]) -> SectionSpec:
    return SectionSpec(shift, (name,), tuple((v,) for v in source), tuple((v,) for v in target))


def _product(names: tuple[str, str], shift: str, source: tuple[Sequence[str], Sequence[str]],
             target: tuple[Sequence[str], Sequence[str]]) -> SectionSpec:
    def combos(first, second):
        return tuple((a, b) for a in first for b in second)
    return SectionSpec(shift, names, combos(*source), combos(*target))


SECTIONS: dict[str, tuple[SectionSpec, SectionSpec, SectionSpec]] = {
    "fan": (
        _single("m-n", "mixing of a different machine sound", ("W", "X"), ("Y", "Z")),
        _single("f-n", "factory noise type", ("A", "B"), ("C", "D")),
        _single("n-lv", "background noise level (SNR)", ("L1", "L2"), ("L3", "L4")),
    ),
    "gearbox": (
        _single("volt", "motor voltage (speed)", ("1.0", "1.5", "2.0", "2.5", "3.0"),
                ("1.3", "1.8", "2.3", "2.8", "3.5")),
        _single("wt", "load weight (g)", ("0", "50", "100", "150", "200"),
                ("30", "80", "130", "180", "230", "250")),
        _single("id", "gearbox unit", ("01", "03", "05"), ("02", "04")),
    ),
    "bearing": (
        _single("vel", "rotation velocity", ("5", "9", "13", "17", "21"),
                ("3", "7", "11", "15", "19", "25")),
        _product(("vel", "loc"), "microphone location", (("8", "16"), ("A", "B", "C", "D")),
                 (("8", "16"), ("E", "F", "G", "H"))),
        _product(("vel", "f-n"), "factory noise type", (("6", "14"), ("A", "B")),
                 (("6", "14"), ("C", "D"))),
    ),
    "slider": (
        _single("vel", "velocity (mm/s)", ("300", "500", "700", "900", "1100"),
                ("400", "600", "800", "1000", "1300")),
        _single("ac", "acceleration (G)", ("0.03", "0.05", "0.07", "0.09", "0.11"),
                ("0.04", "0.06", "0.08", "0.10", "0.14")),
        _product(("vel", "f-n"), "factory noise type", (("500", "700"), ("A", "B")),
                 (("500", "700"), ("C", "D"))),
    ),
    "valve": (
        _single("pat", "open/close pattern", ("00", "01"), ("02", "03")),
        _product(("pat", "panel"), "acoustic panel around the valve",
                 (("00", "01"), ("open", "bs-c")), (("00", "01"), ("b-c", "s-c"))),
        _product(("v1pat", "v2pat"), "sound of a second valve", (("00", "01"), ("none",)),
                 (("00", "01"), ("02", "03"))),
    ),
}



# Factory backgrounds: A, B the source pool of every section, C, D the target values of the
# "f-n" sections.
BACKGROUND_KINDS = ("A", "B", "C", "D")


def _hum(ctx: p.Ctx, levels_db: Sequence[float]) -> np.ndarray:
    """50 Hz mains hum with harmonics at `levels_db`, unit RMS."""
    return p.unit_rms(p.harmonics(ctx, p.tone_index(ctx, 50.0), np.asarray(levels_db)))


def _pulsing(ctx: p.Ctx, rate_hz: float, depth: float) -> np.ndarray:
    """1 + depth * sin(2 pi rate t + random phase): a slow amplitude modulation."""
    return np.float32(1) + np.float32(depth) * p.sine(ctx, p.tone_index(ctx, rate_hz))


def _background(ctx: p.Ctx, kind: str) -> np.ndarray:
    """Factory background of `kind` (see BACKGROUND_KINDS), unit RMS."""
    freqs = ctx.freqs
    slope = ctx.rng.uniform(-0.5, 0.5)
    if kind == "A":  # air handling: low rumble, strong hum
        return p.unit_rms(
            p.shaped_noise(ctx, p.mix_shapes((p.band(freqs, 25.0, 300.0, 2), 1.0),
                                           (p.tilt(freqs, -3.0 + slope), 0.3)))
            + ctx.db((-6.0, 1.5)) * _hum(ctx, (0.0, -2.0, -8.0, -10.0, -14.0)))
    if kind == "B":  # workshop: pink noise, voice-band babble, sporadic distant impacts
        babble = p.shaped_noise(ctx, p.band(freqs, 300.0, 3000.0, 2)) * _pulsing(
            ctx, ctx.rng.uniform(3, 6), 0.6)
        knocks = p.resonate(ctx, ctx.rng.uniform(0, ctx.duration, int(0.8 * ctx.duration)),
                           ctx.rng.uniform(0.3, 1.0, int(0.8 * ctx.duration)),
                           ((ctx.rng.uniform(400, 900), 80.0, 1.0), (2200.0, 400.0, 0.3)))
        return p.unit_rms(p.shaped_noise(ctx, p.band(freqs, 40.0, None) * p.tilt(freqs, -3.0 + slope))
                         + np.float32(0.7) * babble + np.float32(2.0) * knocks)
    if kind == "C":  # compressor hall: brown noise and pulsating mid-band noise
        pulse = p.shaped_noise(ctx, p.band(freqs, 100.0, 800.0, 2)) * _pulsing(
            ctx, ctx.rng.uniform(10, 14), 0.8)
        return p.unit_rms(p.shaped_noise(ctx, p.band(freqs, 20.0, None) * p.tilt(freqs, -6.0 + slope))
                         + np.float32(0.8) * pulse)
    if kind == "D":  # compressed-air hiss over light pink noise
        return p.unit_rms(p.shaped_noise(ctx, p.mix_shapes((p.band(freqs, 2000.0, 7500.0, 2), 1.0),
                                                        (p.tilt(freqs, -3.0 + slope), 0.6)))
                         + ctx.db((-16.0, 2.0)) * _hum(ctx, (0.0, -6.0)))
    raise ValueError(f"unknown background kind {kind!r}; expected one of {BACKGROUND_KINDS}")


def _interferer(ctx: p.Ctx, kind: str) -> np.ndarray:
    """Another machine mixed into the fan recording (fan section 00, "m-n"), unit RMS."""
    freqs = ctx.freqs
    if kind == "W":  # pump: rich harmonics of 29 Hz with vane-pass pulsation
        index = p.phase_index(p.cycles(ctx, 29.0 * ctx.rng.uniform(0.98, 1.02),
                                     p.fluctuation(ctx, 0.003)))
        k = np.arange(1, 60)
        pump = p.harmonics(ctx, index, -2 * k ** 0.7 + 2 * ctx.rng.standard_normal(k.size))
        return p.unit_rms(pump * (np.float32(1) + np.float32(0.4) * p.sine(ctx, index, 3)))
    if kind == "X":  # reciprocating compressor: piston knocks at 14 Hz
        knocks = p.resonate(ctx, p.periodic_times(ctx, 14.0, 0.01), 1.0,
                           ((700.0, 90.0, 1.0), (1900.0, 250.0, 0.5)))
        return p.unit_rms(p.unit_rms(knocks)
                         + np.float32(0.3) * p.shaped_noise(ctx, p.band(freqs, 50.0, 400.0)))
    if kind == "Y":  # conveyor: rolling noise and periodic clanks
        clanks = p.resonate(ctx, p.periodic_times(ctx, 1 / 0.6, 0.05), 1.0,
                           ((1200.0, 60.0, 1.0), (3100.0, 150.0, 0.7)))
        return p.unit_rms(p.unit_rms(clanks)
                         + np.float32(0.8) * p.shaped_noise(ctx, p.band(freqs, 300.0, 1500.0, 2)))
    if kind == "Z":  # grinder: high whine with its octave and a hiss
        index = p.phase_index(p.cycles(ctx, 1575.0 * ctx.rng.uniform(0.99, 1.01),
                                     p.fluctuation(ctx, 0.004, 2.0)))
        whine = p.harmonics(ctx, index, np.array([0.0, -8.0]))
        return p.unit_rms(p.unit_rms(whine)
                         + np.float32(0.7) * p.shaped_noise(ctx, p.band(freqs, 4000.0, 7500.0, 2)))
    raise ValueError(f"unknown interfering machine {kind!r}; expected W, X, Y or Z")


# Microphone locations (bearing "loc") and panels around the valve ("panel"): broadband gain (dB),
# a peaking band (Hz, dB) and a high-shelf gain above 4 kHz (dB).
COLOURATIONS = {
    "A": (0.0, 1500.0, 3.0, -2.0), "B": (-2.0, 2500.0, 4.0, -4.0),
    "C": (-4.0, 900.0, 2.0, -1.0), "D": (-3.0, 3500.0, -3.0, 2.0),
    "E": (-6.0, 700.0, 5.0, -6.0), "F": (-1.0, 5000.0, 4.0, 3.0),
    "G": (-8.0, 1800.0, -5.0, -3.0), "H": (-5.0, 3000.0, 6.0, -8.0),
    "open": (0.0, 1000.0, 0.0, 0.0), "bs-c": (-4.0, 800.0, 4.0, -9.0),
    "b-c": (-2.0, 1200.0, 3.0, -5.0), "s-c": (-3.0, 600.0, 5.0, -7.0),
}


def _colour(ctx: p.Ctx, x: np.ndarray, name: str) -> np.ndarray:
    gain_db, peak_hz, peak_db, shelf_db = COLOURATIONS[name]
    # Corner frequencies stay clear of the Nyquist frequency at low sample rates.
    sos = np.stack([
        p.biquad_peak(min(peak_hz * ctx.rng.uniform(0.97, 1.03), p.NYQUIST_MARGIN * ctx.sr),
                     peak_db, 1.5, ctx.sr),
        p.biquad_high_shelf(min(4000.0, 0.4 * ctx.sr), shelf_db, ctx.sr)])
    return (scipy.signal.sosfilt(sos.astype(np.float32), x) * p.db_to_amp(gain_db)).astype(
        np.float32)


def environment(ctx: p.Ctx, machine: str, attrs: Mapping[str, str],
                replace: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, str]:
    """The clip's value of every environment dimension of `machine`: from `attrs` where named,
    else drawn from the shared source pool (SOURCE_ENVIRONMENT).

    `replace` ({dimension: {pool value: other value}}) re-renders a clip in another environment:
    a drawn pool value is swapped after the draw, so the machine sound, the attribute and anomaly
    draws and the pool draws stay the same; only the rendering of the environment (done last)
    differs (counterfactual clips, docs/synthetic_counterfactual.py). Dimensions the clip's
    attributes name are never replaced.
    """
    chosen = {}
    for dimension, pool in SOURCE_ENVIRONMENT[machine].items():
        drawn = pool[int(ctx.rng.integers(len(pool)))]  # drawn always: same stream in all sections
        if replace and dimension in replace:
            drawn = replace[dimension].get(drawn, drawn)
        chosen[dimension] = attrs.get(dimension, drawn)
    return chosen


def _environment_values() -> dict[str, tuple[str, ...]]:
    """Every value each environment dimension takes in any machine type: its source pools and the
    attribute values of the sections that name it (rendering does not depend on the machine type)."""
    values: dict[str, set[str]] = {}
    for pools in SOURCE_ENVIRONMENT.values():
        for dimension, pool in pools.items():
            values.setdefault(dimension, set()).update(pool)
    for specs in SECTIONS.values():
        for spec in specs:
            for position, name in enumerate(spec.attribute_names):
                if name in values:
                    values[name].update(v[position] for v in spec.source + spec.target)
    return {dimension: tuple(sorted(found)) for dimension, found in values.items()}


def check_replace(machine: str, replace: Mapping[str, Mapping[str, str]]) -> None:
    """Raises ValueError when `replace` (see `environment`) names a dimension `machine` has no
    pool for, or a value that dimension does not know."""
    known = _environment_values()
    for dimension, mapping in replace.items():
        if dimension not in SOURCE_ENVIRONMENT[machine]:
            raise ValueError(f"{machine} has no environment dimension {dimension!r} to replace; it has "
                             f"{tuple(SOURCE_ENVIRONMENT[machine])}")
        unknown = sorted((set(mapping) | set(mapping.values())) - set(known[dimension]))
        if unknown:
            raise ValueError(f"{machine}: unknown {dimension!r} value(s) {unknown}; known: {known[dimension]}")


def check_snr_spread(snr_spread_db: float) -> None:
    if not 0 <= snr_spread_db < float("inf"):
        raise ValueError(f"snr_spread_db must be a number >= 0 (the per-clip SNR's standard "
                         f"deviation in dB; {DEFAULT_SNR_SPREAD_DB} by default), got {snr_spread_db!r}")


def render(ctx: p.Ctx, machine: str, env: Mapping[str, str], sound: np.ndarray,
           snr_spread_db: float = DEFAULT_SNR_SPREAD_DB) -> np.ndarray:
    """Places the machine sound in its environment `env` (see `environment`) and returns int16 PCM
    samples (n,). The SNR is drawn per clip from N(DEFAULT_SNR_DB[machine], snr_spread_db) unless
    the fan's noise level ("n-lv") sets it; the draw is made either way, so the spread changes
    only the SNR, no other draw of the clip."""
    snr_db = ctx.normal(DEFAULT_SNR_DB[machine], snr_spread_db)
    if "n-lv" in env:
        snr_db = ctx.normal(NOISE_LEVEL_SNR_DB[env["n-lv"]], 0.5)
    scene = sound
    for key in ("loc", "panel"):
        if key in env:
            scene = _colour(ctx, scene, env[key])
    if "m-n" in env:
        scene = scene + ctx.db(INTERFERER_DB) * _interferer(ctx, env["m-n"])
    mix = scene + p.db_to_amp(-snr_db) * _background(ctx, env["f-n"])
    mix = p.unit_rms(mix) * ctx.db(OUTPUT_RMS_DBFS)
    peak = float(np.max(np.abs(mix)))
    if peak > PEAK_LIMIT:
        mix *= np.float32(PEAK_LIMIT / peak)
    return np.rint(mix * np.float32(32767)).astype(np.int16)
