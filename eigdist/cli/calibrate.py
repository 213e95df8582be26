"""``eigdist calibrate new|fit|show|check``: monitor profiles."""

from __future__ import annotations

import argparse

from eigdist_core.errors import EigdistError


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
    f = actions.add_parser("fit", help="fit photometer readings (columns: level, luminance_cd_m2)")
    f.add_argument("readings")
    f.add_argument("--monitor", required=True)
    f.add_argument("--curve", choices=("lut", "gamma"), default="lut",
                   help="curve the display inverts: monotone LUT through the readings (default) or the gamma fit")
    f.set_defaults(func=fit)
    s = actions.add_parser("show", help="plot a profile's calibration (readings, fit, residuals)")
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
    c.set_defaults(func=check)


def new(args: argparse.Namespace) -> int:
    from experiments.monitor import new_profile, parse_resolution, profile_path, save_profile

    path = profile_path(args.name, args.monitors)
    if path.exists() and not args.force:
        raise EigdistError(f"{path} exists; use --force to replace it (its calibration is dropped)")
    profile = new_profile(
        args.name, width_cm=args.width_cm, distance_cm=args.distance_cm,
        resolution=parse_resolution(args.resolution), refresh_hz=args.refresh, bits=args.bits,
        expiry_days=args.expiry_days, notes=args.notes,
    )
    save_profile(profile, args.monitors)
    print(f"wrote {path} ({profile.ppd:.2f} pixels per degree); next: eigdist calibrate fit READINGS.csv "
          f"--monitor {args.name}")
    return 0


def fit(args: argparse.Namespace) -> int:
    import csv

    from eigdist_core.io import sha256_file
    from experiments.monitor import calibrated, fit_calibration, load_profile, read_readings, save_profile

    profile = load_profile(args.monitor, args.monitors)
    with open(args.readings, newline="", encoding="utf-8-sig") as fh:
        levels, lums = read_readings(csv.DictReader(fh), where=args.readings)
    cal = fit_calibration(levels, lums, profile.bits, curve=args.curve,
                          source=f"{args.readings} sha256:{sha256_file(args.readings)}")
    path = save_profile(calibrated(profile, cal), args.monitors)
    g = cal.gamma
    print(f"gamma fit: L = {g['lum0']:.3f} + ({g['lum1']:.3f} - {g['lum0']:.3f}) x^{g['gamma']:.3f}")
    print(f"Lmin {cal.lum_min:.3f}  Lmean {cal.lum_mean:.3f}  Lmax {cal.lum_max:.3f} cd/m2 ({cal.curve} curve)")
    print(f"wrote {path} (calibrated {cal.date}, expires after {profile.expiry_days} days)")
    return 0


def show(args: argparse.Namespace) -> int:
    from experiments.calibration_plot import calibration_figure
    from experiments.monitor import load_profile, profile_path

    profile = load_profile(args.name, args.monitors)
    if profile.calibration is None:
        raise EigdistError(f"monitor {args.name!r} has no calibration yet: run eigdist calibrate fit first")
    out = args.out or str(profile_path(args.name, args.monitors).with_name(f"{args.name}_calibration.png"))
    calibration_figure(profile, out)
    cal = profile.calibration
    print(f"{profile.name}: {profile.resolution[0]}x{profile.resolution[1]} px, {profile.width_cm:g} cm at "
          f"{profile.distance_cm:g} cm ({profile.ppd:.2f} px/deg), {profile.refresh_hz:g} Hz, {profile.bits}-bit")
    print(f"calibrated {cal.date}; Lmin {cal.lum_min:.3f}  Lmean {cal.lum_mean:.3f}  Lmax {cal.lum_max:.3f} cd/m2; "
          f"gamma {cal.gamma['gamma']:.3f}")
    print(f"wrote {out}")
    return 0


def check(args: argparse.Namespace) -> int:
    from experiments.display import run_check
    from experiments.monitor import check_calibrated, load_profile, parse_resolution

    profile = load_profile(args.name, args.monitors)
    if not args.pilot:
        check_calibrated(profile)
    if args.frames is not None and args.frames < 1:
        raise EigdistError(f"--frames must be >= 1, got {args.frames}")
    size = parse_resolution(args.window) if args.window else None
    for line in run_check(profile, fullscreen=args.fullscreen, size=size, pilot=args.pilot,
                          frames=args.frames, save=args.save):
        print(line)
    return 0
