"""The ``calibrate check`` screen: a ramp and photometer patches, each labelled with its luminance.

:func:`check_pattern` and :func:`gun_values` are pure; :func:`run_check` shows the screen.
"""

from __future__ import annotations

import numpy as np

from .luminance import background_value, channel_tables, continuous_levels, level_table
from .monitor import GUNS, MonitorProfile
from .pixel_image import PixelImage
from .window import DisplayError, capture_levels, open_window, require_display, save_frame_png


#: Stimulus values of the photometer patches on the ``calibrate check`` screen.
CHECK_PATCHES = (0.0, 0.25, 0.5, 0.75, 1.0)


def check_pattern(width: int, height: int, background: float) -> tuple[np.ndarray, list[tuple[float, int, int]]]:
    """The ``calibrate check`` screen as values: a 0→1 ramp above a row of uniform patches (pure).

    Returns the ``height × width`` values and, per patch, ``(value, centre column, centre row)``.
    """
    values = np.full((height, width), background)
    x0, x1 = width // 10, width - width // 10
    values[height // 8: height // 4, x0:x1] = np.linspace(0.0, 1.0, x1 - x0)
    side = max(1, min(width // (2 * len(CHECK_PATCHES)), height // 4))
    patches = []
    for i, v in enumerate(CHECK_PATCHES):
        cx, cy = int(width * (i + 1) / (len(CHECK_PATCHES) + 1)), int(height * 0.55)
        top, left = cy - side // 2, cx - side // 2
        values[top - 2: top + side + 2, left - 2: left + side + 2] = 0.0  # dark outline: the Lmean patch shows
        values[top: top + side, left: left + side] = v
        patches.append((v, cx, cy))
    return values, patches


def gun_values(values: np.ndarray, gun: str) -> np.ndarray:
    """The check screen for one gun: ``values`` on that gun (``3 × H × W``, the others at 0), or grey as is."""
    if gun == "grey":
        return values
    out = np.zeros((3, *values.shape))
    out[GUNS.index(gun) - 1] = values
    return out


def run_check(profile: MonitorProfile, *, fullscreen: bool = False, size: tuple[int, int] | None = None,
              pilot: bool = False, frames: int | None = None, save: str | None = None,
              gun: str = "grey") -> list[str]:
    """Show the check screen (dithered every frame) until Escape or ``frames``; return a summary.

    Each patch is labelled with the luminance it should measure; ``gun`` (``grey``, ``r``, ``g``,
    ``b``) shows the patches of that gun alone (the others at level 0), as it was calibrated;
    ``save`` writes the first frame as read back from the back buffer.
    """
    if gun not in GUNS:
        raise DisplayError(f"gun must be one of {', '.join(GUNS)}, got {gun!r}")
    table = level_table(profile) if gun == "grey" else channel_tables(profile, 3)[GUNS.index(gun) - 1]
    require_display()
    from psychopy import event, visual

    win, report = open_window(profile, fullscreen=fullscreen, size=size, pilot=pilot,
                              simulated=frames is not None, enforce=not pilot)
    w, h = (int(v) for v in win.size)
    values, patches = check_pattern(w, h, background_value(profile))
    image = PixelImage(win, profile, dither="frame")
    image.set_values(gun_values(values, gun))
    lines = [f"window {w}x{h}, {profile.bits}-bit, ramp {report.hardware_ramp}, gun {gun}"] + [
        f"pilot: {p}" for p in report.problems]
    labels = []
    for v, cx, cy in patches:
        lum = table[0] + v * (table[-1] - table[0])
        level = float(continuous_levels(np.array([[v]]), table)[0][0, 0])
        text = f"{lum:.2f} cd/m²" if profile.calibration else f"value {v:.2f} (uncalibrated)"
        lines.append(f"{gun} patch value {v:.2f}: {text.replace('²', '2')} (level {level:.2f})")
        labels.append(visual.TextStim(win, text=text, pos=(cx - w / 2, h / 2 - cy - h / 8),
                                      height=max(10, h // 40), units="pix", color=(-1, -1, -1), autoLog=False))
    n = 0
    try:
        while frames is None or n < frames:
            image.draw()
            for label in labels:
                label.draw()
            if n == 0 and save:
                save_frame_png(capture_levels(win, profile.bits), profile.bits, save)
                lines.append(f"wrote {save}")
            win.flip()
            n += 1
            if event.getKeys(["escape", "q"]):
                break
    finally:
        win.close()
    return lines
