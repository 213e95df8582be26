"""Subprocess side of tests/test_display.py: opens a PsychoPy window and writes what it saw.

``python tests/display_probe.py CASE MONITORS_DIR PROFILE OUT.npz [KEY=VALUE ...]``; run on a
virtual display (tests/display_fixtures.py). Cases:

- ``frame``: draw a stimulus (odd size, some values out of range) with trial dithering and
  capture the back buffer before the flip.
- ``dither``: a sub-level luminance step, many frames with fresh noise, and the same without
  dithering; mean captured levels per half.
- ``ramp``: every output level once (no dithering), captured.
- ``colour``: an RGB stimulus spanning each gun's range, undithered, captured (all three guns).
- ``colour_dither``: per gun, a step of ``step`` levels above continuous level ``levels=r,g,b``;
  many frames with fresh noise; mean captured levels per half and gun.
- ``magnify``: an RGB stimulus at ``stimulus_deg`` (integer replication), trial dithering, captured.
- ``refusals``: open windows for the profiles ``big`` (wrong resolution, enforced as ``calibrate
  check`` does), ``big`` with pilot, ``big`` for a simulated observer (not enforced), ``g`` as a
  real session (needs a gamma ramp) and ``deep`` (10-bit); record each error or problem.
"""

from __future__ import annotations

import sys

import numpy as np

from experiments.pixel_image import PixelImage, choose_magnification
from experiments.window import DisplayError, capture_levels, open_window
from experiments.luminance import channel_tables, top_left
from experiments.monitor import load_profile, parse_resolution


def _grab(win, image: PixelImage, bits: int, guns: bool = False) -> np.ndarray:
    """Draw, read the back buffer, flip; return the image's screen pixels (red gun, or all three)."""
    win.clearBuffer()
    image.draw()
    frame = capture_levels(win, bits)
    win.flip()
    w, h = image.screen_size
    r, c = top_left(tuple(win.size), (w, h))
    return frame[r:r + h, c:c + w, slice(None) if guns else 0], frame


def refusals(monitors: str, out: str) -> None:
    """Each attempt's DisplayError text, or the problems a pilot window reported."""
    attempts = {"big": dict(simulated=True, enforce=True), "big_pilot": dict(pilot=True),
                "big_simulated": dict(simulated=True), "g": {}, "deep": dict(simulated=True)}
    found = {}
    for key, flags in attempts.items():
        try:
            win, report = open_window(load_profile(key.split("_")[0], monitors), size=(400, 300), **flags)
            found[key] = "; ".join(report.problems)
            win.close()
        except DisplayError as exc:
            found[key] = f"DisplayError: {exc}"
    np.savez(out, **{k: np.array(v) for k, v in found.items()})


def main(case: str, monitors: str, name: str, out: str, *options: str) -> None:
    if case == "refusals":
        return refusals(monitors, out)
    opts = dict(o.split("=", 1) for o in options)
    profile = load_profile(name, monitors)
    size = parse_resolution(opts["window"]) if "window" in opts else (400, 300)
    win, report = open_window(profile, size=size, pilot=opts.get("pilot") == "1",
                              simulated=opts.get("simulated", "1") == "1")
    result: dict[str, np.ndarray] = {"problems": np.array(report.problems, dtype=str),
                                     "red_bits": np.array(report.red_bits)}
    rng = np.random.default_rng(int(opts.get("seed", 0)))
    if case == "frame":
        values = rng.uniform(-0.05, 1.05, size=(37, 23))  # odd height and width, some clipped
        image = PixelImage(win, profile, dither="trial", rng=rng)
        mapped = image.set_values(values[None])
        seen, frame = _grab(win, image, profile.bits)
        result["seen_again"] = _grab(win, image, profile.bits)[0]  # trial mode: the same noise
        result.update(seen=seen, intended=mapped.levels, clipped=np.array(mapped.clipped), frame=frame,
                      values=values, size_deg=np.array(image.size_deg))
    elif case == "dither":
        v0, step = float(opts["v0"]), float(opts["step"])
        values = np.full((48, 64), v0)
        values[:, 32:] += step
        for mode in ("frame", "off"):
            image = PixelImage(win, profile, dither=mode, rng=rng)
            image.set_values(values)
            frames = [_grab(win, image, profile.bits)[0] for _ in range(int(opts.get("frames", 30)))]
            result[f"mean_{mode}"] = np.mean(frames, axis=0)
            result[f"distinct_{mode}"] = np.array(len({f.tobytes() for f in frames}))
    elif case == "ramp":
        n = profile.n_levels
        side = int(np.sqrt(n))
        image = PixelImage(win, profile, dither="off")
        image.set_values(np.linspace(0.0, 1.0, n).reshape(side, n // side))
        result["seen"], _ = _grab(win, image, profile.bits)
        result["intended"] = image.mapped.levels
    elif case == "colour":
        values = rng.uniform(0.0, 1.0, size=(3, 24, 31))
        values[:, 0, :] = np.linspace(0.0, 1.0, 31)  # the top row spans every gun's whole range
        image = PixelImage(win, profile, dither="off")
        mapped = image.set_values(values)
        result.update(seen=_grab(win, image, profile.bits, guns=True)[0], intended=mapped.levels, values=values)
    elif case == "colour_dither":
        start = np.array([float(v) for v in opts["levels"].split(",")])
        step = float(opts["step"])
        tables = channel_tables(profile, 3)
        grid = np.arange(profile.n_levels)

        def value(gun: int, level: float) -> float:  # the value whose continuous level is ``level``
            t = tables[gun]
            return (np.interp(level, grid, t) - t[0]) / (t[-1] - t[0])

        values = np.empty((3, 32, 64))
        for g in range(3):
            values[g, :, :32], values[g, :, 32:] = value(g, start[g]), value(g, start[g] + step)
        image = PixelImage(win, profile, dither="frame", rng=rng)
        image.set_values(values)
        frames = [_grab(win, image, profile.bits, guns=True)[0] for _ in range(int(opts.get("frames", 40)))]
        result["mean"] = np.mean(frames, axis=0)
        result["distinct"] = np.array(len({f.tobytes() for f in frames}))
    elif case == "magnify":
        values = rng.uniform(0.0, 1.0, size=(3, 16, 16))
        k, achieved = choose_magnification((16, 16), profile, size, stimulus_deg=float(opts["stimulus_deg"]),
                                           tolerance=float(opts.get("tolerance", 0.05)))
        image = PixelImage(win, profile, dither="trial", rng=rng, magnification=k)
        mapped = image.set_values(values)
        seen, frame = _grab(win, image, profile.bits, guns=True)
        result.update(seen=seen, intended=mapped.levels, frame=frame, k=np.array(k), achieved=np.array(achieved),
                      size_deg=np.array(image.size_deg))
    else:
        raise SystemExit(f"unknown case {case!r}")
    win.close()
    np.savez(out, **result)


if __name__ == "__main__":
    main(*sys.argv[1:])
