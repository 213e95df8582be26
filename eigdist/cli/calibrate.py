"""``eigdist calibrate new|fit|show|check|import-psychopy|export-psychopy``: monitor profiles."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from eigdist_core.errors import EigdistError, in_context


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="monitor profiles and photometer calibration")
    p.add_argument("--monitors", help="profile folder (default: $EIGDIST_MONITORS, else the per-user folder, e.g. ~/.local/share/eigdist/monitors on Linux)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    n = actions.add_parser("new", help="create a monitor profile")
    n.add_argument("name")
    n.add_argument("--width-cm", type=float, required=True)
    n.add_argument("--distance-cm", type=float, required=True)
    n.add_argument("--resolution", required=True, help="WxH in pixels, e.g. 1920x1080")
    n.add_argument("--refresh", type=float, required=True, help="refresh rate in Hz")
    n.add_argument("--bits", type=int, choices=(8, 10), default=8)
    n.add_argument("--expiry-days", type=int, default=30, help="calibration expiry (default 30 days)")
    n.add_argument("--notes", default="", help="free text stored with the profile")
    n.add_argument("--force", action="store_true", help="replace an existing profile (drops its calibration)")
    n.set_defaults(func=new)
    f = actions.add_parser("fit", help="fit photometer readings (columns: level, luminance_cd_m2; optional: gun "
                                       "grey/r/g/b, cie_x, cie_y); earlier calibrations are kept in the profile")
    f.add_argument("readings", help="CSV file of readings")
    f.add_argument("--monitor", required=True)
    f.add_argument("--curve", choices=("lut", "gamma"), default="lut",
                   help="curve the display inverts: monotone LUT through the readings (default) or the gamma fit")
    f.set_defaults(func=fit)
    s = actions.add_parser("show", help="plot a profile's calibration (grey and each gun: readings, fits, residuals)")
    s.add_argument("name")
    s.add_argument("--out", help="PNG to write (default: <monitors>/<name>_calibration.png)")
    s.set_defaults(func=show)
    c = actions.add_parser("check", help="luminance ramp and patches on screen, to check with a photometer")
    c.add_argument("name")
    c.add_argument("--pilot", action="store_true", help="allow an uncalibrated profile and a mismatched screen")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--fullscreen", action="store_true")
    g.add_argument("--window", metavar="WxH", help="windowed, e.g. 1024x768")
    c.add_argument("--frames", type=int, help="close after N frames, not synced to the refresh (captures, tests; default: wait for Escape)")
    c.add_argument("--save", metavar="PNG", help="write the first frame, read back from the screen")
    c.add_argument("--gun", choices=("grey", "r", "g", "b"), default="grey",
                   help="patches of one gun alone (the others at 0), as calibrated (default grey)")
    c.set_defaults(func=check)
    i = actions.add_parser("import-psychopy", help="a profile from a monitor calibrated in PsychoPy's Monitor "
                                                   "Center (uncalibrated if its newest calibration measured nothing)")
    i.add_argument("name", help="the PsychoPy monitor's name")
    i.add_argument("--psychopy-folder", help="PsychoPy's monitor folder (default: PsychoPy's own, ~/.psychopy3/monitors)")
    i.add_argument("--as", dest="profile", help="the eigdist profile's name (default: the same)")
    i.add_argument("--refresh", type=float, required=True, help="refresh rate in Hz (PsychoPy does not record it)")
    i.add_argument("--bits", type=int, choices=(8, 10), default=8)
    i.add_argument("--force", action="store_true", help="replace an existing eigdist profile of that name")
    i.set_defaults(func=import_psychopy)
    e = actions.add_parser("export-psychopy",
                           help="add a profile's calibrations to a PsychoPy monitor (its own are kept)")
    e.add_argument("name")
    e.add_argument("--psychopy-folder", help="where to write (default: PsychoPy's own monitor folder)")
    e.set_defaults(func=export_psychopy)


def _writable_monitors(args: argparse.Namespace) -> Path:
    """The profile folder, checked writable before any work (the check build, run and analyze use)."""
    from eigdist_core.io import check_output_folder
    from experiments.monitor import monitors_dir

    option = ("--monitors" if args.monitors else "$EIGDIST_MONITORS" if os.environ.get("EIGDIST_MONITORS")
              else "the monitor folder (--monitors)")
    return check_output_folder(monitors_dir(args.monitors), option)


def new(args: argparse.Namespace) -> int:
    from experiments.monitor import new_profile, parse_resolution, profile_path, save_profile

    path = profile_path(args.name, args.monitors)
    if path.exists() and not args.force:
        raise EigdistError(f"{path} exists; use --force to replace it (its calibration is dropped)")
    _writable_monitors(args)
    profile = new_profile(
        args.name, width_cm=args.width_cm, distance_cm=args.distance_cm,
        resolution=parse_resolution(args.resolution), refresh_hz=args.refresh, bits=args.bits,
        expiry_days=args.expiry_days, notes=args.notes,
    )
    save_profile(profile, args.monitors)
    print(f"wrote {path} ({profile.ppd:.2f} pixels per degree); next: eigdist calibrate fit READINGS.csv "
          f"--monitor {args.name}")
    return 0


def _png(path: str, option: str) -> str:
    """``path`` if it names a .png file; otherwise an error naming the option (a PNG is what is written)."""
    if not path.lower().endswith(".png"):
        raise EigdistError(f"{option} writes a PNG image: give a file name ending in .png, got {path!r}")
    return path


def fit(args: argparse.Namespace) -> int:
    from eigdist_core.io import sha256_file
    from experiments.calibration import calibrated, fit_calibration, load_readings
    from experiments.monitor import load_profile, save_profile

    if not Path(args.readings).is_file():
        what = "a folder" if Path(args.readings).is_dir() else "missing"
        raise EigdistError(f"readings {args.readings!r} is {what}: give the CSV file of photometer readings")
    profile = load_profile(args.monitor, args.monitors)
    _writable_monitors(args)
    readings = load_readings(args.readings)
    guns = {g: v for g, v in readings.curves.items() if g != "grey"}
    try:
        cal = fit_calibration(*readings.curves["grey"], profile.bits, curve=args.curve, guns=guns or None,
                              chromaticity=readings.chromaticity or None,
                              source=f"{args.readings} sha256:{sha256_file(args.readings)}")
    except EigdistError as exc:  # the readings' checks name the gun and level; add the file
        raise in_context(exc, args.readings) from exc
    new = calibrated(profile, cal)
    path = save_profile(new, args.monitors)
    for name, curve in [("grey", cal.grey), *(cal.guns or {}).items()]:
        g = curve.gamma
        print(f"{name:>4} gamma fit: L = {g['lum0']:.3f} + ({g['lum1']:.3f} - {g['lum0']:.3f}) x^{g['gamma']:.3f}")
    print(f"Lmin {cal.lum_min:.3f}  Lmean {cal.lum_mean:.3f}  Lmax {cal.lum_max:.3f} cd/m2 ({cal.curve} curve)")
    if cal.chromaticity:
        print("CIE xy: " + ", ".join(f"{k} ({x:.4f}, {y:.4f})" for k, (x, y) in cal.chromaticity.items()))
    if not cal.guns:
        print("grey only: colour stimulus sets need readings per gun (rows with gun = r, g, b)")
    print(f"wrote {path} (calibrated {cal.date}, expires after {profile.expiry_days} days; "
          f"{len(new.history)} earlier calibration(s) kept in its history)")
    return 0


def show(args: argparse.Namespace) -> int:
    import io

    from eigdist_core.io import atomic_write_bytes, check_output_folder
    from experiments.calibration_plot import calibration_figure
    from experiments.monitor import load_profile

    profile = load_profile(args.name, args.monitors)
    if profile.calibration is None:
        raise EigdistError(f"monitor {args.name!r} has no calibration yet: run eigdist calibrate fit first")
    if args.out:
        check_output_folder(Path(_png(args.out, "--out")).absolute().parent, "--out")
        out = args.out
    else:
        out = str(_writable_monitors(args) / f"{args.name}_calibration.png")
    buf = io.BytesIO()
    calibration_figure(profile).savefig(buf, format="png", dpi=100)
    atomic_write_bytes(out, buf.getvalue())
    cal = profile.calibration
    print(f"{profile.name}: {profile.resolution[0]}x{profile.resolution[1]} px, {profile.width_cm:g} cm at "
          f"{profile.distance_cm:g} cm ({profile.ppd:.2f} px/deg), {profile.refresh_hz:g} Hz, {profile.bits}-bit")
    gammas = ", ".join(f"{k} {c.gamma['gamma']:.3f}" for k, c in [("grey", cal.grey), *(cal.guns or {}).items()])
    print(f"calibrated {cal.date}; Lmin {cal.lum_min:.3f}  Lmean {cal.lum_mean:.3f}  Lmax {cal.lum_max:.3f} cd/m2; "
          f"gamma {gammas}")
    if cal.chromaticity:
        print("CIE xy: " + ", ".join(f"{k} ({x:.4f}, {y:.4f})" for k, (x, y) in cal.chromaticity.items()))
    for old in profile.history:
        print(f"earlier calibration {old.date} (gamma {old.gamma['gamma']:.3f}, {old.source or 'no source'})")
    print(f"wrote {out}")
    return 0


def check(args: argparse.Namespace) -> int:
    from eigdist_core.io import check_output_folder
    from experiments.check_screen import run_check
    from experiments.monitor import check_calibrated, load_profile, parse_resolution

    profile = load_profile(args.name, args.monitors)
    if not args.pilot:
        check_calibrated(profile)
    if args.frames is not None and args.frames < 1:
        raise EigdistError(f"--frames must be >= 1, got {args.frames}")
    if args.save:
        check_output_folder(Path(_png(args.save, "--save")).absolute().parent, "--save")
    size = parse_resolution(args.window) if args.window else None
    for line in run_check(profile, fullscreen=args.fullscreen, size=size, pilot=args.pilot,
                          frames=args.frames, save=args.save, gun=args.gun):
        print(line)
    return 0


def import_psychopy(args: argparse.Namespace) -> int:
    from experiments.monitor import profile_path, save_profile
    from experiments.psychopy_monitors import read_psychopy_monitor

    name = args.profile or args.name
    path = profile_path(name, args.monitors)
    if path.exists() and not args.force:
        raise EigdistError(f"{path} exists; use --force to replace it, or --as NAME for another name")
    _writable_monitors(args)
    profile = read_psychopy_monitor(args.name, args.psychopy_folder, refresh_hz=args.refresh, bits=args.bits,
                                    profile_name=name)
    save_profile(profile, args.monitors)
    cal = profile.calibration
    got = (f"calibrated {cal.date}, {'grey + R, G, B' if cal.guns else 'grey only'}" if cal else
           "NOT calibrated: its newest PsychoPy calibration holds no photometer readings (no lumsPre, gammaGrid at "
           "PsychoPy's default luminances 0 and 1); measure and run eigdist calibrate fit, or use --pilot")
    print(f"wrote {path} from PsychoPy monitor {args.name!r}: {profile.resolution[0]}x{profile.resolution[1]} px, "
          f"{profile.width_cm:g} cm at {profile.distance_cm:g} cm; {got}; "
          f"{len(profile.history)} earlier calibration(s) in its history")
    return 0


def export_psychopy(args: argparse.Namespace) -> int:
    from eigdist_core.io import check_output_folder
    from experiments.monitor import load_profile
    from experiments.psychopy_monitors import psychopy_folder, write_psychopy_monitor

    profile = load_profile(args.name, args.monitors)
    check_output_folder(psychopy_folder(args.psychopy_folder), "--psychopy-folder")
    path, names = write_psychopy_monitor(profile, args.psychopy_folder)
    n = len(profile.history) + (profile.calibration is not None)
    print(f"wrote PsychoPy monitor {path}: {n} calibration(s) of profile {profile.name!r} added, {len(names)} in all "
          f"(PsychoPy's others kept); PsychoPy uses the last, {names[-1]!r}, and loads its gammaGrid into the "
          f"hardware ramp when a PsychoPy window uses it (eigdist windows do not)")
    return 0
